using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// socks5:// tunnels (dynamic forwarding) through two engines on loopback: A owns the tunnel and speaks SOCKS5 to the
/// clients, B is the last server and dials each client's target. B's user "socks" may reach only the echo server
/// (by address and by the name localhost), so B's allow-rules are checked per connection.
/// </summary>
public sealed class Socks5TunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnel.Engine.Management.QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
        _b.NewGroup("Socks", GroupRights.CreateTunnels, [$"L#*:*#*#127.0.0.1:{_echo.Port}", $"L#*:*#*#[::1]:*", $"L#*:*#*#localhost:*", "L#*:*#*#*.invalid:*", $"L#*:*#*#127.0.0.1:{ClosedPort}"]);
        _b.NewUser("socks", "Socks", "socks-password");
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    /// <summary>A port nothing listens on (bound once, then closed).</summary>
    private static readonly int ClosedPort = FreePort();

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private TunnelProfile Socks(string name, TunnelMode mode = TunnelMode.PerConnection) => new()
    {
        Name = name,
        Listen = "socks5://127.0.0.1:0",
        Via = [EngineFixture.Hop(_b)],
        Target = string.Empty,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        Mode = mode,
    };

    /// <summary>Creates (logging in at B as "socks") and starts the tunnel; its port.</summary>
    private async Task<int> StartAsync(TunnelProfile profile, SecurityPrincipal? owner = null)
    {
        await _a.NewTunnelAsync(profile, [new HopLogin("socks", "socks-password")], owner);
        var bound = (await _a.StartTunnelAsync(profile.Name)).BoundListen!;
        Assert.StartsWith("socks5://127.0.0.1:", bound, StringComparison.Ordinal);
        return int.Parse(bound[(bound.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Sends <paramref name="size"/> random bytes through a CONNECTed socket and checks the SHA-256 of the echo.</summary>
    private static async Task EchoThroughAsync(Socket s, int size)
    {
        var payload = RandomNumberGenerator.GetBytes(size);
        var reading = Socks5Client.ReadUntilClosedAsync(s);
        await s.SendAllAsync(payload);
        s.Shutdown(SocketShutdown.Send);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await reading));
    }

    [Fact]
    public async Task An_IPv4_connect_carries_data_both_ways_and_the_connection_shows_the_target_the_client_chose()
    {
        var port = await StartAsync(Socks("s-v4"));
        Assert.Equal(string.Empty, _a.GetTunnel("s-v4").Target);

        var (s, reply) = await Socks5Client.ConnectAsync(port, "127.0.0.1", _echo.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            var connection = Assert.Single(_a.GetConnections("s-v4"));
            Assert.Equal(_echo.Uri, connection.Target);
            await EchoThroughAsync(s, 3 * 1024 * 1024 + 11);
        }
    }

    [IPv6LoopbackFact]
    public async Task An_IPv6_connect_reaches_a_target_on_the_IPv6_loopback()
    {
        using var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        listener.Listen(4);
        var target = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var serving = Task.Run(async () =>
        {
            using var c = await listener.AcceptAsync();
            var data = await c.ReadToEndAsync();
            await c.SendAllAsync(data);
            c.Shutdown(SocketShutdown.Send);
        });
        var port = await StartAsync(Socks("s-v6"));

        var (s, reply) = await Socks5Client.ConnectAsync(port, "::1", target);
        using (s)
        {
            Assert.Equal(0, reply);
            Assert.Equal($"tcp://[::1]:{target}", Assert.Single(_a.GetConnections("s-v6")).Target);
            await EchoThroughAsync(s, 256 * 1024);
        }
        await serving.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_domain_name_is_sent_unresolved_and_resolved_by_the_last_server()
    {
        // B's rules allow the name localhost on any port, but the address 127.0.0.1 only on the echo port: the
        // second port is reached only if the Open carried the name (rules do not resolve names).
        var other = new EchoServer();
        await using var _ = other;
        var port = await StartAsync(Socks("s-name"));

        var (s, reply) = await Socks5Client.ConnectAsync(port, "localhost", other.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            Assert.Equal($"tcp://localhost:{other.Port}", Assert.Single(_a.GetConnections("s-name")).Target);
            await EchoThroughAsync(s, 64 * 1024);
        }
        Assert.Equal(2, await Socks5Client.ReplyAsync(port, "127.0.0.1", other.Port));
    }

    [Fact]
    public async Task Failures_map_to_socks_reply_codes_not_allowed_refused_and_host_unreachable()
    {
        // 30 s: where a DNS server is configured but slow to say "no such name", its answer still comes before the timeout
        var port = await StartAsync(Socks("s-fail") with { ConnectTimeout = TimeSpan.FromSeconds(30) });
        // not allowed by B's rules: 0x02, and nothing is dialed
        var accepted = _echo.Accepted;
        Assert.Equal(2, await Socks5Client.ReplyAsync(port, "127.0.0.2", _echo.Port));
        Assert.Equal(accepted, _echo.Accepted);
        // nothing listens on the port: 0x05
        Assert.Equal(5, await Socks5Client.ReplyAsync(port, "127.0.0.1", ClosedPort));
        // a name the last server cannot resolve: 0x04
        Assert.Equal(4, await Socks5Client.ReplyAsync(port, "no-such-host.invalid", 80));
        // the client may have its reply before the connection list records the error
        Assert.True(await Poll.UntilAsync(() => _a.GetConnections("s-fail").All(c => c.Error is not null)));
        var connections = _a.GetConnections("s-fail");
        Assert.Equal(["tcp://127.0.0.2:" + _echo.Port, "tcp://127.0.0.1:" + ClosedPort, "tcp://no-such-host.invalid:80"], connections.Select(c => c.Target));
        Assert.All(connections, c => Assert.NotNull(c.Error));
    }

    [Fact]
    public async Task The_owners_allow_rules_are_checked_for_each_target_a_client_chooses()
    {
        // "carol" on A may build tunnels from 127.0.0.1 through B to the echo server only: the tunnel (no target yet) is
        // created, since its bind and servers match; each target is then checked against the rule's target field.
        _a.NewGroup("Owners", GroupRights.CreateTunnels, [$"L#127.0.0.1:*#*#127.0.0.1:{_echo.Port}"]);
        _a.NewUser("carol", "Owners", "carol-password");
        var carol = new SecurityPrincipal(new User { Name = "carol", Group = "Owners" },
            new Group { Name = "Owners", Rights = GroupRights.CreateTunnels, AllowRules = [$"L#127.0.0.1:*#*#127.0.0.1:{_echo.Port}"] });
        var port = await StartAsync(Socks("s-owner"), carol);

        var (s, reply) = await Socks5Client.ConnectAsync(port, "127.0.0.1", _echo.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            await EchoThroughAsync(s, 1000);
        }
        Assert.Equal(2, await Socks5Client.ReplyAsync(port, "localhost", _echo.Port));
        Assert.True(await Poll.UntilAsync(() => _a.GetTunnel("s-owner").LastError is not null));
        Assert.Contains("allow-rules of group 'Owners'", _a.GetTunnel("s-owner").LastError, StringComparison.Ordinal);

        // a bind the owner's rules do not allow: refused at creation, whatever the targets would be
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() =>
            _a.NewTunnelAsync(Socks("s-owner2") with { Listen = "socks5://127.0.0.2:0" }, [new HopLogin("socks", "socks-password")], carol));
        Assert.Equal(ErrorIds.PermissionDenied, refused.ErrorId);
        Assert.Contains("L#127.0.0.2:0#127.0.0.1:", refused.Message, StringComparison.Ordinal);
        Assert.Contains("#*:*", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Malformed_and_hostile_greetings_and_requests_are_answered_and_closed_and_the_tunnel_goes_on()
    {
        var port = await StartAsync(Socks("s-bad"));
        var accepted = _echo.Accepted;
        // wrong version (SOCKS4): "no acceptable method", closed
        Assert.Equal(new byte[] { 5, 0xFF }, await ExchangeAsync(port, [4, 1, 0, 80, 127, 0, 0, 1, 0]));
        // no method offered, or only username/password (0x02): refused
        Assert.Equal(new byte[] { 5, 0xFF }, await ExchangeAsync(port, [5, 0]));
        Assert.Equal(new byte[] { 5, 0xFF }, await ExchangeAsync(port, [5, 1, 2]));
        // BIND, UDP ASSOCIATE: command not supported
        Assert.Equal(Reply(7), await ExchangeAsync(port, [5, 1, 0, .. Socks5Client.Request("127.0.0.1", _echo.Port, command: 2)]));
        Assert.Equal(Reply(7), await ExchangeAsync(port, [5, 1, 0, .. Socks5Client.Request("127.0.0.1", _echo.Port, command: 3)]));
        // an unknown address type
        Assert.Equal(Reply(8), await ExchangeAsync(port, [5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80]));
        // a 255-byte name (longer than DNS allows), a name with '@' (would change the target URI), an empty name, port 0
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, 5, 1, 0, 3, 255, .. Enumerable.Repeat((byte)'a', 255), 0, 80]));
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, .. Socks5Client.Request("x@127.0.0.1", _echo.Port)]));
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, 5, 1, 0, 3, 0, 0, 80]));
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, .. Socks5Client.Request("127.0.0.1", 0)]));
        // a request of version 4 after a good greeting
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80]));
        // truncated: the greeting's methods, the request, its name, its port
        Assert.Equal(new byte[] { 5, 0xFF }, await ExchangeAsync(port, [5, 3, 0]));
        Assert.Equal(new byte[] { 5, 0 }, await ExchangeAsync(port, [5, 1, 0, 5, 1]));
        Assert.Equal(Reply(1), await ExchangeAsync(port, [5, 1, 0, 5, 1, 0, 3, 20, (byte)'a']));
        Assert.Equal(new byte[] { 5, 0 }, await ExchangeAsync(port, [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0]));

        Assert.Equal(accepted, _echo.Accepted); // nothing was dialed
        Assert.Null(_a.GetTunnel("s-bad").LastError); // a client's garbage is its connection's error, not the tunnel's
        Assert.True(await Poll.UntilAsync(() => _a.GetConnections("s-bad").All(c => c.Error is not null)));
        Assert.All(_a.GetConnections("s-bad"), c => Assert.StartsWith("SOCKS5 client 127.0.0.1:", c.Error, StringComparison.Ordinal));
        var (s, reply) = await Socks5Client.ConnectAsync(port, "127.0.0.1", _echo.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            await EchoThroughAsync(s, 1000);
        }
    }

    /// <summary>The reply a truncated or bad request gets, after the method choice [5, 0] of a good greeting.</summary>
    private static byte[] Reply(byte code) => [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];

    /// <summary>Sends <paramref name="data"/>, half-closes, and returns all the listener answered until it closed.</summary>
    private static async Task<byte[]> ExchangeAsync(int port, byte[] data)
    {
        using var s = await Socks5Client.OpenAsync(port);
        await s.SendAllAsync(data);
        s.Shutdown(SocketShutdown.Send);
        return await Socks5Client.ReadUntilClosedAsync(s);
    }

    [CurlFact]
    public async Task Curl_with_socks5_hostname_fetches_a_page_through_the_tunnel()
    {
        var body = "hello through socks5 " + Guid.NewGuid().ToString("n");
        using var http = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        http.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        http.Listen(4);
        var serving = Task.Run(async () =>
        {
            using var c = await http.AcceptAsync();
            var request = new List<byte>();
            var buffer = new byte[4096];
            while (!System.Text.Encoding.ASCII.GetString(request.ToArray()).Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await c.ReceiveAsync(buffer, SocketFlags.None);
                Assert.True(n > 0, "curl closed before its request ended");
                request.AddRange(buffer.AsSpan(0, n).ToArray());
            }
            await c.SendAllAsync(System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
            c.Shutdown(SocketShutdown.Send);
            return System.Text.Encoding.ASCII.GetString(request.ToArray());
        });
        var httpPort = ((IPEndPoint)http.LocalEndPoint!).Port;
        var port = await StartAsync(Socks("s-curl"));

        using var curl = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("curl",
            ["-sS", "--max-time", "30", "--socks5-hostname", $"127.0.0.1:{port}", $"http://localhost:{httpPort}/page"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = curl.StandardOutput.ReadToEndAsync();
        var errors = curl.StandardError.ReadToEndAsync();
        await curl.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(curl.ExitCode == 0, $"curl exited with {curl.ExitCode}: {await errors}");
        Assert.Equal(body, await output);
        Assert.StartsWith("GET /page HTTP/1.1", await serving.WaitAsync(TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
        Assert.Equal($"tcp://localhost:{httpPort}", Assert.Single(_a.GetConnections("s-curl")).Target);
    }

    [Fact]
    public async Task Permanent_and_on_demand_socks5_tunnels_hold_their_chain_without_a_target()
    {
        var permanent = await StartAsync(Socks("s-perm", TunnelMode.Permanent));
        Assert.True(await Poll.UntilAsync(() => _a.GetTunnel("s-perm").State == TunnelState.Established), _a.GetTunnel("s-perm").LastError);
        Assert.Equal(0, await Socks5Client.ReplyAsync(permanent, "127.0.0.1", _echo.Port));

        var onDemand = await StartAsync(Socks("s-demand", TunnelMode.OnDemand));
        Assert.Equal(TunnelState.Idle, _a.GetTunnel("s-demand").State);
        var (s, reply) = await Socks5Client.ConnectAsync(onDemand, "localhost", _echo.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            await EchoThroughAsync(s, 1000);
        }
        Assert.Equal(TunnelState.Established, _a.GetTunnel("s-demand").State);
    }

    [Fact]
    public async Task A_socks5_tunnel_is_saved_without_a_target_and_the_other_listeners_still_need_one()
    {
        await _a.NewTunnelAsync(Socks("s-saved"), [new HopLogin("socks", "socks-password")]);
        var path = _a.Options.DataPath;
        var reloaded = await ReloadAsync(path);
        var saved = reloaded.GetTunnel("s-saved");
        Assert.Equal(("socks5://127.0.0.1:0", string.Empty), (saved.Listen, saved.Target));

        var withTarget = Assert.Throws<QmTunnelException>(() => QmTunnelEngine.CheckProfile(Socks("x") with { Target = _echo.Uri }));
        Assert.Equal(ErrorIds.EndpointUriInvalid, withTarget.ErrorId);
        Assert.Contains("takes no -Target", withTarget.Message, StringComparison.Ordinal);
        var without = Assert.Throws<QmTunnelException>(() => QmTunnelEngine.CheckProfile(Socks("x") with { Listen = "tcp://127.0.0.1:0" }));
        Assert.Equal(ErrorIds.EndpointUriInvalid, without.ErrorId);
        Assert.Contains("needs a -Target", without.Message, StringComparison.Ordinal);
    }

    /// <summary>Stops A and starts an engine on its data path (the fixture disposes it).</summary>
    private async Task<QmTunnelEngine> ReloadAsync(string path)
    {
        await _a.StopAsync();
        return await _engines.StartAsync(new ServerOptions
        {
            Port = 0,
            DataPath = path,
            AllowPlainLinks = true,
            AdminPassword = EngineFixture.AdminPassword,
            PasswordIterations = EngineFixture.TestIterations,
        });
    }

}

/// <summary>A test that needs the IPv6 loopback [::1]: skipped, and saying so, where it cannot be bound.</summary>
public sealed class IPv6LoopbackFactAttribute : FactAttribute
{
    public IPv6LoopbackFactAttribute()
    {
        try
        {
            using var probe = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        }
        catch (SocketException ex)
        {
            Skip = $"no IPv6 loopback here ({ex.SocketErrorCode}): [::1] cannot be bound";
        }
    }
}

/// <summary>A test that runs the curl binary: skipped, and saying so, where it is not installed (build.ps1 test installs it).</summary>
public sealed class CurlFactAttribute : FactAttribute
{
    public CurlFactAttribute()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        if (!path.Split(Path.PathSeparator).Any(d => d.Length > 0 && (File.Exists(Path.Combine(d, "curl")) || File.Exists(Path.Combine(d, "curl.exe")))))
        {
            Skip = "curl is not installed (./build.ps1 test installs it with apt-get)";
        }
    }
}

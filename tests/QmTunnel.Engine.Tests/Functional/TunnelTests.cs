using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>Two (or three) engines in one process on loopback port 0, real sockets, a real echo server.</summary>
public sealed class TunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!;
    private QmTunnelEngine _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> StartTunnelAsync(string name, string target, IReadOnlyList<string>? via = null, int maxConnections = 100)
    {
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = name,
            Listen = "tcp://127.0.0.1:0",
            Via = via ?? [EngineFixture.Hop(_b)],
            Target = target,
            MaxConnections = maxConnections,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        var info = await _a.StartTunnelAsync(name);
        Assert.Contains(info.State, new[] { TunnelState.Listening, TunnelState.Established }); // running: bound, link up or not yet
        return info.BoundListen!;
    }

    [Fact]
    public async Task Data_goes_through_a_tunnel_intact_both_ways_and_is_counted()
    {
        var listen = await StartTunnelAsync("echo", _echo.Uri);
        var payload = RandomNumberGenerator.GetBytes(8 * 1024 * 1024 + 123);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        var echoed = await reading.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));

        await WaitUntil(() => _a.GetTunnelStats("echo").ConnectionsCurrent == 0);
        var stats = _a.GetTunnelStats("echo");
        Assert.Equal(payload.Length, stats.BytesFromClients);
        Assert.Equal(payload.Length, stats.BytesToClients);
        Assert.True(stats.LinkBytesSent > payload.Length);
        Assert.Equal(1, stats.ConnectionsTotal);
        var connection = Assert.Single(_a.GetConnections("echo"));
        Assert.Equal(ConnectionState.Closed, connection.State);
        Assert.Equal(payload.Length, connection.BytesFromClient);
    }

    [Fact]
    public async Task Half_close_client_still_receives_everything_the_target_sends_after_it()
    {
        // The target reads until the client's FIN, then sends 1 MiB, then closes.
        var late = RandomNumberGenerator.GetBytes(1024 * 1024);
        _echo.OnConnection = async s =>
        {
            var buffer = new byte[4096];
            while (await s.ReceiveAsync(buffer, SocketFlags.None) > 0)
            {
            }
            await s.SendAllAsync(late);
            s.Shutdown(SocketShutdown.Send);
        };
        var listen = await StartTunnelAsync("half", _echo.Uri);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1, 2, 3 });
        client.Shutdown(SocketShutdown.Send);
        var received = await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(late, received);
    }

    [Fact]
    public async Task Refused_target_resets_the_client_and_is_counted()
    {
        var closedPort = new EchoServer();
        var uri = closedPort.Uri;
        await closedPort.DisposeAsync();
        var listen = await StartTunnelAsync("refused", uri);
        var ex = await Assert.ThrowsAsync<SocketException>(() => ConnectAndReadAsync(listen));
        Assert.Equal(SocketError.ConnectionReset, ex.SocketErrorCode);
        await WaitUntil(() => _a.GetTunnelStats("refused").FailedConnections == 1);
        var stats = _a.GetTunnelStats("refused");
        Assert.Contains("ConnectionRefused", stats.LastError);
        Assert.Equal(ConnectionState.Failed, Assert.Single(_a.GetConnections("refused")).State);
    }

    [Fact]
    public async Task Many_concurrent_connections_share_one_link()
    {
        var listen = await StartTunnelAsync("many", _echo.Uri, maxConnections: 500);
        var tasks = Enumerable.Range(0, 200).Select(async i =>
        {
            var data = RandomNumberGenerator.GetBytes(20_000 + i);
            using var c = await SocketTestExtensions.ConnectAsync(listen);
            var reading = c.ReadToEndAsync();
            await c.SendAllAsync(data);
            c.Shutdown(SocketShutdown.Send);
            return (data, await reading);
        }).ToList();
        var results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(results, r => Assert.Equal(r.data, r.Item2));
        Assert.Equal(1, _b.GetServerInfo().Links);
        Assert.Equal(200, _a.GetTunnelStats("many").ConnectionsTotal);
    }

    [Fact]
    public async Task A_chain_of_two_hops_carries_data()
    {
        var c = await _engines.StartAsync();
        // The login for c travels inside the TLS link to b; b to c may be plain.
        var listen = await StartTunnelAsync("chain", _echo.Uri, via: [EngineFixture.TlsHop(_b), EngineFixture.Hop(c)]);
        var payload = RandomNumberGenerator.GetBytes(3 * 1024 * 1024);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(payload, await reading.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, c.GetServerInfo().TransitStreams);
    }

    [Fact]
    public async Task Max_connections_refuses_the_extra_client()
    {
        var listen = await StartTunnelAsync("max", _echo.Uri, maxConnections: 1);
        using var first = await SocketTestExtensions.ConnectAsync(listen);
        await first.SendAllAsync(new byte[] { 7 });
        var one = new byte[1];
        Assert.Equal(1, await first.ReceiveAsync(one, SocketFlags.None));
        await Assert.ThrowsAnyAsync<SocketException>(async () =>
        {
            // the refusal (an RST) may arrive while connecting or on the first read
            using var second = await SocketTestExtensions.ConnectAsync(listen);
            var n = await second.ReceiveAsync(new byte[1], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
            if (n == 0)
            {
                throw new SocketException((int)SocketError.ConnectionReset);
            }
        });
        Assert.Equal(1, _a.GetTunnelStats("max").RejectedConnections);
    }

    [Fact]
    public async Task Tunnel_listen_port_in_use_fails_with_PortInUse()
    {
        using var blocker = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        blocker.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        blocker.Listen();
        var port = ((System.Net.IPEndPoint)blocker.LocalEndPoint!).Port;
        _a.NewTestTunnel(new TunnelProfile { Name = "busy", Listen = $"tcp://127.0.0.1:{port}", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri });
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => _a.StartTunnelAsync("busy"));
        Assert.Equal(ErrorIds.PortInUse, ex.ErrorId);
        Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message);
        Assert.Equal(TunnelState.Failed, _a.GetTunnel("busy").State);
    }

    [Fact]
    public async Task Server_port_in_use_fails_with_PortInUse()
    {
        var engine = new QmTunnelEngine(new ServerOptions { AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations, Port = _a.Port, DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")) });
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => engine.StartAsync());
        Assert.Equal(ErrorIds.PortInUse, ex.ErrorId);
        Assert.False(engine.IsRunning);
    }

    [Fact]
    public async Task Unreachable_hop_fails_the_connection_with_the_reason()
    {
        var dead = new EchoServer();
        var deadPort = dead.Port;
        await dead.DisposeAsync();
        // A tunnel that worked (it keeps keys for the hop), whose hop has since gone away.
        var keys = QmTunnel.Engine.Security.ScramKeys.Derive("unused", new byte[16], EngineFixture.TestIterations);
        _a.NewTunnel(new TunnelProfile
        {
            Name = "nohop", Listen = "tcp://127.0.0.1:0", Via = [$"qmt+plain://127.0.0.1:{deadPort}"], Target = _echo.Uri,
            Credentials = [HopCredential.FromKeys("admin", keys)],
        });
        var listen = (await _a.StartTunnelAsync("nohop")).BoundListen!;
        await Assert.ThrowsAnyAsync<SocketException>(() => ConnectAndReadAsync(listen));
        await WaitUntil(() => _a.GetTunnelStats("nohop").FailedConnections >= 1);
        Assert.Contains("Cannot reach the tunnel server", _a.GetTunnelStats("nohop").LastError);
    }

    /// <summary>Connects and reads to the end. The tunnel's RST may already arrive while connecting on loopback.</summary>
    internal static async Task<byte[]> ConnectAndReadAsync(string listen)
    {
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        return await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }

    internal static async Task WaitUntil(Func<bool> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                Assert.Fail("condition not met in time");
            }
            await Task.Delay(20);
        }
    }
}

/// <summary>Stopping a server: stop accepting, let open connections finish (DrainTimeout), then close the rest.</summary>
public sealed class DrainTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    /// <summary>
    /// A runs on a fake clock that never moves: its drain can only end because the open connection ended, and a stop
    /// that waited for the drain timeout would never complete. Nothing here is measured by time.
    /// </summary>
    [Fact]
    public async Task An_open_connection_finishes_its_exchange_while_the_server_stops_and_no_new_one_is_accepted()
    {
        var b = await _engines.StartAsync();
        var path = Path.Combine(Path.GetTempPath(), "qmt-drain-" + Guid.NewGuid().ToString("n"));
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var a = new QmTunnelEngine(new ServerOptions { AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations, Port = 0, DataPath = path, DrainTimeout = TimeSpan.FromSeconds(10) },
            timeProvider: clock);
        await a.StartAsync();
        a.NewTestTunnel(new TunnelProfile { Name = "drain", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(b)], Target = _echo.Uri });
        var listen = (await a.StartTunnelAsync("drain")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1 });
        var one = new byte[1];
        Assert.Equal(1, await client.ReceiveAsync(one, System.Net.Sockets.SocketFlags.None));

        var stopping = a.StopAsync();
        // no new clients: the listener closes at the start of the stop (a client that came just before it closed may
        // have been taken: look again until one is refused)
        var deadline = Environment.TickCount64 + 30_000;
        while (!await RefusedAsync(listen))
        {
            Assert.True(Environment.TickCount64 < deadline, "the tunnel's listener still accepts 30 s into the stop");
            await Task.Delay(20);
        }
        Assert.False(stopping.IsCompleted); // the open connection holds the stop, and the drain's clock stands still
        // the open one still works, and ends cleanly
        await client.SendAllAsync(new byte[] { 2, 3 });
        client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        Assert.Equal(new byte[] { 2, 3 }, await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10)));
        // its end ends the drain: the 10 s of DrainTimeout never passed on A's clock
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        Directory.Delete(path, true);
    }

    private static async Task<bool> RefusedAsync(string listen)
    {
        try
        {
            using var probe = await SocketTestExtensions.ConnectAsync(listen);
            return false;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return true;
        }
    }
}

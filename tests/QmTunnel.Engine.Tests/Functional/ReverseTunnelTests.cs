using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Reverse (RemoteToLocal) tunnels between real engines on loopback: the owner only dials out, the last server of -Via
/// listens, and each of its clients comes back to the owner, which connects to the target.
/// </summary>
public sealed class ReverseTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _owner = null!, _far = null!;

    public async Task InitializeAsync()
    {
        _owner = await _engines.StartAsync();
        _far = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    internal static TunnelProfile Reverse(string name, IReadOnlyList<string> via, string target, string listen = "tcp://127.0.0.1:0", int max = 100) => new()
    {
        Name = name,
        Direction = TunnelDirection.RemoteToLocal,
        Mode = TunnelMode.Permanent,
        Listen = listen,
        Via = via,
        Target = target,
        MaxConnections = max,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Starts a reverse tunnel and waits until its far listener is bound; its address as the far server bound it.</summary>
    internal static async Task<string> StartAsync(QmTunnelEngine owner, string name)
    {
        await owner.StartTunnelAsync(name);
        await TunnelTests.WaitUntil(() => owner.GetTunnel(name) is { State: TunnelState.Established, BoundListen: not null });
        return owner.GetTunnel(name).BoundListen!;
    }

    /// <summary>Sends <paramref name="size"/> random bytes through <paramref name="listen"/> to the echo server and checks the SHA-256 of what comes back.</summary>
    internal static async Task EchoChecksumAsync(string listen, int size)
    {
        var payload = RandomNumberGenerator.GetBytes(size);
        var back = await SocketTestExtensions.EchoAsync(listen, payload);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back));
    }

    [Fact]
    public async Task A_reverse_tunnel_listens_on_its_far_server_and_carries_data_both_ways_to_the_owners_target()
    {
        var info = _owner.NewTestTunnel(Reverse("web", [EngineFixture.Hop(_far)], _echo.Uri));
        Assert.Equal(TunnelDirection.RemoteToLocal, info.Direction);
        var listen = await StartAsync(_owner, "web");

        Assert.Equal(1, _far.FarListenerCount);
        await EchoChecksumAsync(listen, 8 * 1024 * 1024);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => EchoChecksumAsync(listen, 256 * 1024)));

        // Counted at the owner like a local tunnel's clients, with the address the far listener saw.
        await TunnelTests.WaitUntil(() => _owner.GetTunnelStats("web").ConnectionsCurrent == 0);
        var stats = _owner.GetTunnelStats("web");
        Assert.Equal(9, stats.ConnectionsTotal);
        Assert.Equal(8L * 1024 * 1024 + 8 * 256 * 1024, stats.BytesFromClients);
        Assert.Equal(stats.BytesFromClients, stats.BytesToClients);
        var connection = _owner.GetConnections("web").First();
        Assert.StartsWith("127.0.0.1:", connection.Client, StringComparison.Ordinal);
        Assert.Equal(_echo.Uri, connection.Target);
        Assert.Equal(ConnectionState.Closed, connection.State);

        // Stopped: the far listener is closed and its port free.
        await _owner.StopTunnelAsync("web");
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 0);
        await AssertPortFreeAsync(listen);
    }

    [Fact]
    public async Task A_reverse_tunnel_through_two_servers_listens_on_the_last_and_carries_data_both_ways()
    {
        var last = await _engines.StartAsync();
        _owner.NewTestTunnel(Reverse("two", [EngineFixture.TlsHop(_far), EngineFixture.TlsHop(last)], _echo.Uri));
        var listen = await StartAsync(_owner, "two");

        Assert.Equal(1, last.FarListenerCount);
        Assert.Equal(0, _far.FarListenerCount);
        Assert.Equal(1, _far.HoldCount); // the gateway carries the Bind as a held stream
        await EchoChecksumAsync(listen, 4 * 1024 * 1024);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => EchoChecksumAsync(listen, 128 * 1024)));
        Assert.Equal(5, _owner.GetTunnelStats("two").ConnectionsTotal);

        await _owner.StopTunnelAsync("two");
        await TunnelTests.WaitUntil(() => last.FarListenerCount == 0 && _far.HoldCount == 0);
    }

    [Fact]
    public async Task A_target_the_owner_cannot_reach_closes_the_far_client_and_is_counted_as_failed()
    {
        var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        _owner.NewTestTunnel(Reverse("dead", [EngineFixture.Hop(_far)], $"tcp://127.0.0.1:{port}"));
        var listen = await StartAsync(_owner, "dead");

        Assert.Empty(await SocketTestExtensions.EchoAsync(listen, [1]).ContinueWith(t => t.IsFaulted ? [] : t.Result, TaskScheduler.Default));
        await TunnelTests.WaitUntil(() => _owner.GetTunnelStats("dead").FailedConnections == 1);
        Assert.Contains($"127.0.0.1:{port}", _owner.GetTunnel("dead").LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_far_server_whose_allow_rules_refuse_the_listener_answers_PermissionDenied_naming_itself_and_the_port()
    {
        _far.NewGroup("Fwd", GroupRights.CreateTunnels, ["L#*:*#*#*:*", "R#*:*#*#127.0.0.1:1-1023"]);
        _far.NewUser("fwd", "Fwd", "fwd-password-1");
        var via = $"qmt+plain://fwd@127.0.0.1:{_far.Port}";
        var login = new HopLogin("fwd", "fwd-password-1");

        // New-QmTunnel's check of the chain sees the R# rules already.
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => _owner.NewTunnelAsync(Reverse("r", [via], _echo.Uri, "tcp://127.0.0.1:8080"), [login]));
        Assert.Equal(ErrorIds.PermissionDenied, refused.ErrorId);
        Assert.Contains("R#", refused.Message, StringComparison.Ordinal);

        // Allowed at creation, refused when it binds (the rules changed): Start-QmTunnel fails with the far server's word.
        await _owner.NewTunnelAsync(Reverse("r", [via], _echo.Uri, "tcp://127.0.0.1:80"), [login]);
        _far.SetGroup("Fwd", new GroupChange { AllowRules = ["L#*:*#*#*:*"] });
        var denied = await Assert.ThrowsAsync<QmTunnelException>(() => _owner.StartTunnelAsync("r"));
        Assert.Equal(ErrorIds.PermissionDenied, denied.ErrorId);
        Assert.Contains(_far.Options.ServerName, denied.Message, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1:80", denied.Message, StringComparison.Ordinal);
        Assert.Equal(TunnelState.Failed, _owner.GetTunnel("r").State);
        Assert.Contains("127.0.0.1:80", _owner.GetTunnel("r").LastError, StringComparison.Ordinal);
        Assert.Equal(0, _far.FarListenerCount);
    }

    [Fact]
    public async Task A_port_in_use_on_the_far_server_answers_PortInUse_naming_that_server_and_port()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        _owner.NewTestTunnel(Reverse("busy", [EngineFixture.Hop(_far)], _echo.Uri, $"tcp://127.0.0.1:{port}"));

        var error = await Assert.ThrowsAsync<QmTunnelException>(() => _owner.StartTunnelAsync("busy"));
        Assert.Equal(ErrorIds.PortInUse, error.ErrorId);
        Assert.Contains(_far.Options.ServerName, error.Message, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", error.Message, StringComparison.Ordinal);
        Assert.Equal(TunnelState.Failed, _owner.GetTunnel("busy").State);
        Assert.Equal(0, _far.FarListenerCount);

        // Once the port is free, the same tunnel starts.
        taken.Close();
        Assert.Equal($"tcp://127.0.0.1:{port}", await StartAsync(_owner, "busy"));
        await EchoChecksumAsync($"tcp://127.0.0.1:{port}", 1000);
    }

    [Fact]
    public async Task Figure_4_a_local_tunnel_and_a_reverse_tunnel_meet_at_a_third_server_and_As_clients_reach_Bs_service()
    {
        // C is the only server that accepts links; A and B only dial it. B's service is the echo server on B's side.
        var a = _owner;
        var b = await _engines.StartAsync();
        var c = _far;
        var meeting = FreePort();
        b.NewTestTunnel(Reverse("service", [EngineFixture.Hop(c)], _echo.Uri, $"tcp://127.0.0.1:{meeting}"));
        await StartAsync(b, "service");
        a.NewTestTunnel(new TunnelProfile { Name = "client", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(c)], Target = $"tcp://127.0.0.1:{meeting}" });
        var listen = (await a.StartTunnelAsync("client")).BoundListen!;

        await EchoChecksumAsync(listen, 2 * 1024 * 1024);
        Assert.Equal(1, a.GetTunnelStats("client").ConnectionsTotal);
        Assert.Equal(1, b.GetTunnelStats("service").ConnectionsTotal);
        Assert.Empty(a.InboundLinks());
        Assert.Empty(b.InboundLinks());
    }

    [Fact]
    public void A_reverse_tunnel_cannot_be_on_demand_or_per_connection()
    {
        foreach (var mode in new[] { TunnelMode.OnDemand, TunnelMode.PerConnection })
        {
            var error = Assert.Throws<QmTunnelException>(() => _owner.NewTunnel(Reverse("m", [EngineFixture.Hop(_far)], _echo.Uri) with
            {
                Mode = mode,
                Credentials = EngineFixture.OfflineCredentials(1),
            }));
            Assert.Equal(ErrorIds.TunnelSettingInvalid, error.ErrorId);
            Assert.Contains("always Permanent", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Changing_a_running_reverse_tunnels_MaxConnections_binds_its_far_listener_again_on_the_same_port()
    {
        var port = FreePort();
        _owner.NewTestTunnel(Reverse("grow", [EngineFixture.Hop(_far)], _echo.Uri, $"tcp://127.0.0.1:{port}", max: 1));
        var listen = await StartAsync(_owner, "grow");
        await _owner.SetTunnelAsync("grow", p => p with { MaxConnections = 3 });
        await TunnelTests.WaitUntil(() => _owner.GetTunnel("grow") is { State: TunnelState.Established, BoundListen: not null });
        Assert.Equal(listen, _owner.GetTunnel("grow").BoundListen);

        using var one = await SocketTestExtensions.ConnectAsync(listen);
        using var two = await SocketTestExtensions.ConnectAsync(listen);
        await one.SendAllAsync(new byte[] { 1 });
        await two.SendAllAsync(new byte[] { 2 });
        await TunnelTests.WaitUntil(() => _owner.GetTunnelStats("grow").ConnectionsCurrent == 2);
    }

    [Fact]
    public async Task A_started_reverse_tunnel_is_saved_with_its_direction_and_binds_again_when_its_server_starts_again()
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        var options = new ServerOptions { Port = 0, DataPath = path, AllowPlainLinks = true, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations };
        var port = FreePort();
        var first = await _engines.StartAsync(options);
        first.NewTestTunnel(Reverse("saved", [EngineFixture.Hop(_far)], _echo.Uri, $"tcp://127.0.0.1:{port}"));
        await StartAsync(first, "saved");
        await first.StopAsync();
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 0);

        var second = await _engines.StartAsync(options);
        var restored = second.GetTunnel("saved");
        Assert.Equal(TunnelDirection.RemoteToLocal, restored.Direction);
        Assert.Equal(TunnelMode.Permanent, restored.Mode);
        await TunnelTests.WaitUntil(() => second.GetTunnel("saved") is { State: TunnelState.Established, BoundListen: not null });
        await EchoChecksumAsync($"tcp://127.0.0.1:{port}", 10_000);
    }

    [Fact]
    public async Task Started_again_with_its_server_a_reverse_tunnel_whose_far_port_is_busy_keeps_trying_and_binds_once_it_is_free()
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        var options = new ServerOptions { Port = 0, DataPath = path, AllowPlainLinks = true, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations };
        var port = FreePort();
        var first = await _engines.StartAsync(options);
        first.NewTestTunnel(Reverse("kept", [EngineFixture.Hop(_far)], _echo.Uri, $"tcp://127.0.0.1:{port}"));
        await StartAsync(first, "kept");
        await first.StopAsync();
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 0);

        // Something else takes the port on the far server while the owner is down.
        var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, port));
        taken.Listen();
        var second = await _engines.StartAsync(options);
        await TunnelTests.WaitUntil(() => second.GetTunnel("kept").LastError?.Contains("PortInUse", StringComparison.Ordinal) == true);
        Assert.Equal(TunnelState.Connecting, second.GetTunnel("kept").State);

        taken.Dispose();
        await TunnelTests.WaitUntil(() => second.GetTunnel("kept") is { State: TunnelState.Established, BoundListen: not null }, 30_000);
        await EchoChecksumAsync($"tcp://127.0.0.1:{port}", 10_000);
    }

    internal static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    internal static async Task AssertPortFreeAsync(string listen)
    {
        var port = int.Parse(listen[(listen.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
        await Task.CompletedTask;
    }
}

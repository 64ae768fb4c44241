using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// What a first-time administrator meets, at the engine: a hop without a login is refused before anything goes on the
/// network; a change restarts a tunnel only when it must; a watch ticks on an idle server; a start that cannot listen
/// creates no admin; a session with the right stops a server. Real engines on loopback, real TLS.
/// </summary>
public sealed class FirstRunTests : TwoEngineTests
{
    private TunnelProfile Profile(string name, params string[] via) => new()
    {
        Name = name, Listen = "tcp://127.0.0.1:0", Via = via.Length == 0 ? [EngineFixture.TlsHop(_b)] : via, Target = _echo.Uri,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>A port nothing listens on: a login attempt there would be HopConnectFailed, not HopCredentialMissing.</summary>
    private static int DeadPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    [Fact]
    public async Task A_new_tunnel_with_a_hop_without_login_is_refused_naming_the_hop_before_any_dial()
    {
        var hop = $"qmt://127.0.0.1:{DeadPort()}";
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(Profile("nologin", hop)));
        Assert.Equal(ErrorIds.HopCredentialMissing, ex.ErrorId);
        Assert.Equal(QmErrorKind.AuthenticationError, ex.Kind);
        Assert.Equal(hop, ex.Target);
        Assert.Contains("hop 1", ex.Message);
        Assert.Contains($"New-QmTunnelHop {hop} -Credential", ex.Message);
        Assert.Empty(_a.GetTunnels());

        // The second hop of a chain, with a login for the first only: refused the same way, naming hop 2.
        var chain = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(Profile("half", EngineFixture.TlsHop(_b), hop), [EngineFixture.AdminLogin, null]));
        Assert.Equal(ErrorIds.HopCredentialMissing, chain.ErrorId);
        Assert.Contains("hop 2", chain.Message);
        Assert.Empty(_a.GetTunnels());
    }

    [Fact]
    public async Task Set_with_a_new_hop_without_login_is_refused_and_the_tunnel_keeps_its_chain()
    {
        _a.NewTestTunnel(Profile("kept"));
        var before = _a.GetTunnel("kept");
        var hop = $"qmt://127.0.0.1:{DeadPort()}";
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => _a.SetTunnelAsync("kept", p => p with { Via = [hop] }));
        Assert.Equal(ErrorIds.HopCredentialMissing, ex.ErrorId);
        Assert.Equal(before.Via, _a.GetTunnel("kept").Via);
        Assert.Equal(before.ModifiedAt, _a.GetTunnel("kept").ModifiedAt);
        // The same server again keeps its login: no new one is needed.
        var same = await _a.SetTunnelAsync("kept", p => p with { Via = [EngineFixture.TlsHop(_b)] });
        Assert.Equal(HopLoginKind.Password, Assert.Single(same.Hops).Login);
        Assert.NotNull(Assert.Single(_a.ProfileWithCredentials("kept").Credentials));
    }

    [Fact]
    public async Task Description_and_per_connection_settings_change_without_closing_open_connections()
    {
        _a.NewTestTunnel(Profile("live"));
        var listen = (await _a.StartTunnelAsync("live")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await AssertEchoesAsync(client);

        var changed = await _a.SetTunnelAsync("live", new TunnelChange { Description = "changed", MaxConnections = 50, NoDelay = false, ConnectTimeout = TimeSpan.FromSeconds(3) }.Apply);
        Assert.Equal("changed", changed.Description);
        Assert.Equal(50, changed.MaxConnections);
        Assert.Equal(listen, changed.BoundListen);
        // The connection opened before the change still carries data, and is still counted as open.
        await AssertEchoesAsync(client);
        Assert.Equal(1, _a.GetTunnelStats("live").ConnectionsCurrent);

        // A new target restarts the tunnel: its open connection is closed.
        await _a.SetTunnelAsync("live", p => p with { Target = _echo.Uri.Replace("127.0.0.1", "localhost", StringComparison.Ordinal) });
        var ended = await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20)).ContinueWith(t => t.IsFaulted || t.Result.Length == 0, TaskScheduler.Default);
        Assert.True(ended);
    }

    [Fact]
    public void NeedsRestart_only_for_listen_chain_target_and_logins()
    {
        var p = Profile("x");
        Assert.False(QmTunnelEngine.NeedsRestart(p, p with { Description = "d", MaxConnections = 3, BufferSize = 65536, NoDelay = false, KeepAlive = false, Persistent = false, ConnectTimeout = TimeSpan.FromSeconds(1) }));
        Assert.True(QmTunnelEngine.NeedsRestart(p, p with { Listen = "tcp://127.0.0.1:1" }));
        Assert.True(QmTunnelEngine.NeedsRestart(p, p with { Via = ["qmt://127.0.0.1:2"] }));
        Assert.True(QmTunnelEngine.NeedsRestart(p, p with { Target = "tcp://127.0.0.1:3" }));
        Assert.True(QmTunnelEngine.NeedsRestart(p, p with { Credentials = EngineFixture.OfflineCredentials(1) }));
    }

    private static async Task AssertEchoesAsync(Socket client)
    {
        var payload = RandomNumberGenerator.GetBytes(4096);
        await client.SendAllAsync(payload);
        var back = new byte[payload.Length];
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (read < back.Length)
        {
            var n = await client.ReceiveAsync(back.AsMemory(read), SocketFlags.None, timeout.Token);
            Assert.NotEqual(0, n);
            read += n;
        }
        Assert.Equal(payload, back);
    }

    [Fact]
    public async Task A_watch_yields_at_every_interval_even_when_nothing_changed()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        await using var engine = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = path, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations }, timeProvider: time);
        try
        {
            await engine.StartAsync();
            engine.NewTunnel(Profile("idle") with { Credentials = EngineFixture.OfflineCredentials(1) });
            await using var watch = engine.WatchTunnelStatsAsync(null, TimeSpan.FromSeconds(2)).GetAsyncEnumerator();
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
            var first = Assert.Single(watch.Current);
            for (var i = 0; i < 3; i++)
            {
                var next = watch.MoveNextAsync().AsTask();
                time.Advance(TimeSpan.FromSeconds(2));
                Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(10)), "an idle tunnel still gets an update at each interval");
                var update = Assert.Single(watch.Current);
                Assert.Equal(first.ConnectionsTotal, update.ConnectionsTotal);
                Assert.Equal(first.State, update.State);
            }
        }
        finally
        {
            await engine.DisposeAsync();
            Directory.Delete(path, recursive: true);
        }
    }

    [Fact]
    public async Task A_start_that_cannot_listen_creates_no_admin_so_the_next_start_shows_a_generated_password()
    {
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        held.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        held.Listen();
        var port = ((IPEndPoint)held.LocalEndPoint!).Port;
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        try
        {
            var failed = new QmTunnelEngine(new ServerOptions { Port = port, DataPath = path, PasswordIterations = EngineFixture.TestIterations });
            var ex = await Assert.ThrowsAsync<QmTunnelException>(() => failed.StartAsync());
            Assert.Equal(ErrorIds.PortInUse, ex.ErrorId);
            Assert.Null(failed.InitialAdminPassword);
            await failed.DisposeAsync();

            await using var next = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = path, PasswordIterations = EngineFixture.TestIterations });
            await next.StartAsync();
            Assert.NotNull(next.InitialAdminPassword);
            await next.StopAsync();
        }
        finally
        {
            Directory.Delete(path, recursive: true);
        }
    }

    private Task<QmTunnelSession> ConnectAsync(QmTunnelEngine engine, string user, string password) =>
        QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{engine.Port}", "test"), new PasswordLogin(user, password),
            TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));

    [Fact]
    public async Task A_session_without_ChangeServerConfiguration_cannot_stop_the_server()
    {
        _b.NewGroup("Operators", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("bob", "Operators", "bob-password-1");
        await using var bob = await ConnectAsync(_b, "bob", "bob-password-1");
        var denied = await Assert.ThrowsAsync<QmTunnelException>(() => bob.StopServerAsync(default));
        Assert.Equal(ErrorIds.PermissionDenied, denied.ErrorId);
        Assert.Contains("ChangeServerConfiguration", denied.Message);
        Assert.True(_b.IsRunning);
        Assert.False(_b.StopRequested);
        Assert.True(bob.IsOpen);
    }

    [Fact]
    public async Task An_admin_session_stops_the_server_through_its_host_after_the_answer()
    {
        var handed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // As the daemon does: the host stops the engine (here at once, as StopApplication would).
        _b.StopHandler = () => { handed.TrySetResult(); _ = _b.StopAsync(); };
        await using var admin = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        await admin.StopServerAsync(default);
        await handed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await admin.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(_b.IsRunning);
        Assert.False(admin.IsOpen);
    }

    [Fact]
    public async Task Server_info_counts_the_links_and_streams_open_now()
    {
        _a.NewTestTunnel(Profile("counted"));
        var listen = (await _a.StartTunnelAsync("counted")).BoundListen!;
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links >= 1);
        var (baseB, baseA) = (_b.GetServerInfo().OpenStreams, _a.GetServerInfo().OpenStreams);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await AssertEchoesAsync(client);
        Assert.True(_b.GetServerInfo().Links >= 1);
        Assert.Equal(baseB + 1, _b.GetServerInfo().OpenStreams); // the connection is a stream on B's accepted link
        Assert.Equal(baseA + 1, _a.GetServerInfo().OpenStreams); // and on A's dialed link
        client.Close();
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().OpenStreams == baseB && _a.GetServerInfo().OpenStreams == baseA);
    }

    [Fact]
    public async Task The_status_socket_serves_the_current_server_info_owner_only_and_is_removed_at_stop()
    {
        var dataPath = _b.Options.DataPath;
        await using (var channel = LocalStatusChannel.TryStart(dataPath, _b.GetServerInfo, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            Assert.NotNull(channel);
            var socketPath = LocalStatusChannel.PathFor(dataPath);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socketPath));
            }
            var before = await LocalStatusChannel.QueryAsync(dataPath, TimeSpan.FromSeconds(5), default);
            Assert.NotNull(before);
            Assert.Equal(_b.Port, before.Port);
            Assert.Equal(0, before.Tunnels);

            _b.NewTunnel(Profile("later") with { Credentials = EngineFixture.OfflineCredentials(1) });
            var after = await LocalStatusChannel.QueryAsync(dataPath, TimeSpan.FromSeconds(5), default);
            Assert.Equal(1, after!.Tunnels); // current, not as of the start
        }
        Assert.False(File.Exists(LocalStatusChannel.PathFor(dataPath)));
        Assert.Null(await LocalStatusChannel.QueryAsync(dataPath, TimeSpan.FromSeconds(5), default));
    }

    [Fact]
    public async Task No_status_socket_where_the_path_is_too_long_for_one()
    {
        var deep = Path.Combine(Path.GetTempPath(), new string('d', 120));
        Assert.False(LocalStatusChannel.IsPossible(deep));
        Assert.Null(LocalStatusChannel.TryStart(deep, _b.GetServerInfo, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance));
        Assert.Null(await LocalStatusChannel.QueryAsync(deep, TimeSpan.FromSeconds(1), default));
    }

    [Theory]
    [InlineData("127.0.0.1:9301", "qmt://127.0.0.1:9301")]
    [InlineData("hostB", "qmt://hostB")]
    public void A_server_address_without_scheme_suggests_qmt_never_tcp(string text, string suggestion)
    {
        var ex = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Uri"));
        Assert.Contains(suggestion, ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("tcp://", ex.Message, StringComparison.Ordinal);
        // ... and what it suggests is accepted.
        Assert.Equal(EndpointScheme.Qmt, EndpointUri.ParseServer(suggestion, "Uri").Scheme);
    }

    [Fact]
    public void An_application_endpoint_without_scheme_suggests_tcp()
    {
        var ex = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication("db:5432", "Target"));
        Assert.Contains("tcp://db:5432", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("qmt", ex.Message, StringComparison.Ordinal);
    }
}

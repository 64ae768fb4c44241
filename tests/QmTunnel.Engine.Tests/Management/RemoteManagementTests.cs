using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>Management sessions over real TLS links to real engines: the same API as in-process, with the server's rights.</summary>
public sealed class RemoteManagementTests : TwoEngineTests
{
    private Task<QmTunnelSession> ConnectAsync(QmTunnelEngine engine, string user, string password, string scheme = "qmt") =>
        QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"{scheme}://127.0.0.1:{engine.Port}", "test"), new PasswordLogin(user, password),
            TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));

    private TunnelProfile Profile(string name) => new()
    {
        Name = name, Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_a)], Target = _echo.Uri,
    };

    [Fact]
    public async Task An_admin_session_creates_and_runs_a_tunnel_on_the_remote_server_that_moves_data()
    {
        await using var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        Assert.Equal("admin", session.User);
        Assert.Equal("Administrators", session.Group);
        Assert.True(session.IsEncrypted);
        Assert.Equal(_b.Port, (await session.GetServerInfoAsync(default)).Port);

        var created = await session.NewTunnelAsync(Profile("remote"), [EngineFixture.AdminLogin], default);
        Assert.Equal("admin", created.Owner);
        Assert.Empty(created.Profile.Credentials); // keys never leave the server
        var started = await session.StartTunnelAsync("remote", default);
        var payload = RandomNumberGenerator.GetBytes(2 * 1024 * 1024);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(started.BoundListen!, payload));

        var stats = await session.GetTunnelStatsAsync("remote", default);
        Assert.Equal(payload.Length, stats.BytesFromClients);
        var hop = Assert.Single(stats.Hops); // the hops cross the management wire
        Assert.Equal((TunnelHopState.Up, EngineFixture.TlsHop(_a)), (hop.State, hop.Server));
        Assert.True(hop.LinkBytesSent >= payload.Length, $"{hop.LinkBytesSent} link bytes sent");
        Assert.Equal(hop.Latency, stats.EndToEndLatency);
        Assert.Single(await session.GetConnectionsAsync("remote", default));
        Assert.Contains(_b.GetTunnels(), t => t.Name == "remote"); // it lives on B
        Assert.Single(File.ReadAllLines(_pins)); // B's certificate pinned on first use

        var changed = await session.SetTunnelAsync("remote", new TunnelChange { MaxConnections = 7, Description = "via session" }, null, default);
        Assert.Equal(7, changed.MaxConnections);
        Assert.Equal(EngineFixture.TlsHop(_a).Replace("qmt://", "qmt://admin@", StringComparison.Ordinal), Assert.Single(changed.Via));
        await session.RemoveTunnelAsync("remote", default);
        Assert.DoesNotContain(_b.GetTunnels(), t => t.Name == "remote");
    }

    [Fact]
    public async Task A_session_sets_and_reads_the_mode_its_timeouts_and_the_state_of_the_held_chain()
    {
        await using var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        var created = await session.NewTunnelAsync(Profile("modes") with { Mode = TunnelMode.OnDemand, IdleTimeout = TimeSpan.FromSeconds(42), FailureTolerance = TimeSpan.FromSeconds(5) },
            [EngineFixture.AdminLogin], default);
        Assert.Equal((TunnelMode.OnDemand, TimeSpan.FromSeconds(42), TimeSpan.FromSeconds(5)), (created.Mode, created.IdleTimeout, created.FailureTolerance));
        Assert.Equal(TunnelState.Idle, (await session.StartTunnelAsync("modes", default)).State);
        Assert.Equal(TunnelState.Idle, (await session.GetTunnelStatsAsync("modes", default)).State);

        var permanent = await session.SetTunnelAsync("modes", new TunnelChange { Permanent = true, FailureTolerance = TimeSpan.FromMinutes(2) }, null, default);
        Assert.Equal((TunnelMode.Permanent, TimeSpan.FromMinutes(2)), (permanent.Mode, permanent.FailureTolerance));
        var deadline = Environment.TickCount64 + 10_000;
        while ((await session.GetTunnelAsync("modes", default)).State != TunnelState.Established)
        {
            Assert.True(Environment.TickCount64 < deadline, "the permanent tunnel was not Established within 10 s");
            await Task.Delay(20);
        }
        Assert.Equal(TunnelState.Established, (await session.GetTunnelStatsAsync("modes", default)).State);

        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => session.SetTunnelAsync("modes", new TunnelChange { IdleTimeout = TimeSpan.FromSeconds(9) }, null, default));
        Assert.Equal(ErrorIds.TunnelSettingInvalid, refused.ErrorId);
        Assert.Contains("-OnDemand", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_user_sees_and_changes_only_its_own_tunnels()
    {
        _b.NewGroup("Operators", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("bob", "Operators", "bob-password-1");
        await using var admin = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        await admin.NewTunnelAsync(Profile("admins"), [EngineFixture.AdminLogin], default);

        await using var bob = await ConnectAsync(_b, "bob", "bob-password-1");
        Assert.Empty(await bob.GetTunnelsAsync(default));
        // Another user's tunnel gets exactly the answer of a tunnel that does not exist: nothing about it leaks.
        var denied = await Assert.ThrowsAsync<QmTunnelException>(() => bob.StopTunnelAsync("admins", default));
        var missing = await Assert.ThrowsAsync<QmTunnelException>(() => bob.StopTunnelAsync("no-such-tunnel", default));
        Assert.Equal((ErrorIds.TunnelNotFound, QmErrorKind.ObjectNotFound), (denied.ErrorId, denied.Kind));
        Assert.Equal(missing.Message.Replace("no-such-tunnel", "admins", StringComparison.Ordinal), denied.Message);
        Assert.Equal(ErrorIds.TunnelNotFound, (await Assert.ThrowsAsync<QmTunnelException>(() => bob.GetTunnelStatsAsync("admins", default))).ErrorId);

        // Server information: what any peer sees, not the data path, the process or other users' traffic.
        var seenByBob = await bob.GetServerInfoAsync(default);
        var seenByAdmin = await admin.GetServerInfoAsync(default);
        Assert.Equal((string.Empty, (int?)null, 0), (seenByBob.DataPath, seenByBob.ProcessId, seenByBob.Tunnels));
        Assert.Equal(0, seenByBob.Links);
        Assert.Equal(seenByAdmin.CertificateThumbprint, seenByBob.CertificateThumbprint);
        Assert.NotEqual(string.Empty, seenByAdmin.DataPath);
        Assert.Equal(1, seenByAdmin.Tunnels);
        var users = await Assert.ThrowsAsync<QmTunnelException>(() => bob.NewUserAsync("eve", "Operators", "eve-password-1", null, true, "", default));
        Assert.Equal(QmErrorKind.PermissionDenied, users.Kind);

        var own = await bob.NewTunnelAsync(Profile("bobs"), [EngineFixture.AdminLogin], default);
        Assert.Equal(("bob", "Operators"), (own.Owner, own.OwnerGroup));
        Assert.Equal(["bobs"], (await bob.GetTunnelsAsync(default)).Select(t => t.Name));
        Assert.Equal(["admins", "bobs"], (await admin.GetTunnelsAsync(default)).Select(t => t.Name).Order());
    }

    [Fact]
    public async Task A_tunnel_the_users_group_may_not_build_is_refused_on_the_managed_server_itself()
    {
        _b.NewGroup("Narrow", GroupRights.CreateTunnels, ["L#*:*#*#*:80"]);
        _b.NewUser("carol", "Narrow", "carol-password-1");
        await using var carol = await ConnectAsync(_b, "carol", "carol-password-1");
        var denied = await Assert.ThrowsAsync<QmTunnelException>(() => carol.NewTunnelAsync(Profile("wide"), [EngineFixture.AdminLogin], default));
        Assert.Equal(ErrorIds.PermissionDenied, denied.ErrorId);
        Assert.Contains("group 'Narrow'", denied.Message);
        Assert.Empty(_b.GetTunnels());
    }

    [Fact]
    public async Task A_wrong_password_is_AuthenticationFailed()
    {
        var error = await Assert.ThrowsAsync<QmTunnelException>(() => ConnectAsync(_b, "admin", "wrong-password"));
        Assert.Equal(ErrorIds.AuthenticationFailed, error.ErrorId);
        Assert.Equal(QmErrorKind.AuthenticationError, error.Kind);
    }

    [Fact]
    public async Task Users_groups_and_configuration_are_managed_remotely()
    {
        await using var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        var group = await session.NewGroupAsync("Ops", GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, ["L#*:*#*#*:22"], "ops", default);
        Assert.Equal(GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, group.Rights);
        var user = await session.NewUserAsync("dave", "Ops", "dave-password-1", null, true, "", default);
        Assert.True(user.HasPassword);
        await session.SetUserAsync("dave", new UserChange { Enabled = false }, default);
        Assert.False(_b.GetUser("dave").Enabled);
        var config = await session.SetServerConfigAsync(new ServerConfigChange { AllowPlainLinks = false }, default);
        Assert.False(config.AllowPlainLinks);
        Assert.Contains(await session.GetGroupsAsync(default), g => g.Name == "Ops");
        var missing = await Assert.ThrowsAsync<QmTunnelException>(() => session.GetUserAsync("nobody", default));
        Assert.Equal(SecurityErrorIds.UserNotFound, missing.ErrorId);
    }

    [Fact]
    public async Task A_watch_pushes_updates_and_ends_on_the_server_when_cancelled()
    {
        await using var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        await session.NewTunnelAsync(Profile("watched"), [EngineFixture.AdminLogin], default);
        var listen = (await session.StartTunnelAsync("watched", default)).BoundListen!;
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var updates = 0;
        var traffic = Task.Run(async () =>
        {
            for (var i = 0; i < 20 && !cancel.IsCancellationRequested; i++)
            {
                await SocketTestExtensions.EchoAsync(listen, new byte[1000]);
                await Task.Delay(100);
            }
        });
        await foreach (var update in session.WatchTunnelStatsAsync(["watched"], TimeSpan.FromMilliseconds(250), cancel.Token))
        {
            Assert.Equal("watched", Assert.Single(update).Name);
            if (++updates == 3)
            {
                break;
            }
        }
        Assert.Equal(3, updates);
        await cancel.CancelAsync();
        await traffic.ContinueWith(_ => { }, TaskScheduler.Default);
        // The server's side of the watch ends too: no management stream is left open on B's links.
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links >= 1 && ManagementStreamsOn(_b) == 0);
    }

    private static int ManagementStreamsOn(QmTunnelEngine engine) => engine.InboundStreamCount;

    [Fact]
    public async Task A_closed_session_says_so()
    {
        var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        await session.DisposeAsync();
        Assert.False(session.IsOpen);
        var closed = await Assert.ThrowsAsync<QmTunnelException>(() => session.GetTunnelsAsync(default));
        Assert.Equal(ErrorIds.SessionClosed, closed.ErrorId);
    }

    [Fact]
    public async Task A_password_is_never_sent_on_a_plain_session()
    {
        // Through a relay that records what the client sends, as an eavesdropper on the plain link would: the server
        // refusing a password it received would give the same error, so the bytes on the wire are what is checked.
        await using var relay = new RecordingRelay(_b.Port);
        await using var session = await QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{relay.Port}", "test"),
            new PasswordLogin("admin", EngineFixture.AdminPassword), TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));
        Assert.False(session.IsEncrypted);
        Assert.NotEmpty(await session.GetGroupsAsync(default)); // the login itself is challenge-response
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => session.NewUserAsync("erin", "Administrators", "erin-password-1", null, true, "", default));
        Assert.Equal(ErrorIds.CredentialOnPlainLink, refused.ErrorId);
        Assert.Null(_b.GetUsers().FirstOrDefault(u => u.Name == "erin"));
        // The recording is real: a request after it is there in clear text.
        await Assert.ThrowsAsync<QmTunnelException>(() => session.GetUserAsync("canary-5f2e", default));
        var sent = System.Text.Encoding.UTF8.GetString(relay.FromClient);
        Assert.Contains("canary-5f2e", sent, StringComparison.Ordinal);
        Assert.DoesNotContain("erin-password-1", sent, StringComparison.Ordinal);
        Assert.DoesNotContain(EngineFixture.AdminPassword, sent, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_rule_taken_away_applies_to_the_next_connection_and_a_disabled_user_loses_its_links()
    {
        // A's tunnel logs in to B as frank, whose group may build it.
        _b.NewGroup("Tunnelers", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("frank", "Tunnelers", "frank-password-1");
        await _a.NewTunnelAsync(new TunnelProfile { Name = "franks", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b)], Target = _echo.Uri },
            [new HopLogin("frank", "frank-password-1")]);
        var listen = (await _a.StartTunnelAsync("franks")).BoundListen!;
        Assert.Equal(new byte[] { 1, 2 }, await SocketTestExtensions.EchoAsync(listen, [1, 2]));

        _b.SetGroup("Tunnelers", new GroupChange { AllowRules = ["L#*:*#*#*:1"] });
        await Assert.ThrowsAnyAsync<SocketException>(() => TunnelTests.ConnectAndReadAsync(listen));
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("franks").LastError?.Contains("Tunnelers", StringComparison.Ordinal) == true);

        _b.SetGroup("Tunnelers", new GroupChange { AllowRules = ["L#*:*#*#*:*"] });
        Assert.Equal(new byte[] { 3 }, await SocketTestExtensions.EchoAsync(listen, [3]));
        Assert.Equal(1, _b.GetServerInfo().Links);
        _b.SetUser("frank", new UserChange { Enabled = false });
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == 0);
        await Assert.ThrowsAnyAsync<SocketException>(() => TunnelTests.ConnectAndReadAsync(listen)); // and it cannot log in again
        var lastError = "";
        try
        {
            await TunnelTests.WaitUntil(() => (lastError = _a.GetTunnelStats("franks").LastError ?? "").Contains("refused the login", StringComparison.Ordinal));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException("LastError: " + lastError, e);
        }
    }

    /// <summary>Sends raw bytes as a management request on a logged-in link and returns the answer's error id.</summary>
    private async Task<string?> RawRequestAsync(byte[] request)
    {
        var link = await LinkDialer.DialAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{_b.Port}", "test"), new PasswordLogin("admin", EngineFixture.AdminPassword),
            new LinkOptions(), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new PeerCertificatePolicy(new ClientKnownServers(_pins)),
            TimeSpan.FromSeconds(10), CancellationToken.None);
        try
        {
            var stream = link.OpenStream(new QmTunnel.Engine.Protocol.OpenMessage(QmTunnel.Engine.Protocol.StreamProtocol.Management, "", "", [], 1000,
                QmTunnel.Engine.Protocol.OpenOptions.None, ""), new TrafficCounters(), 1024 * 1024);
            await stream.SendAsync(request, CancellationToken.None);
            stream.SendFin();
            var answer = await ManagementMessages.ReadAsync(stream, CancellationToken.None);
            Assert.NotNull(answer);
            Assert.False(answer!["ok"]!.GetValue<bool>());
            return answer["error"]?["id"]?.GetValue<string>();
        }
        finally
        {
            await link.CloseAsync(QmTunnel.Engine.Protocol.ProtocolErrorCode.Shutdown, "test over");
        }
    }

    private static byte[] Framed(string json)
    {
        var body = System.Text.Encoding.UTF8.GetBytes(json);
        return [.. BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(body.Length)), .. body];
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("{\"v\":2,\"op\":\"GetTunnels\",\"args\":{}}")]
    [InlineData("{\"v\":1,\"op\":\"FormatDisk\",\"args\":{}}")]
    [InlineData("{\"v\":1,\"op\":\"GetTunnel\",\"args\":{}}")]
    [InlineData("{\"v\":1,\"op\":\"GetTunnel\",\"args\":{\"name\":42}}")]
    [InlineData("{\"v\":1,\"op\":\"NewTunnel\",\"args\":{\"profile\":{\"name\":\"x\"}}}")]
    [InlineData("[1,2,3]")]
    public async Task A_malformed_management_request_is_answered_with_ManagementMessageInvalid_and_the_server_goes_on(string json)
    {
        Assert.Equal(ErrorIds.ManagementMessageInvalid, await RawRequestAsync(Framed(json)));
        await using var session = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword);
        Assert.Empty(await session.GetTunnelsAsync(default));
        Assert.Empty(_b.GetTunnels());
    }

    [Fact]
    public async Task An_oversize_management_message_is_refused_from_its_length_alone()
    {
        Assert.Equal(ErrorIds.ManagementMessageInvalid, await RawRequestAsync([0x7F, 0xFF, 0xFF, 0xFF, (byte)'{']));
    }

    [Fact]
    public async Task Management_sessions_beyond_the_saved_limit_are_refused_until_one_closes()
    {
        Assert.Equal(100, _b.GetServerConfig().MaxManagementSessions);
        _b.NewGroup("Viewers", GroupRights.None, []);
        _b.NewUser("vic", "Viewers", "vic-password-1");
        _b.SetServerConfig(new ServerConfigChange { MaxManagementSessions = 1 });
        var first = await ConnectAsync(_b, "vic", "vic-password-1");
        Assert.Equal(1, _b.GetServerConfig().ManagementSessions);
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => ConnectAsync(_b, "vic", "vic-password-1"));
        Assert.Equal(ErrorIds.ManagementSessionLimit, refused.ErrorId);
        Assert.Equal(QmErrorKind.ResourceBusy, refused.Kind);
        Assert.Contains("Set-QmTunnelServerConfig -MaxManagementSessions", refused.Message);
        Assert.Contains("held by vic 1", refused.Message);
        // An administrator always gets in.
        await using (var admin = await ConnectAsync(_b, "admin", EngineFixture.AdminPassword))
        {
            Assert.Equal(2, _b.GetServerConfig().ManagementSessions);
        }
        await TunnelTests.WaitUntil(() => _b.GetServerConfig().ManagementSessions == 1);
        // A tunnel's link through B is not a management session: it is not limited.
        await _a.NewTunnelAsync(Profile("through") with { Via = [EngineFixture.TlsHop(_b)] }, [EngineFixture.AdminLogin]);
        Assert.Equal(1, _b.GetServerConfig().ManagementSessions);
        await first.DisposeAsync();
        await TunnelTests.WaitUntil(() => _b.GetServerConfig().ManagementSessions == 0);
        await using var second = await ConnectAsync(_b, "vic", "vic-password-1");
        Assert.Equal(_b.Port, second.ServerInfo!.Port);
        var bad = Assert.Throws<QmTunnelException>(() => _b.SetServerConfig(new ServerConfigChange { MaxManagementSessions = 0 }));
        Assert.Equal(SecurityErrorIds.ServerSettingInvalid, bad.ErrorId);
    }
}

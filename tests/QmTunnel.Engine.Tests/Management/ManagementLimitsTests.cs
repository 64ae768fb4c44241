using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// What a logged-in user without rights can hold on a server (docs/security.md, "Limits"), over real links to a real
/// engine whose clock is a FakeTimeProvider: management sessions per user and in all (an administrator always gets in),
/// requests in progress per session, requests that never come, idle sessions.
/// </summary>
public sealed class ManagementLimitsTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly FakeTimeProvider _clock = new();
    private readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n") + ".txt");
    private readonly List<IAsyncDisposable> _open = [];
    private QmTunnelEngine _b = null!;

    public async Task InitializeAsync()
    {
        _b = await _engines.StartAsync(FakeClockOptions(), _clock);
        _b.NewGroup("Nobody", GroupRights.None, []);
        _b.NewUser("bob", "Nobody", "bob-password-1");
        _b.NewUser("carol", "Nobody", "carol-password-1");
    }

    /// <summary>An engine on a fake clock: no drain wait at stop (its deadline would never come).</summary>
    internal static ServerOptions FakeClockOptions() => new()
    {
        Port = 0,
        DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")),
        AllowPlainLinks = true,
        AdminPassword = EngineFixture.AdminPassword,
        PasswordIterations = EngineFixture.TestIterations,
        DrainTimeout = TimeSpan.Zero,
    };

    public async Task DisposeAsync()
    {
        foreach (var item in _open)
        {
            await item.DisposeAsync();
        }
        await _engines.DisposeAsync();
        File.Delete(_pins);
    }

    private EndpointUri Address => EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{_b.Port}", "test");

    private async Task<QmTunnelSession> ConnectAsync(LinkLogin login)
    {
        // No heartbeats: the server's clock is a fake one these tests move by minutes at a time.
        var session = await QmTunnelSession.ConnectAsync(Address, login, TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins), LinkSessionSettings.None);
        _open.Add(session);
        return session;
    }

    /// <summary>Bob's password keys, derived once (a hundred sessions do not each pay PBKDF2).</summary>
    private async Task<KeysLogin> KeysAsync(string user, string password)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", _b.Port);
        var (salt, iterations) = await Link.QueryLoginParametersAsync(socket, new LinkOptions(), user, CancellationToken.None);
        return new KeysLogin(user, ScramKeys.Derive(password, salt, iterations));
    }

    private async Task<Link> DialAsync(LinkLogin login)
    {
        var link = await LinkDialer.DialAsync(Address, login, new LinkOptions(), NullLogger.Instance, new PeerCertificatePolicy(new ClientKnownServers(_pins)),
            TimeSpan.FromSeconds(10), CancellationToken.None, LinkSessionSettings.None);
        _open.Add(link);
        return link;
    }

    private static MuxStream OpenManagement(Link link) =>
        link.OpenStream(new OpenMessage(StreamProtocol.Management, "", "", [], 1000, OpenOptions.None, ""), new TrafficCounters(), 1024 * 1024);

    private static async Task<string?> ErrorOfAnswerAsync(MuxStream stream)
    {
        var answer = await ManagementMessages.ReadAsync(stream, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        return answer?["ok"]?.GetValue<bool>() == true ? null : answer?["error"]?["id"]?.GetValue<string>();
    }

    private Link ServerSideOf(string user) => _b.InboundLinks().Single(l => l.User == user);

    [Fact]
    public async Task Management_streams_without_a_request_are_refused_over_the_limit_then_timed_out_and_nothing_stays()
    {
        var bob = await DialAsync(new PasswordLogin("bob", "bob-password-1"));
        var streams = Enumerable.Range(0, 100).Select(_ => OpenManagement(bob)).ToList();
        var answers = streams.Select(ErrorOfAnswerAsync).ToList();
        Assert.All(await Task.WhenAll(streams.Select(s => s.Opened)).WaitAsync(TimeSpan.FromSeconds(30)), Assert.True);

        // Past the requests one session may have in progress, each stream is answered at once.
        var limit = QmTunnelEngine.MaxManagementRequestsPerSession;
        await TunnelTests.WaitUntil(() => answers.Count(a => a.IsCompleted) == 100 - limit, 30_000);
        Assert.All(answers.Where(a => a.IsCompleted), a => Assert.Equal(ErrorIds.ManagementRequestLimit, a.Result));
        var server = ServerSideOf("bob");
        await TunnelTests.WaitUntil(() => server.StreamCount == limit); // answered streams are not kept, though bob never closed them

        // The others waited for a request that never came: answered and closed after the timeout.
        _clock.Advance(QmTunnelEngine.ManagementRequestTimeout);
        Assert.All(await Task.WhenAll(answers).WaitAsync(TimeSpan.FromSeconds(30)), id => Assert.True(id is ErrorIds.ManagementRequestLimit or ErrorIds.ManagementRequestTimeout, id));
        Assert.Equal(limit, answers.Count(a => a.Result == ErrorIds.ManagementRequestTimeout));
        await TunnelTests.WaitUntil(() => server.StreamCount == 0);

        // The session goes on: a real request is served.
        var request = OpenManagement(bob);
        await request.SendAsync(ManagementMessages.Frame(ManagementMessages.Request("GetUser", new JsonObject { ["name"] = "bob" })), CancellationToken.None);
        request.SendFin();
        Assert.Null(await ErrorOfAnswerAsync(request));
        Assert.False(bob.IsClosed);
    }

    [Fact]
    public async Task A_user_without_rights_holding_every_session_does_not_lock_out_an_administrator_and_the_refusal_names_the_holders()
    {
        _b.SetServerConfig(new ServerConfigChange { MaxManagementSessionsPerUser = 100 });
        var bobKeys = await KeysAsync("bob", "bob-password-1");
        for (var i = 0; i < QmTunnelEngine.DefaultMaxManagementSessions; i++)
        {
            await ConnectAsync(bobKeys);
        }
        Assert.Equal(100, _b.GetServerConfig().ManagementSessions);

        var admin = await ConnectAsync(new PasswordLogin("admin", EngineFixture.AdminPassword));
        Assert.Equal(101, (await admin.GetServerConfigAsync(default)).ManagementSessions);

        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => ConnectAsync(new PasswordLogin("carol", "carol-password-1")));
        Assert.Equal(ErrorIds.ManagementSessionLimit, refused.ErrorId);
        Assert.Contains("held by bob 100, admin 1", refused.Message);
        Assert.Contains("an administrator always gets in", refused.Message);
        // Raising the limit needs a session, which the administrator has.
        await admin.SetServerConfigAsync(new ServerConfigChange { MaxManagementSessions = 200 }, default);
        Assert.Equal("carol", (await ConnectAsync(new PasswordLogin("carol", "carol-password-1"))).User);
    }

    [Fact]
    public async Task A_user_gets_at_most_its_own_limit_of_sessions_while_others_still_get_in()
    {
        Assert.Equal(QmTunnelEngine.DefaultMaxManagementSessionsPerUser, _b.GetServerConfig().MaxManagementSessionsPerUser);
        var bobKeys = await KeysAsync("bob", "bob-password-1");
        for (var i = 0; i < QmTunnelEngine.DefaultMaxManagementSessionsPerUser; i++)
        {
            await ConnectAsync(bobKeys);
        }
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => ConnectAsync(bobKeys));
        Assert.Equal(ErrorIds.ManagementSessionLimit, refused.ErrorId);
        Assert.Equal(QmErrorKind.ResourceBusy, refused.Kind);
        Assert.Contains("User 'bob' already has 10 management sessions", refused.Message);
        Assert.Contains("MaxManagementSessionsPerUser", refused.Message);
        Assert.Equal("carol", (await ConnectAsync(new PasswordLogin("carol", "carol-password-1"))).User);

        var bad = Assert.Throws<QmTunnelException>(() => _b.SetServerConfig(new ServerConfigChange { MaxManagementSessionsPerUser = 0 }));
        Assert.Equal(SecurityErrorIds.ServerSettingInvalid, bad.ErrorId);
        Assert.Contains("1 to 10000", bad.Message);
        _b.SetServerConfig(new ServerConfigChange { MaxManagementSessionsPerUser = 11 });
        Assert.Equal("bob", (await ConnectAsync(bobKeys)).User);
    }

    [Fact]
    public async Task An_idle_session_is_closed_after_the_idle_timeout_and_a_busy_one_is_not()
    {
        var idle = await ConnectAsync(new PasswordLogin("bob", "bob-password-1"));
        var busy = await ConnectAsync(new PasswordLogin("admin", EngineFixture.AdminPassword));
        using var stopWatching = new CancellationTokenSource();
        var firstUpdate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watching = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in busy.WatchTunnelStatsAsync(null, TimeSpan.FromSeconds(1), stopWatching.Token))
                {
                    firstUpdate.TrySetResult();
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
        // The watch is in progress on the server (it sent an update), and it is the only request there: both sessions'
        // first requests (ConnectAsync's) have ended, each with its idle time stamped. (The client has an answer before
        // the server ends the request: a count of 1 alone may be one of those, with the watch not begun yet.)
        await firstUpdate.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await TunnelTests.WaitUntil(() => _b.ManagementRequestsInProgress == 1);

        // Just under the timeout: both stay.
        var timeout = _b.GetServerConfig().ManagementIdleTimeout;
        Assert.Equal(QmTunnelEngine.DefaultManagementIdleTimeout, timeout);
        AdvanceBy(timeout - TimeSpan.FromSeconds(30));
        Assert.True(idle.IsOpen && busy.IsOpen);
        AdvanceBy(TimeSpan.FromMinutes(1));
        await TunnelTests.WaitUntil(() => !idle.IsOpen);
        Assert.True(busy.IsOpen);
        var closed = await Assert.ThrowsAsync<QmTunnelException>(() => idle.GetUserAsync("bob", default));
        Assert.Equal(ErrorIds.SessionClosed, closed.ErrorId);
        Assert.Contains("ManagementIdleTimeout", closed.Message);

        // The watch ended: the busy session is idle from then on.
        await stopWatching.CancelAsync();
        await watching;
        await TunnelTests.WaitUntil(() => _b.ManagementRequestsInProgress == 0 && _b.InboundStreamCount == 0);
        AdvanceBy(timeout + TimeSpan.FromMinutes(1));
        await TunnelTests.WaitUntil(() => !busy.IsOpen);
    }

    [Fact]
    public async Task Limits_are_saved_range_checked_and_shown()
    {
        var config = _b.SetServerConfig(new ServerConfigChange
        {
            MaxManagementSessionsPerUser = 3,
            ManagementIdleTimeout = TimeSpan.FromMinutes(5),
            MaxStreamsPerLink = 64,
            LinkIdleTimeout = TimeSpan.FromHours(1),
        });
        Assert.Equal((3, TimeSpan.FromMinutes(5), 64, TimeSpan.FromHours(1)),
            (config.MaxManagementSessionsPerUser, config.ManagementIdleTimeout, config.MaxStreamsPerLink, config.LinkIdleTimeout));
        foreach (var (change, range) in new (ServerConfigChange, string)[]
        {
            (new() { MaxStreamsPerLink = 15 }, "16 to 100000"),
            (new() { MaxStreamsPerLink = 100_001 }, "16 to 100000"),
            (new() { ManagementIdleTimeout = TimeSpan.FromSeconds(59) }, "00:01:00 to 7.00:00:00"),
            (new() { LinkIdleTimeout = TimeSpan.FromDays(8) }, "00:01:00 to 7.00:00:00"),
            (new() { LinkIdleTimeout = TimeSpan.FromTicks(600) }, "00:01:00 to 7.00:00:00"),
            (new() { ManagementIdleTimeout = TimeSpan.FromSeconds(90.5) }, "whole seconds"),
            (new() { MaxManagementSessionsPerUser = 10_001, MaxStreamsPerLink = 64 }, "1 to 10000"),
        })
        {
            var bad = Assert.Throws<QmTunnelException>(() => _b.SetServerConfig(change with { MaxManagementSessions = 7 }));
            Assert.Equal(SecurityErrorIds.ServerSettingInvalid, bad.ErrorId);
            Assert.Contains(range, bad.Message);
        }
        Assert.Equal(QmTunnelEngine.DefaultMaxManagementSessions, _b.GetServerConfig().MaxManagementSessions); // nothing changed

        // Links per server and the buffered-bytes budget: defaults, ranges, applied to the links' shared limits at once.
        Assert.Equal((1000, 512), (_b.GetServerConfig().MaxLinks, _b.GetServerConfig().MaxBufferedMB));
        foreach (var (change, range) in new (ServerConfigChange, string)[]
        {
            (new() { MaxLinks = 9 }, "MaxLinks 9 is out of range: give 10 to 100000 (1000 is the default)"),
            (new() { MaxLinks = 100_001 }, "10 to 100000"),
            (new() { MaxBufferedMB = 15 }, "MaxBufferedMB 15 is out of range: give 16 to 65536 MiB (512 is the default)"),
            (new() { MaxBufferedMB = 65_537, MaxLinks = 50 }, "16 to 65536"),
        })
        {
            var bad = Assert.Throws<QmTunnelException>(() => _b.SetServerConfig(change));
            Assert.Equal(SecurityErrorIds.ServerSettingInvalid, bad.ErrorId);
            Assert.Contains(range, bad.Message);
        }
        Assert.Equal((1000, 512), (_b.GetServerConfig().MaxLinks, _b.GetServerConfig().MaxBufferedMB));
        var limits = _b.SetServerConfig(new ServerConfigChange { MaxLinks = 50, MaxBufferedMB = 64 });
        Assert.Equal((50, 64), (limits.MaxLinks, limits.MaxBufferedMB));
        var info = _b.GetServerInfo();
        Assert.Equal((0L, 0L, 0L), (info.LinksRefused, info.BufferWaits, info.StreamsRefused));

        // Saved: a restart on the same data path keeps them.
        var path = _b.Options.DataPath;
        await _b.StopAsync();
        await using var again = new QmTunnelEngine(_b.Options with { AdminPassword = null }, timeProvider: _clock);
        await again.StartAsync();
        var saved = again.GetServerConfig();
        Assert.Equal((3, TimeSpan.FromMinutes(5), 64, TimeSpan.FromHours(1)),
            (saved.MaxManagementSessionsPerUser, saved.ManagementIdleTimeout, saved.MaxStreamsPerLink, saved.LinkIdleTimeout));
        Assert.Equal((50, 64), (saved.MaxLinks, saved.MaxBufferedMB));
        Assert.Equal(path, saved.DataPath);
    }

    /// <summary>Advances the fake clock in steps, so the idle sweep runs as it would in real time.</summary>
    private void AdvanceBy(TimeSpan total)
    {
        var step = TimeSpan.FromSeconds(10);
        for (var done = TimeSpan.Zero; done < total; done += step)
        {
            _clock.Advance(step);
        }
    }
}

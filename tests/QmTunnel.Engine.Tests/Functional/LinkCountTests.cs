using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Diagnostics;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Links per server (MaxLinks, issue 8): B holds at most that many link sessions; one more is refused right after its
/// login with GoAway(LinkLimit) naming the setting, counted and logged once per episode; an administrator is counted
/// but never refused; the dialer (A's tunnels, New-QmTunnel's check, Connect-QmTunnelServer) reports LinkLimit; a
/// session that resumes is never refused.
/// </summary>
public sealed class LinkCountTests : IAsyncLifetime
{
    private const string BobPassword = "bob-password-1", FrankPassword = "frank-password-1";
    private readonly CapturingLoggerFactory _logsB = new();
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly List<Link> _links = [];
    private readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n") + ".txt");
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync(new ServerOptions
        {
            Port = 0, DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")), AllowPlainLinks = true,
            AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations,
        }, null, _logsB);
        _b.NewGroup("Nobody", GroupRights.None, []);
        _b.NewUser("bob", "Nobody", BobPassword);
        _b.NewGroup("Tunnelers", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("frank", "Tunnelers", FrankPassword);
        _b.SetServerConfig(new ServerConfigChange { MaxLinks = QmTunnelEngine.MinLinks });
    }

    public async Task DisposeAsync()
    {
        foreach (var link in _links)
        {
            await link.DisposeAsync();
        }
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        File.Delete(_pins);
    }

    /// <summary>A link to B logged in as <paramref name="user"/> (a new session), started so it reads what B says.</summary>
    private async Task<Link> LogInAsync(string user = "bob", string password = BobPassword)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _b.Port);
        var link = await Link.HandshakeAsDialerAsync(socket, new LinkOptions(), NullLogger.Instance, default, login: new PasswordLogin(user, password));
        _links.Add(link);
        link.Start();
        return link;
    }

    /// <summary>Fills B up to MaxLinks with links of bob (on top of <paramref name="already"/> held).</summary>
    private async Task<List<Link>> FillAsync(int already = 0)
    {
        var held = new List<Link>();
        for (var i = already; i < QmTunnelEngine.MinLinks; i++)
        {
            held.Add(await LogInAsync());
        }
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks);
        return held;
    }

    /// <summary>The link was refused with LinkLimit, and B is done with it (logged, out of its pending connections).</summary>
    private async Task<Link> RefusedAsync(Task<Link> dialing)
    {
        var link = await dialing;
        await link.Completion.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(ProtocolErrorCode.LinkLimit, link.CloseCode);
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().PendingLinks == 0);
        return link;
    }

    [Fact]
    public async Task A_link_over_MaxLinks_is_refused_after_its_login_with_the_reason_counted_and_logged_once_per_episode()
    {
        var held = await FillAsync();

        var refused = await RefusedAsync(LogInAsync());
        Assert.Contains($"allows {QmTunnelEngine.MinLinks} (MaxLinks)", refused.CloseReason);
        Assert.Contains("Set-QmTunnelServerConfig -MaxLinks", refused.CloseReason);
        await RefusedAsync(LogInAsync());
        // A management session of a user without rights is a link like any other.
        var session = await Assert.ThrowsAsync<QmTunnelException>(() => QmTunnelSession.ConnectAsync(EndpointUri.ParseServer(EngineFixture.Hop(_b), "test"),
            new PasswordLogin("bob", BobPassword), TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins)));
        Assert.Equal(ErrorIds.LinkLimit, session.ErrorId);
        Assert.StartsWith($"{EngineFixture.Hop(_b)} refused the link: ", session.Message, StringComparison.Ordinal);
        Assert.Contains("Set-QmTunnelServerConfig -MaxLinks", session.Message);
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().PendingLinks == 0 && _b.GetServerInfo().LinksRefused == 3);
        Assert.Contains("(MaxLinks)", Assert.Single(_logsB.Event(EventIds.LinkLimitReached)).Message);
        Assert.Equal(QmTunnelEngine.MinLinks, _b.GetServerInfo().Links);
        Assert.Equal(0, _b.GetServerInfo().ProtocolErrors); // a refusal is not the peer's fault

        // An administrator is counted but never refused: one can always get in and raise the limit.
        var admin = await LogInAsync("admin", EngineFixture.AdminPassword);
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks + 1);
        Assert.Equal(3, _b.GetServerInfo().LinksRefused);

        // Below the limit again, a link is admitted; the next refusal starts a new episode, logged again.
        await admin.DisposeAsync();
        await held[0].DisposeAsync();
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks - 1);
        await LogInAsync();
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks);
        await RefusedAsync(LogInAsync());
        // The server logs a refusal once the refused dialer has closed (it reads until then, so no reset overtakes the GoAway).
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().LinksRefused == 4 && _logsB.Event(EventIds.LinkLimitReached).Count == 2);

        // Applied live: a higher limit admits the next link at once.
        _b.SetServerConfig(new ServerConfigChange { MaxLinks = QmTunnelEngine.MinLinks + 1 });
        await LogInAsync();
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks + 1);
        Assert.Equal(4, _b.GetServerInfo().LinksRefused);
    }

    [Fact]
    public async Task A_tunnel_to_a_server_at_MaxLinks_reports_LinkLimit_in_its_last_error_and_New_QmTunnel_refuses_with_LinkLimit()
    {
        await _a.NewTunnelAsync(new TunnelProfile { Name = "franks", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri },
            [new HopLogin("frank", FrankPassword)]);
        var listen = (await _a.StartTunnelAsync("franks")).BoundListen!;
        Assert.Equal(new byte[] { 1 }, await SocketTestExtensions.EchoAsync(listen, [1]));
        // A's link to B goes away; B fills up meanwhile.
        await _a.OutboundLinks().Single().CloseAsync(ProtocolErrorCode.Shutdown, "test: the link goes away");
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == 0);
        var held = await FillAsync();

        await Assert.ThrowsAnyAsync<SocketException>(() => TunnelTests.ConnectAndReadAsync(listen));
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("franks").LastError?.Contains("(MaxLinks)", StringComparison.Ordinal) == true);
        Assert.Contains("Set-QmTunnelServerConfig -MaxLinks", _a.GetTunnelStats("franks").LastError);

        var check = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(
            new TunnelProfile { Name = "another", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri },
            [new HopLogin("frank", FrankPassword)]));
        Assert.Equal(ErrorIds.LinkLimit, check.ErrorId);
        Assert.Equal(QmErrorKind.ResourceBusy, check.Kind);
        Assert.Contains("Set-QmTunnelServerConfig -MaxLinks", check.Message);
        Assert.True(_b.GetServerInfo().LinksRefused >= 2);

        // One of B's links closes: the tunnel's next client gets through.
        await held[0].DisposeAsync();
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == QmTunnelEngine.MinLinks - 1);
        Assert.Equal(new byte[] { 2 }, await SocketTestExtensions.EchoAsync(listen, [2]));
    }

    [Fact]
    public async Task A_session_that_resumes_while_the_server_is_at_MaxLinks_is_not_refused()
    {
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, _b.Port));
        await _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "cut", Listen = "tcp://127.0.0.1:0", Via = [$"qmt+plain://127.0.0.1:{proxy.EndPoint.Port}"], Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        }, [new HopLogin("frank", FrankPassword)]);
        var listen = (await _a.StartTunnelAsync("cut")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 7 });
        var one = new byte[1];
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
        await FillAsync(already: 1); // A's link is one of B's MaxLinks

        await proxy.CutForAsync(TimeSpan.FromMilliseconds(300), CutMode.Reset);
        await TunnelTests.WaitUntil(() => _a.OutboundLinks().SingleOrDefault()?.Resumes == 1, 30_000);

        // The client's connection lived through it, and B refused nothing; a new session is still refused.
        await client.SendAllAsync(new byte[] { 8 });
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(8, one[0]);
        Assert.Equal(0, _b.GetServerInfo().LinksRefused);
        Assert.Equal(QmTunnelEngine.MinLinks, _b.GetServerInfo().Links);
        await RefusedAsync(LogInAsync());
        Assert.Equal(1, _b.GetServerInfo().LinksRefused);
    }
}

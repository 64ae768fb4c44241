using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// What a logged-in peer may make a server do with an Open it writes by hand (a real link, the server's own dialer):
/// every stream that makes the server dial is admitted on what the server can see itself, never on the dialer's word.
/// </summary>
public sealed class OpenAdmissionTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly TcpListener _probe = new(IPAddress.Loopback, 0); // a port the server must never be made to dial
    private QmTunnelEngine _server = null!;

    public async Task InitializeAsync()
    {
        _probe.Start();
        _server = await _engines.StartAsync();
        _server.NewGroup("Nobody", GroupRights.None, []);
        _server.NewUser("nobody", "Nobody", "nobody-password");
        _server.NewGroup("Echo", GroupRights.CreateTunnels, [$"L#*:*#*#127.0.0.1:{_echo.Port}"]);
        _server.NewUser("echo", "Echo", "echo-password");
    }

    public async Task DisposeAsync()
    {
        _probe.Stop();
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private int ProbePort => ((IPEndPoint)_probe.LocalEndpoint).Port;
    private string Self => $"127.0.0.1:{_server.Port}";

    private Task<Link> LogInAsync(string user, string password) =>
        LinkDialer.DialAsync(EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{_server.Port}", "test"), new PasswordLogin(user, password),
            new LinkOptions { ServerName = "raw-client" }, NullLogger.Instance, new PeerCertificatePolicy(new MemoryPins()), TimeSpan.FromSeconds(10), CancellationToken.None);

    /// <summary>Opens a stream and waits for its first answer: the Reset it gets, or null when the stream was admitted.</summary>
    private static async Task<StreamResetException?> AnswerAsync(Link link, OpenMessage open)
    {
        var stream = link.OpenStream(open, new TrafficCounters(), 64 * 1024);
        stream.SendFin();
        try
        {
            await stream.ReadToEndAsync(1 << 16, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
            return null;
        }
        catch (StreamResetException ex)
        {
            return ex;
        }
    }

    private static OpenMessage Open(StreamProtocol protocol, string target, IReadOnlyList<string> route, IReadOnlyList<string> servers, string listen = "127.0.0.1:5000") =>
        new(protocol, "raw", target, route, 5000, OpenOptions.None, "raw") { Listen = listen, Servers = servers };

    [Fact]
    public async Task A_login_query_from_a_user_without_rights_is_refused_before_the_server_dials_anything()
    {
        await using var link = await LogInAsync("nobody", "nobody-password");
        var open = Open(StreamProtocol.AuthQuery, $"tcp://127.0.0.1:{_echo.Port}", [$"qmt+plain://admin@127.0.0.1:{ProbePort}"], [Self, $"127.0.0.1:{ProbePort}"]);
        var reset = await AnswerAsync(link, open);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, reset?.Code);
        Assert.Contains("CreateTunnels", reset!.Message);
        Assert.False(_probe.Pending(), "the server dialed the queried address for a user without rights");
    }

    [Fact]
    public async Task A_login_query_outside_the_users_allow_rules_is_refused_before_the_server_dials_anything()
    {
        await using var link = await LogInAsync("echo", "echo-password");
        // The user may reach the echo target through any chain, but this query asks about a tunnel to another target.
        var open = Open(StreamProtocol.AuthQuery, $"tcp://127.0.0.1:{ProbePort}", [$"qmt+plain://admin@127.0.0.1:{ProbePort}"], [Self, $"127.0.0.1:{ProbePort}"]);
        var reset = await AnswerAsync(link, open);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, reset?.Code);
        Assert.Contains("allow-rules", reset!.Message);
        Assert.False(_probe.Pending(), "the server dialed for a tunnel no allow-rule allows");
    }

    [Fact]
    public async Task A_link_query_from_a_user_without_rights_is_refused_and_tells_nothing_about_the_link()
    {
        await using var link = await LogInAsync("nobody", "nobody-password");
        var open = Open(StreamProtocol.LinkInfo, $"tcp://127.0.0.1:{_echo.Port}", [$"qmt+plain://127.0.0.1:{ProbePort}"], [Self, $"127.0.0.1:{ProbePort}"]);
        var reset = await AnswerAsync(link, open);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, reset?.Code);
        Assert.Contains("CreateTunnels", reset!.Message);
        Assert.False(_probe.Pending(), "the server dialed for a link query");
    }

    [Fact]
    public async Task An_admitted_link_query_about_a_link_the_server_does_not_have_is_answered_down_and_dials_nothing()
    {
        await using var link = await LogInAsync("echo", "echo-password");
        var open = Open(StreamProtocol.LinkInfo, $"tcp://127.0.0.1:{_echo.Port}", [$"qmt+plain://127.0.0.1:{ProbePort}"], [Self, $"127.0.0.1:{ProbePort}"]);
        var stream = link.OpenStream(open, new TrafficCounters(), 64 * 1024);
        stream.SendFin();
        var answer = await stream.ReadToEndAsync(LinkInfoRecord.MaxAnswerBytes, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));

        Assert.True(LinkInfoRecord.TryParse(answer, out var record, out var problem), problem);
        Assert.Equal(new LinkInfoRecord(0, LinkInfoState.Down, null, 0, 0, 0, 0), record);
        Assert.False(_probe.Pending(), "the server dialed for a link query");
    }

    [Fact]
    public async Task A_route_that_is_not_the_checked_chain_is_refused_for_tunnels_checks_login_and_link_queries()
    {
        await using var link = await LogInAsync("echo", "echo-password");
        // The claimed chain matches the rule (one more server, then the echo target); the route dials the probe instead.
        foreach (var protocol in new[] { StreamProtocol.Tcp, StreamProtocol.Check, StreamProtocol.AuthQuery, StreamProtocol.Hold, StreamProtocol.LinkInfo })
        {
            var open = Open(protocol, $"tcp://127.0.0.1:{_echo.Port}", [$"qmt+plain://admin@127.0.0.1:{ProbePort}"], [Self, "198.51.100.9:9200"]);
            var reset = await AnswerAsync(link, open);
            Assert.Equal(ProtocolErrorCode.PermissionDenied, reset?.Code);
            Assert.Contains($"127.0.0.1:{ProbePort}", reset!.Message);
            Assert.Contains("198.51.100.9:9200", reset.Message);
        }
        // A route longer than the chain it claims.
        var longer = await AnswerAsync(link, Open(StreamProtocol.Tcp, $"tcp://127.0.0.1:{_echo.Port}", [$"qmt+plain://127.0.0.1:{ProbePort}"], [$"127.0.0.1:{ProbePort}"]));
        Assert.Equal(ProtocolErrorCode.PermissionDenied, longer?.Code);
        Assert.False(_probe.Pending(), "the server dialed a route the allow-rules were not checked against");
    }

    [Fact]
    public async Task The_listener_is_matched_as_this_server_sees_the_host_that_dialed_not_as_the_dialer_claims()
    {
        _server.SetGroup("Echo", new GroupChange { AllowRules = [$"L#10.0.0.5:8080#*#127.0.0.1:{_echo.Port}"] });
        await using var link = await LogInAsync("echo", "echo-password");
        var claimed = Open(StreamProtocol.Check, $"tcp://127.0.0.1:{_echo.Port}", [], [Self], listen: "10.0.0.5:8080");
        var reset = await AnswerAsync(link, claimed);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, reset?.Code);
        Assert.Contains("L#127.0.0.1:8080#", reset!.Message); // the tunnel as this server sees it

        _server.SetGroup("Echo", new GroupChange { AllowRules = [$"L#127.0.0.1:8080#*#127.0.0.1:{_echo.Port}"] });
        Assert.Null(await AnswerAsync(link, claimed));
    }

    [Fact]
    public async Task A_tunnel_whose_chain_is_consistent_is_still_carried()
    {
        await using var link = await LogInAsync("echo", "echo-password");
        var open = Open(StreamProtocol.Tcp, $"tcp://127.0.0.1:{_echo.Port}", [], [Self]);
        var stream = link.OpenStream(open, new TrafficCounters(), 64 * 1024);
        Assert.True(await stream.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
        stream.Reset(ProtocolErrorCode.ConnectionReset, "done");
    }

    [Fact]
    public async Task A_hold_is_admitted_like_a_connection_of_its_tunnel_and_refused_without_the_right_or_a_rule()
    {
        await using (var nobody = await LogInAsync("nobody", "nobody-password"))
        {
            var refused = await AnswerAsync(nobody, Open(StreamProtocol.Hold, $"tcp://127.0.0.1:{_echo.Port}", [], [Self]));
            Assert.Equal(ProtocolErrorCode.PermissionDenied, refused?.Code);
            Assert.Contains("CreateTunnels", refused!.Message);
        }
        await using var link = await LogInAsync("echo", "echo-password");
        var outside = await AnswerAsync(link, Open(StreamProtocol.Hold, $"tcp://127.0.0.1:{ProbePort}", [], [Self]));
        Assert.Equal(ProtocolErrorCode.PermissionDenied, outside?.Code);
        Assert.Contains("allow-rules", outside!.Message);
        Assert.False(_probe.Pending(), "a Hold made the server dial its target");
        Assert.Equal(0, _server.HoldCount);

        // Allowed: acknowledged without touching the target, and held open until the dialer's Fin.
        var hold = link.OpenStream(Open(StreamProtocol.Hold, $"tcp://127.0.0.1:{_echo.Port}", [], [Self]), new TrafficCounters(), 0);
        Assert.True(await hold.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, _server.HoldCount);
        Assert.Equal(0, _echo.Accepted);
        hold.SendFin();
        Assert.Empty(await hold.ReadToEndAsync(0, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
        await TunnelTests.WaitUntil(() => _server.HoldCount == 0);
    }

    [Fact]
    public async Task Holds_count_against_MaxStreamsPerLink_like_any_stream()
    {
        _server.SetServerConfig(new ServerConfigChange { MaxStreamsPerLink = QmTunnelEngine.MinStreamsPerLink });
        await using var link = await LogInAsync("echo", "echo-password");
        var open = Open(StreamProtocol.Hold, $"tcp://127.0.0.1:{_echo.Port}", [], [Self]);
        var holds = Enumerable.Range(0, QmTunnelEngine.MinStreamsPerLink).Select(_ => link.OpenStream(open, new TrafficCounters(), 0)).ToList();
        Assert.All(await Task.WhenAll(holds.Select(h => h.Opened)).WaitAsync(TimeSpan.FromSeconds(10)), Assert.True);

        var over = await AnswerAsync(link, open);
        Assert.Equal(ProtocolErrorCode.StreamLimit, over?.Code);
        Assert.Equal(QmTunnelEngine.MinStreamsPerLink, _server.HoldCount);
    }

    private sealed class MemoryPins : IKnownServers
    {
        private readonly Dictionary<string, string> _pins = [];
        public string? Find(string server) => _pins.GetValueOrDefault(server);
        public void Add(string server, string thumbprint) => _pins[server] = thumbprint;
    }
}

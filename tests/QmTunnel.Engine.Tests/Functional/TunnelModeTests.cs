using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Permanent and on-demand tunnels over real loopback links: the owning engine A runs on a FakeTimeProvider, so the
/// reconnect backoff, the client's wait for the chain and the idle timeout move only when a test advances the clock;
/// the other engines (and the network) run in real time, and the tests wait for them with bounded polls.
/// </summary>
public sealed class TunnelModeTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly string _bPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(QmTunnel.Engine.Tests.Management.ManagementLimitsTests.FakeClockOptions(), _clock);
        _b = await _engines.StartAsync(BOptions(0));
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    /// <summary>B's options: its own data path (so it can be started again on it) and a long drain (a Hold must not wait for it).</summary>
    private ServerOptions BOptions(int port) => new()
    {
        Port = port,
        DataPath = _bPath,
        AllowPlainLinks = true,
        AdminPassword = EngineFixture.AdminPassword,
        PasswordIterations = EngineFixture.TestIterations,
        DrainTimeout = TimeSpan.FromSeconds(30),
    };

    private const string Quiet = "?heartbeat=off&receive-timeout=off";

    private TunnelInfo NewTunnel(string name, TunnelMode mode, IReadOnlyList<string>? via = null) => _a.NewTestTunnel(new TunnelProfile
    {
        Name = name,
        Listen = "tcp://127.0.0.1:0",
        // No heartbeats on the hop: A's clock is a fake one these tests move by minutes (the link's own watch is tested
        // in ResumeTests).
        Via = via ?? [EngineFixture.Hop(_b) + Quiet],
        Target = _echo.Uri,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        Mode = mode,
        IdleTimeout = TimeSpan.FromSeconds(60),
    });

    private TunnelState State(string name) => _a.GetTunnel(name).State;

    /// <summary>Advances A's clock past the longest reconnect delay until <paramref name="condition"/> holds (each attempt runs on the real network).</summary>
    private async Task AdvanceUntil(Func<bool> condition, string what)
    {
        var step = new global::QmTunnel.Engine.Tunnels.ReconnectBackoff().Longest;
        for (var i = 0; i < 40; i++)
        {
            if (await Poll.UntilAsync(condition, 500))
            {
                return;
            }
            _clock.Advance(step);
        }
        Assert.Fail($"{what}: not reached after 40 reconnect delays (state {State("held")}, LastError {_a.GetTunnel("held").LastError})");
    }


    [Fact]
    public async Task A_permanent_tunnel_is_established_without_any_client_and_the_target_is_not_touched()
    {
        NewTunnel("held", TunnelMode.Permanent);
        var started = await _a.StartTunnelAsync("held");
        Assert.Contains(started.State, new[] { TunnelState.Connecting, TunnelState.Established });

        await TunnelTests.WaitUntil(() => State("held") == TunnelState.Established);
        Assert.Equal(TunnelState.Established, _a.GetTunnelStats("held").State);
        Assert.Equal(1, _b.HoldCount);
        Assert.Equal(0, _echo.Accepted);
        Assert.Equal(0, _a.GetTunnelStats("held").ConnectionsTotal);

        // Clients go through as ever, each on its own stream beside the Hold.
        Assert.Equal(new byte[] { 1, 2, 3 }, await SocketTestExtensions.EchoAsync(started.BoundListen!, [1, 2, 3]));

        // Stopping the tunnel closes the Hold on the last server too.
        await _a.StopTunnelAsync("held");
        await TunnelTests.WaitUntil(() => _b.HoldCount == 0);
        Assert.Equal(TunnelState.Stopped, State("held"));
    }

    [Fact]
    public async Task A_permanent_tunnel_says_why_while_its_far_server_is_down_and_is_established_again_when_it_listens_again()
    {
        NewTunnel("held", TunnelMode.Permanent);
        var listen = (await _a.StartTunnelAsync("held")).BoundListen!;
        await TunnelTests.WaitUntil(() => State("held") == TunnelState.Established);
        var port = _b.Port;

        // B stops: its Hold is reset at once (a held chain is not a connection to drain), and A redials.
        var stopping = Stopwatch.StartNew();
        await _b.StopAsync();
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(10), $"B took {stopping.Elapsed} to stop with a Hold open (its drain is 30 s)");
        await TunnelTests.WaitUntil(() => State("held") == TunnelState.Connecting && _a.GetTunnel("held").LastError?.Contains("(Shutdown)", StringComparison.Ordinal) == true);

        // The next attempt finds nothing listening: still Connecting, and LastError says so.
        await AdvanceUntil(() => _a.GetTunnel("held").LastError?.Contains("HopConnectFailed", StringComparison.Ordinal) == true, "a failed redial");
        Assert.Equal(TunnelState.Connecting, State("held"));
        Assert.Equal(TunnelState.Connecting, _a.GetTunnelStats("held").State);

        // B again on the same port and data path: the backoff brings the chain up without a client.
        _b = await _engines.StartAsync(BOptions(port));
        await AdvanceUntil(() => State("held") == TunnelState.Established, "Established again");
        Assert.Equal(1, _b.HoldCount);
        Assert.Equal(new byte[] { 7 }, await SocketTestExtensions.EchoAsync(listen, [7]));
    }

    [Fact]
    public async Task A_hold_refused_by_an_allow_rule_at_a_gateway_gives_PermissionDenied_in_LastError()
    {
        var c = await _engines.StartAsync();
        _b.NewGroup("Gateways", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("gw", "Gateways", "gw-password-1");
        await _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "held", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b) + Quiet, EngineFixture.TlsHop(c) + Quiet], Target = _echo.Uri, Mode = TunnelMode.Permanent,
        }, [new HopLogin("gw", "gw-password-1"), EngineFixture.AdminLogin]);
        _b.SetGroup("Gateways", new GroupChange { AllowRules = ["L#*:*#*#*:1"] });

        await _a.StartTunnelAsync("held");
        await TunnelTests.WaitUntil(() => _a.GetTunnel("held").LastError?.Contains("PermissionDenied", StringComparison.Ordinal) == true);
        var error = _a.GetTunnel("held").LastError!;
        Assert.Contains("Gateways", error, StringComparison.Ordinal);
        Assert.Equal(TunnelState.Connecting, State("held"));
        Assert.Equal(0, c.HoldCount);
        Assert.Equal(0, _echo.Accepted);

        // Allowed again: the next attempt (after the backoff on A's clock) holds the chain through B to C.
        _b.SetGroup("Gateways", new GroupChange { AllowRules = ["L#*:*#*#*:*"] });
        await AdvanceUntil(() => State("held") == TunnelState.Established, "Established through the gateway");
        Assert.Equal(1, c.HoldCount);
        Assert.Equal(1, _b.HoldCount);
    }

    [Fact]
    public async Task An_on_demand_tunnel_is_idle_until_a_client_comes_and_idle_again_after_its_idle_timeout()
    {
        NewTunnel("lazy", TunnelMode.OnDemand);
        var listen = (await _a.StartTunnelAsync("lazy")).BoundListen!;
        Assert.Equal(TunnelState.Idle, State("lazy"));
        Assert.Equal(TunnelState.Idle, _a.GetTunnelStats("lazy").State);
        Assert.Equal(0, _b.HoldCount);

        using (var client = await SocketTestExtensions.ConnectAsync(listen))
        {
            await client.SendAllAsync(new byte[] { 5 });
            var buffer = new byte[1];
            Assert.Equal(1, await client.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.Equal(TunnelState.Established, State("lazy"));
            Assert.Equal(1, _b.HoldCount);
        }
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("lazy").ConnectionsCurrent == 0);

        // No client: the chain stays up for IdleTimeout (60 s on A's clock), then is taken down.
        _clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(TunnelState.Established, State("lazy"));
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(TunnelState.Idle, State("lazy"));
        await TunnelTests.WaitUntil(() => _b.HoldCount == 0);

        // The next client brings it up again.
        Assert.Equal(new byte[] { 6 }, await SocketTestExtensions.EchoAsync(listen, [6]));
        Assert.Equal(2, _a.GetTunnelStats("lazy").ConnectionsTotal);
        Assert.Equal(0, _a.GetTunnelStats("lazy").FailedConnections);
    }

    [Fact]
    public async Task A_client_of_an_on_demand_tunnel_whose_far_server_is_down_fails_at_once_with_the_reason()
    {
        NewTunnel("lazy", TunnelMode.OnDemand);
        var listen = (await _a.StartTunnelAsync("lazy")).BoundListen!;
        await _b.StopAsync();

        var elapsed = Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<SocketException>(() => TunnelTests.ConnectAndReadAsync(listen));
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(5), $"the client waited {elapsed.Elapsed}, more than the ConnectTimeout");
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("lazy").FailedConnections == 1);
        var connection = Assert.Single(_a.GetConnections("lazy"));
        Assert.Equal(ConnectionState.Failed, connection.State);
        Assert.Contains("could not bring its chain up", connection.Error, StringComparison.Ordinal);
        Assert.Contains("HopConnectFailed", connection.Error, StringComparison.Ordinal);
        Assert.Equal(TunnelState.Idle, State("lazy"));
    }

    [Fact]
    public async Task A_client_of_an_on_demand_tunnel_whose_chain_does_not_answer_fails_when_the_connect_timeout_passes()
    {
        // A server that accepts the TCP connection and never says a word: the chain neither comes up nor fails.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var hop = $"qmt+plain://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}";
        _a.NewTunnel(new TunnelProfile
        {
            Name = "lazy", Listen = "tcp://127.0.0.1:0", Via = [hop], Target = _echo.Uri, Mode = TunnelMode.OnDemand,
            ConnectTimeout = TimeSpan.FromMinutes(5), Credentials = EngineFixture.OfflineCredentials(1),
        });
        var listen = (await _a.StartTunnelAsync("lazy")).BoundListen!;

        using var client = await SocketTestExtensions.ConnectAsync(listen);
        var reading = client.ReadToEndAsync();
        await TunnelTests.WaitUntil(() => State("lazy") == TunnelState.Connecting);
        Assert.False(reading.IsCompleted);

        _clock.Advance(TimeSpan.FromMinutes(5));
        await Assert.ThrowsAnyAsync<SocketException>(() => reading.WaitAsync(TimeSpan.FromSeconds(20)));
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("lazy").FailedConnections == 1);
        Assert.Contains("within ConnectTimeout", Assert.Single(_a.GetConnections("lazy")).Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Set_tunnel_switches_a_running_tunnel_between_modes_without_restarting_its_listener_or_its_connections()
    {
        NewTunnel("switch", TunnelMode.PerConnection);
        var listen = (await _a.StartTunnelAsync("switch")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1 });
        Assert.Equal(1, await client.ReceiveAsync(new byte[1], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(0, _b.HoldCount);

        var permanent = await _a.SetTunnelAsync("switch", new TunnelChange { Permanent = true }.Apply);
        Assert.Equal(TunnelMode.Permanent, permanent.Mode);
        Assert.Equal(listen, permanent.BoundListen);
        await TunnelTests.WaitUntil(() => State("switch") == TunnelState.Established && _b.HoldCount == 1);

        var onDemand = await _a.SetTunnelAsync("switch", new TunnelChange { OnDemand = true, IdleTimeout = TimeSpan.FromSeconds(30) }.Apply);
        Assert.Equal(TunnelMode.OnDemand, onDemand.Mode);
        Assert.Equal(TimeSpan.FromSeconds(30), onDemand.IdleTimeout);
        Assert.Equal(listen, onDemand.BoundListen);
        // A client is connected: on demand, the chain is wanted and held.
        await TunnelTests.WaitUntil(() => State("switch") == TunnelState.Established && _b.HoldCount == 1);

        await _a.SetTunnelAsync("switch", new TunnelChange { OnDemand = false }.Apply);
        await TunnelTests.WaitUntil(() => _b.HoldCount == 0);
        Assert.Equal(TunnelMode.PerConnection, _a.GetTunnel("switch").Mode);

        // The first client's connection went on through every switch.
        await client.SendAllAsync(new byte[] { 2 });
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(new byte[] { 2 }, await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task A_saved_started_permanent_tunnel_is_established_again_when_its_server_starts()
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        var owner = await _engines.StartAsync(path);
        owner.NewTestTunnel(new TunnelProfile { Name = "held", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b) + Quiet], Target = _echo.Uri, Mode = TunnelMode.Permanent });
        await owner.StartTunnelAsync("held");
        await TunnelTests.WaitUntil(() => owner.GetTunnel("held").State == TunnelState.Established);
        await owner.StopAsync();
        await TunnelTests.WaitUntil(() => _b.HoldCount == 0);

        var again = await _engines.StartAsync(path);
        await TunnelTests.WaitUntil(() => again.GetTunnel("held").State == TunnelState.Established);
        Assert.Equal(TunnelMode.Permanent, again.GetTunnel("held").Mode);
        Assert.Equal(1, _b.HoldCount);
        Assert.Equal(0, again.GetTunnelStats("held").ConnectionsTotal);
    }
}

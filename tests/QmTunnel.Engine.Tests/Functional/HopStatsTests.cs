using System.Net;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Get-QmTunnelStats' hops over real engines on loopback: a chain A → B → C, the owner A asking the gateway B about its
/// link to C with a LinkInfo stream (issue 8). The link B → C passes a <see cref="FaultProxy"/>, so it can be cut.
/// </summary>
public sealed class HopStatsTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;
    private FaultProxy _toC = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
        _c = await _engines.StartAsync();
        _toC = new FaultProxy(new IPEndPoint(IPAddress.Loopback, _c.Port));
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _toC.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private string C => $"qmt+plain://127.0.0.1:{_toC.EndPoint.Port}";

    /// <summary>A tunnel A → B (TLS: it carries the login for C) → C (through the proxy) to the echo server, started, with its listener.</summary>
    private async Task<string> StartChainAsync(IReadOnlyList<HopLogin?>? logins = null)
    {
        var profile = new TunnelProfile
        {
            Name = "chain",
            Listen = "tcp://127.0.0.1:0",
            Via = [EngineFixture.TlsHop(_b), C],
            Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        };
        await _a.NewTunnelAsync(profile, logins ?? [EngineFixture.AdminLogin, EngineFixture.AdminLogin]);
        return (await _a.StartTunnelAsync("chain")).BoundListen!;
    }

    /// <summary>Reads the stats (hops asked along the chain) until <paramref name="condition"/> holds; fails after 15 s.</summary>
    private async Task<TunnelStats> StatsWhenAsync(Func<TunnelStats, bool> condition)
    {
        var deadline = Environment.TickCount64 + 15_000;
        while (true)
        {
            var stats = await _a.GetTunnelStatsAsync("chain");
            if (condition(stats))
            {
                return stats;
            }
            Assert.True(Environment.TickCount64 < deadline, $"never so; last hops: {string.Join("; ", stats.Hops.Select(h => $"{h} ({h.Detail})"))}");
            await Task.Delay(50);
        }
    }

    /// <summary>Ends <paramref name="links"/> (a gateway's links to the next server: the tunnel's, and one its chain check left).</summary>
    private static async Task CloseAllAsync(IEnumerable<Link> links)
    {
        foreach (var link in links)
        {
            await link.CloseAsync(ProtocolErrorCode.Shutdown, "test: the gateway lets its link to the next server go");
        }
    }

    [Fact]
    public async Task A_three_server_chain_shows_both_hops_up_with_their_latencies_counters_and_the_round_trip_through_it()
    {
        var listen = await StartChainAsync();
        Assert.Equal([1, 2, 3], await SocketTestExtensions.EchoAsync(listen, [1, 2, 3]));

        var stats = await StatsWhenAsync(s => s.Hops.Count == 2 && s.Hops.All(h => h.State == TunnelHopState.Up));

        Assert.Equal([1, 2], stats.Hops.Select(h => h.Hop));
        Assert.Equal(EngineFixture.TlsHop(_b), stats.Hops[0].Server);
        Assert.Equal(C, stats.Hops[1].Server);
        foreach (var hop in stats.Hops)
        {
            Assert.True(hop.Latency > TimeSpan.Zero, $"hop {hop.Hop} has latency {hop.Latency}");
            Assert.True(hop.LinkBytesSent > 0 && hop.LinkBytesReceived > 0, $"hop {hop.Hop}: {hop.LinkBytesSent} sent, {hop.LinkBytesReceived} received");
            Assert.Equal(0, hop.Resumes);
            Assert.Equal(0, hop.Reconnects);
            Assert.Null(hop.Detail);
        }
        // The round trip to C goes through B: longer than either link alone.
        Assert.True(stats.EndToEndLatency > stats.Hops[1].Latency, $"end to end {stats.EndToEndLatency}, hop 2 {stats.Hops[1].Latency}");
        Assert.Equal("2 up", stats.HopSummary);
        Assert.Equal(stats.Hops[0].Latency, stats.LinkLatency);
    }

    [Fact]
    public async Task When_B_has_no_link_to_C_hop_2_is_down_and_asking_about_it_dials_nothing()
    {
        await StartChainAsync();
        // The chain check at New-QmTunnel made B dial C; that link ends (its session too).
        await StatsWhenAsync(s => s.Hops.Count == 2 && s.Hops[1].State == TunnelHopState.Up);
        await CloseAllAsync(_b.OutboundLinks());
        var connectionsToC = _toC.Accepted;

        var stats = await StatsWhenAsync(s => s.Hops[1].State == TunnelHopState.Down);

        Assert.Equal(TunnelHopState.Up, stats.Hops[0].State);
        Assert.Contains("has no link to", stats.Hops[1].Detail);
        Assert.Null(stats.Hops[1].LinkBytesSent);
        Assert.Null(stats.EndToEndLatency);
        Assert.Equal("1 down", stats.HopSummary);
        await _a.GetTunnelStatsAsync("chain");
        Assert.Equal(connectionsToC, _toC.Accepted);
        Assert.Empty(_b.OutboundLinks());
    }

    [Fact]
    public async Task Cutting_the_link_from_B_to_C_shows_hop_2_resuming_then_up_again_with_one_resume()
    {
        var listen = await StartChainAsync();
        Assert.Equal([7], await SocketTestExtensions.EchoAsync(listen, [7]));
        await StatsWhenAsync(s => s.Hops.Count == 2 && s.Hops[1].State == TunnelHopState.Up);

        _toC.Refuse(true);
        _toC.Cut(CutMode.Reset);
        var cut = await StatsWhenAsync(s => s.Hops[1].State == TunnelHopState.Resuming);
        Assert.Equal(TunnelHopState.Up, cut.Hops[0].State);
        Assert.Equal("1 res", cut.HopSummary);
        Assert.Null(cut.EndToEndLatency);

        _toC.Heal();
        var back = await StatsWhenAsync(s => s.Hops[1].State == TunnelHopState.Up);
        Assert.Equal(1, back.Hops[1].Resumes);
        Assert.True(back.Hops[1].Reconnects >= 1, $"{back.Hops[1].Reconnects} reconnects");
        Assert.Equal(0, back.Hops[0].Resumes);
        Assert.Equal([8], await SocketTestExtensions.EchoAsync(listen, [8]));
    }

    [Fact]
    public async Task A_user_whose_rights_at_B_were_taken_away_learns_nothing_about_the_chain_behind_B()
    {
        _b.NewGroup("Tunnelers", GroupRights.CreateTunnels, ["L#*:*#*#*:*"]);
        _b.NewUser("tunneler", "Tunnelers", "tunneler-password");
        var listen = await StartChainAsync([new HopLogin("tunneler", "tunneler-password"), EngineFixture.AdminLogin]);
        Assert.Equal([9], await SocketTestExtensions.EchoAsync(listen, [9]));
        await StatsWhenAsync(s => s.Hops.Count == 2 && s.Hops[1].State == TunnelHopState.Up);

        _b.SetGroup("Tunnelers", new GroupChange { Rights = GroupRights.None });

        var stats = await _a.GetTunnelStatsAsync("chain");
        var hidden = stats.Hops[1];
        Assert.Equal(TunnelHopState.Unknown, hidden.State);
        Assert.Contains("refused by", hidden.Detail);
        Assert.Contains("CreateTunnels", hidden.Detail);
        Assert.Null(hidden.Latency);
        Assert.Null(hidden.Resumes);
        Assert.Null(hidden.LinkBytesSent);
        Assert.Null(stats.EndToEndLatency);
    }

    [Fact]
    public async Task In_a_four_server_chain_the_deepest_hop_is_asked_through_two_gateways_and_a_gap_before_it_is_named()
    {
        var d = await _engines.StartAsync();
        await _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "long",
            Listen = "tcp://127.0.0.1:0",
            // TLS up to C: the logins for C and D travel in the Open.
            Via = [EngineFixture.TlsHop(_b), EngineFixture.TlsHop(_c), EngineFixture.Hop(d)],
            Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        }, [EngineFixture.AdminLogin, EngineFixture.AdminLogin, EngineFixture.AdminLogin]);
        var listen = (await _a.StartTunnelAsync("long")).BoundListen!;
        Assert.Equal([4], await SocketTestExtensions.EchoAsync(listen, [4]));

        var up = await _a.GetTunnelStatsAsync("long");
        Assert.Equal([TunnelHopState.Up, TunnelHopState.Up, TunnelHopState.Up], up.Hops.Select(h => h.State));
        Assert.Equal(EngineFixture.Hop(d), up.Hops[2].Server);
        Assert.True(up.Hops[2].LinkBytesSent > 0);
        Assert.True(up.EndToEndLatency > up.Hops[2].Latency);

        // B lets its link to C go: hop 2 is down, and the question about hop 3 stops at B, which says so.
        await CloseAllAsync(_b.OutboundLinks());
        var gap = await _a.GetTunnelStatsAsync("long");

        Assert.Equal([TunnelHopState.Up, TunnelHopState.Down, TunnelHopState.Unknown], gap.Hops.Select(h => h.State));
        Assert.Equal($"not reached: the link to {EngineFixture.TlsHop(_c)} is down", gap.Hops[2].Detail);
        Assert.Equal("1 down", gap.HopSummary);
        Assert.Empty(_b.OutboundLinks()); // nothing was dialed to answer
    }

    [Fact]
    public async Task A_stopped_tunnel_has_no_hops_and_the_counters_only_read_asks_nobody()
    {
        var listen = await StartChainAsync();
        Assert.Equal([1], await SocketTestExtensions.EchoAsync(listen, [1]));
        Assert.Empty(_a.GetTunnelStats("chain").Hops);

        await _a.StopTunnelAsync("chain");

        var stats = await _a.GetTunnelStatsAsync("chain");
        Assert.Empty(stats.Hops);
        Assert.Null(stats.EndToEndLatency);
        Assert.Equal(string.Empty, stats.HopSummary);
    }

    [Fact]
    public async Task A_watch_carries_the_hops_in_every_update()
    {
        var listen = await StartChainAsync();
        Assert.Equal([2], await SocketTestExtensions.EchoAsync(listen, [2]));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var updates = 0;
        await foreach (var snapshot in _a.WatchTunnelStatsAsync(["chain"], QmTunnelEngine.MinimumWatchInterval, stop.Token))
        {
            Assert.Equal(2, Assert.Single(snapshot).Hops.Count);
            if (++updates == 2)
            {
                break;
            }
        }
        Assert.Equal(2, updates);
    }
}

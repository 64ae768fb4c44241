using System.Net;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// Each hop of a chain with settings of its own, seen where they act — at the server that dials that hop, which is a
/// gateway for every hop but the first: TLS or plain on the wire (nftables counts how each link opens), the pin
/// checked by the gateway, and the heartbeat and receive timeout of each link when its neighbours stop hearing each
/// other.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class PerHopSettingsTests
{
    [NetNsFact(Nft = true)]
    public async Task Each_hop_of_the_chain_runs_its_own_TLS_pin_and_timing_at_the_server_that_dials_it()
    {
        await using var net = await ChainNetwork.StartAsync();
        var (a, g1, g2, b) = (net.A, net.G1, net.G2, net.B);
        var atG1 = new HostRules(g1);
        var atG2 = new HostRules(g2);
        var atB = new HostRules(b);
        atG1.Watch(a, g1.Port);
        atG2.Watch(g1, g2.Port);
        atB.Watch(g2, b.Port);
        // Hop 1: TLS, pinned, default timing. Hop 2: TLS, pinned, 1 s heartbeat, 4 s receive timeout. Hop 3: plain
        // (the last hop carries no login onward), 1 s heartbeat, 3 s receive timeout.
        string[] via =
        [
            g1.Hop(a, pin: true),
            g2.Hop(g1, pin: true, options: "heartbeat=1s&receive-timeout=4s"),
            b.Hop(g2, plain: true, options: "heartbeat=1s&receive-timeout=3s"),
        ];
        var flows = new CheckedFlow();
        await using var target = HostListener.Start(b, flows.HandleAsync);
        var port = ChainNetwork.PortOf(await net.StartTunnelAsync("hops", target.Uri, via));
        await EchoAsync(net, port, flows, 1);

        // On the wire: A → G1 and G1 → G2 open with a TLS ClientHello, G2 → B with the plain preamble.
        Assert.True(atG1.Openings(a) is { Tls: > 0, Plain: 0 }, $"A → G1 opened {atG1.Openings(a)}");
        Assert.True(atG2.Openings(g1) is { Tls: > 0, Plain: 0 }, $"G1 → G2 opened {atG2.Openings(g1)}");
        Assert.True(atB.Openings(g2) is { Tls: 0, Plain: > 0 }, $"G2 → B opened {atB.Openings(g2)}");
        var stats = await (await a.SessionAsync()).GetTunnelStatsAsync("hops", CancellationToken.None);
        Assert.Equal([TunnelHopState.Up, TunnelHopState.Up, TunnelHopState.Up], stats.Hops.Select(h => h.State));

        // The pin of hop 2 is checked by G1, which dials G2: another certificate's thumbprint there is refused.
        var wrongPin = $"qmt://{g2.AddressFacing(g1)}:{g2.Port}?sha256={b.Thumbprint}";
        var refused = await Assert.ThrowsAnyAsync<QmTunnelException>(() => net.StartTunnelAsync("wrong-pin", target.Uri, [via[0], wrongPin, via[2]]));
        Assert.Contains(g2.AddressFacing(g1).ToString(), refused.Message);
        Assert.Contains("certificate", refused.Message, StringComparison.OrdinalIgnoreCase);

        // Hop 3's timing, at both of its ends: G2 and B stop hearing each other; each finds it after 3 s of silence.
        await SilenceAsync(atG2, g2, atB, b, "3");
        // Hop 2's, at G1 and G2: 4 s.
        await SilenceAsync(atG1, g1, atG2, g2, "4");
        await EchoAsync(net, port, flows, 2);
        // Hop 1 (default timing, 15 s) never went silent long enough: A lost nothing.
        Assert.DoesNotMatch("connection lost", a.Daemon!.Log());
        Assert.Empty(target.Errors);
    }

    /// <summary>
    /// Drops everything between <paramref name="near"/> (which dialed) and <paramref name="far"/> until both logs say
    /// the link's connection was lost after <paramref name="seconds"/> s of silence, then lets it through and waits
    /// for the dialer's session to resume.
    /// </summary>
    private static async Task SilenceAsync(HostRules nearRules, ChainHost near, HostRules farRules, ChainHost far, string seconds)
    {
        var lost = $@"connection lost \(nothing received for {seconds} s \(receive timeout\)\)";
        var lostBefore = (Count(near, lost), Count(far, lost));
        var resumedBefore = Count(near, "session resumed");
        nearRules.Block(far);
        farRules.Block(near);
        try
        {
            await WaitForAsync(() => Count(near, lost) > lostBefore.Item1 && Count(far, lost) > lostBefore.Item2, near, far,
                $"{near} and {far} to lose the link after {seconds} s of silence");
        }
        finally
        {
            nearRules.Block(far, on: false);
            farRules.Block(near, on: false);
        }
        await WaitForAsync(() => Count(near, "session resumed") > resumedBefore, near, far, $"{near}'s link to {far} to resume");
    }

    private static int Count(ChainHost host, string pattern) => Regex.Matches(host.Daemon!.Log(), pattern).Count;

    private static async Task WaitForAsync(Func<bool> condition, ChainHost near, ChainHost far, string what)
    {
        var deadline = Environment.TickCount64 + 60_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, $"waited 60 s for {what}:\n--- {near} ---\n{near.Daemon!.Log()}\n--- {far} ---\n{far.Daemon!.Log()}");
            await Task.Delay(100);
        }
    }

    private static async Task EchoAsync(ChainNetwork net, int port, CheckedFlow flows, int id)
    {
        var spec = new FlowSpec(id, 256 * 1024, 0, Echo: true);
        var client = await CheckedFlow.RunAsync(await net.A.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)), spec).WaitAsync(TimeSpan.FromSeconds(60));
        await TunnelTests.WaitUntil(() => flows.Targets.ContainsKey(id));
        flows.AssertIntact(spec, client);
    }
}

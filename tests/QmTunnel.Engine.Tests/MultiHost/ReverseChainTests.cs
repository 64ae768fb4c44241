using System.Net;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// Figure 3 of the original on the chain network (<see cref="ChainNetwork"/>): B, at the far end, accepts no inbound
/// connection (nftables drops every new one) and publishes its service with a reverse tunnel through G2 to G1, where
/// A's clients connect; neither A nor G1 can reach B, so the data can only come back through the chain B dialed.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class ReverseChainTests
{
    private const int ServicePort = 7000;

    [NetNsFact(Nft = true)]
    public async Task A_reverse_tunnel_from_B_through_G2_listens_on_G1_and_As_clients_reach_Bs_service_with_SHA_256_equal()
    {
        await using var net = await ChainNetwork.StartAsync();
        var flows = new CheckedFlow();
        await using var service = HostListener.Start(net.B, flows.HandleAsync, IPAddress.Loopback);
        net.B.Ns.DropNewInbound();
        Assert.Equal("TimedOut", await net.G2.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));

        var atB = await net.B.SessionAsync();
        await atB.NewTunnelAsync(new TunnelProfile
        {
            Name = "published",
            Direction = TunnelDirection.RemoteToLocal,
            Mode = TunnelMode.Permanent,
            Listen = "tcp://0.0.0.0:8080",
            Via = [net.G2.Hop(net.B, pin: true), net.G1.Hop(net.G2, pin: true)],
            Target = service.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        }, [ChainNetwork.Login, ChainNetwork.Login], CancellationToken.None);
        var started = await atB.StartTunnelAsync("published", CancellationToken.None);
        Assert.Equal(TunnelState.Established, started.State);
        Assert.Equal("tcp://0.0.0.0:8080", started.BoundListen);

        var listener = new IPEndPoint(net.G1.AddressFacing(net.A), 8080);
        var specs = new[] { new FlowSpec(1, 16 << 20, 16 << 20, false), new FlowSpec(2, 1 << 20, 0, true), new FlowSpec(3, 0, 4 << 20, false) };
        await Task.WhenAll(specs.Select(async spec =>
        {
            using var client = await net.A.ConnectAsync(listener);
            var end = await CheckedFlow.RunAsync(client, spec);
            // The target records its end after its last send; the client's read of the end can come first.
            await Functional.TunnelTests.WaitUntil(() => flows.Targets.ContainsKey(spec.Id), 10_000);
            flows.AssertIntact(spec, end);
        }));

        var stats = await atB.GetTunnelStatsAsync("published", CancellationToken.None);
        Assert.Equal(3, stats.ConnectionsTotal);
        Assert.Equal(0, stats.FailedConnections);
        Assert.Equal("TimedOut", await net.G2.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));
    }
}

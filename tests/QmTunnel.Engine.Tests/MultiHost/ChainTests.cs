using System.Net;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>The multi-host tests run one at a time: each network runs four daemons on this machine's two cores.</summary>
[CollectionDefinition(Name)]
public sealed class MultiHostCollection
{
    public const string Name = "multi-host networks";
}

/// <summary>
/// Tunnels across real hosts (network namespaces joined by veth pairs, a daemon in each; <see cref="ChainNetwork"/>):
/// the figures of the original's introduction — 1, a simple tunnel through two hosts; 2, a LAN behind a tunnel; 5, a
/// chain of gateways — where no host reaches beyond its neighbours, so the data can only pass through the chain.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class ChainTests
{
    /// <summary>
    /// The application schemes of <see cref="Hundred_mixed_streams_at_once_tcp_unix_and_udp_through_the_three_hop_chain_all_arrive_intact"/>:
    /// add a scheme's <see cref="IMixedScheme"/> here (udp://, unix://) and its flows join the mix.
    /// </summary>
    internal static IReadOnlyList<(Func<IMixedScheme> Make, int Flows)> MixedSchemes =>
        [(() => new TcpMixedScheme(), 50), (() => new UnixListenMixedScheme(), 25), (() => new UdpMixedScheme(), 25)];

    [NetNsFact]
    public async Task Each_host_reaches_its_neighbours_only_and_no_gateway_forwards()
    {
        await using var net = await ChainNetwork.StartAsync(lan: true);
        var t = net.T!;
        await using var onT = HostListener.Start(t, _ => Task.CompletedTask, IPAddress.Any);
        var tPort = onT.EndPoint.Port;

        Assert.Equal("Connected", await net.A.TryConnectAsync(new IPEndPoint(net.G1.AddressFacing(net.A), net.G1.Port)));
        Assert.Equal("Connected", await net.G1.TryConnectAsync(new IPEndPoint(net.G2.AddressFacing(net.G1), net.G2.Port)));
        Assert.Equal("Connected", await net.G2.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));
        Assert.Equal("Connected", await net.B.TryConnectAsync(new IPEndPoint(t.AddressFacing(net.B), tPort)));
        // No route beyond a neighbour.
        Assert.Equal("NetworkUnreachable", await net.A.TryConnectAsync(new IPEndPoint(net.G2.AddressFacing(net.G1), net.G2.Port)));
        Assert.Equal("NetworkUnreachable", await net.A.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));
        Assert.Equal("NetworkUnreachable", await net.G1.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));
        Assert.Equal("NetworkUnreachable", await net.G2.TryConnectAsync(new IPEndPoint(t.AddressFacing(net.B), tPort)));
        // And with a route, a gateway does not forward: A's packets for B die at G1.
        NetNs.Ip("-n", net.A.Ns.Name, "route", "add", "198.51.100.8/30", "via", net.G1.AddressFacing(net.A).ToString());
        Assert.NotEqual("Connected", await net.A.TryConnectAsync(new IPEndPoint(net.B.AddressFacing(net.G2), net.B.Port)));
        foreach (var host in net.Hosts)
        {
            Assert.Equal("0", NetNs.Run("ip", ["netns", "exec", host.Ns.Name, "cat", "/proc/sys/net/ipv4/ip_forward"]).Trim());
        }
    }

    [NetNsFact]
    public async Task Figure_1_a_simple_tunnel_through_two_hosts_carries_data_both_ways_intact()
    {
        await using var net = await ChainNetwork.StartAsync();
        var flows = new CheckedFlow();
        await using var target = HostListener.Start(net.G1, flows.HandleAsync);
        var port = ChainNetwork.PortOf(await net.StartTunnelAsync("simple", target.Uri, [net.G1.Hop(net.A, pin: true)]));

        var spec = new FlowSpec(1, 16 * 1024 * 1024, 16 * 1024 * 1024);
        var client = await CheckedFlow.RunAsync(await net.A.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)), spec).WaitAsync(TimeSpan.FromMinutes(2));

        await Functional.TunnelTests.WaitUntil(() => flows.Targets.ContainsKey(1));
        flows.AssertIntact(spec, client);
        Assert.Empty(target.Errors);
    }

    [NetNsFact]
    public async Task Figure_5_a_chain_of_gateways_A_G1_G2_B_carries_200_MiB_each_way_with_SHA_256_equal_at_both_ends()
    {
        await using var net = await ChainNetwork.StartAsync();
        var flows = new CheckedFlow();
        await using var target = HostListener.Start(net.B, flows.HandleAsync);
        var port = ChainNetwork.PortOf(await net.StartTunnelAsync("gateways", target.Uri));

        var both = new FlowSpec(1, 200L * 1024 * 1024, 200L * 1024 * 1024);
        var echo = new FlowSpec(2, 8 * 1024 * 1024, 0, Echo: true);
        var running = new[] { both, echo }.Select(async spec =>
            (spec, await CheckedFlow.RunAsync(await net.A.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)), spec))).ToList();
        var done = await Task.WhenAll(running).WaitAsync(TimeSpan.FromMinutes(5));

        await Functional.TunnelTests.WaitUntil(() => flows.Targets.Count == 2);
        foreach (var (spec, client) in done)
        {
            flows.AssertIntact(spec, client);
        }
        Assert.Empty(target.Errors);
        // Every hop of the chain carried it: A's hop stats show three links up, the last to B.
        var stats = await (await net.A.SessionAsync()).GetTunnelStatsAsync("gateways", CancellationToken.None);
        Assert.Equal([TunnelHopState.Up, TunnelHopState.Up, TunnelHopState.Up], stats.Hops.Select(h => h.State));
        Assert.Equal($"qmt://{net.B.AddressFacing(net.G2)}:{net.B.Port}", stats.Hops[2].Server);
        Assert.All(stats.Hops, h => Assert.True(h.LinkBytesSent > 200L * 1024 * 1024, $"{h}: {h.LinkBytesSent} B sent"));
        Assert.Equal(both.Up + echo.Up + 2 * CheckedFlow.HeaderSize, stats.BytesFromClients);
        Assert.Equal(both.Down + echo.Up, stats.BytesToClients);
    }

    [NetNsFact]
    public async Task Figure_2_a_LAN_behind_the_chain_the_target_is_host_T_reached_from_B_only()
    {
        await using var net = await ChainNetwork.StartAsync(lan: true);
        var t = net.T!;
        var flows = new CheckedFlow();
        await using var target = HostListener.Start(t, flows.HandleAsync, t.AddressFacing(net.B));
        Assert.Equal("NetworkUnreachable", await net.G2.TryConnectAsync(target.EndPoint)); // only B reaches T
        var port = ChainNetwork.PortOf(await net.StartTunnelAsync("lan", target.Uri));

        var specs = new[] { new FlowSpec(1, 32 * 1024 * 1024, 32 * 1024 * 1024), new FlowSpec(2, 1024 * 1024, 0, Echo: true) };
        var done = await Task.WhenAll(specs.Select(async spec =>
            (spec, await CheckedFlow.RunAsync(await net.A.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)), spec)))).WaitAsync(TimeSpan.FromMinutes(3));

        await Functional.TunnelTests.WaitUntil(() => flows.Targets.Count == 2);
        foreach (var (spec, client) in done)
        {
            flows.AssertIntact(spec, client);
        }
        Assert.Empty(target.Errors);
        // T saw the connections come from B's address on the LAN.
        var connections = await (await net.A.SessionAsync()).GetConnectionsAsync("lan", CancellationToken.None);
        Assert.All(connections, c => Assert.Equal(target.Uri, c.Target));
        Assert.Equal(2, target.Accepted);
    }

    [NetNsFact]
    public async Task Hundred_mixed_streams_at_once_tcp_unix_and_udp_through_the_three_hop_chain_all_arrive_intact()
    {
        await using var net = await ChainNetwork.StartAsync();
        var schemes = MixedSchemes.Select(m => (Scheme: m.Make(), m.Flows)).ToList();
        try
        {
            var flows = new List<Func<Task>>();
            foreach (var (scheme, count) in schemes)
            {
                await scheme.StartAsync(net, $"mixed-{scheme.Scheme}");
                flows.AddRange(scheme.Flows(count));
            }
            Assert.Equal(100, flows.Count);

            var all = flows.Select(run => Task.Run(run)).ToList();
            await Task.WhenAll(all).WaitAsync(TimeSpan.FromMinutes(5));

            Assert.Empty(schemes.Select(s => s.Scheme).OfType<TcpMixedScheme>().Single().TargetErrors);
            Assert.Empty(schemes.Select(s => s.Scheme).OfType<UnixListenMixedScheme>().Single().TargetErrors);
            var session = await net.A.SessionAsync();
            foreach (var (name, count) in new[] { ("mixed-tcp", 50), ("mixed-unix", 25), ("mixed-udp", 25) })
            {
                var stats = await session.GetTunnelStatsAsync(name, CancellationToken.None);
                Assert.Equal(count, stats.ConnectionsTotal); // one connection, or one association, per flow
                Assert.Equal(0, stats.FailedConnections);
            }
        }
        finally
        {
            foreach (var (scheme, _) in schemes)
            {
                await scheme.DisposeAsync();
            }
        }
    }
}

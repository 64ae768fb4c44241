using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>The hops of a tunnel's chain and the round trip through it, as read at one moment.</summary>
internal sealed record HopSnapshot(IReadOnlyList<TunnelHopStats> Hops, TimeSpan? EndToEndLatency)
{
    public static HopSnapshot None { get; } = new([], null);
}

/// <summary>
/// Get-QmTunnelStats' hops (<see cref="TunnelStats.Hops"/>): hop 1 from the owner's own link, each later hop asked of
/// the gateway before it with a <see cref="StreamProtocol.LinkInfo"/> stream, all at once, each answer awaited for a
/// bounded time. Gathered only when asked; it dials nothing and keeps nothing between two calls.
/// </summary>
internal sealed partial class TunnelRuntime
{
    /// <summary>How long the owner waits for a gateway's answer about its next link.</summary>
    public static readonly TimeSpan HopQueryTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The chain's hops now (empty while the tunnel is not running). A hop whose gateway cannot be asked (the links
    /// before it are not up), does not answer within <paramref name="wait"/> (on the engine's clock), refuses (its
    /// allow-rules, the user's rights) or answers something malformed is Unknown with the reason in Detail. Never
    /// throws for what a peer does; <paramref name="cancellationToken"/> ends the wait (OperationCanceledException).
    /// </summary>
    public async Task<HopSnapshot> GetHopsAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        if (!IsRunning)
        {
            return HopSnapshot.None;
        }
        var servers = _hopServers;
        var hops = new TunnelHopStats[servers.Count];
        var roundTrips = new TimeSpan?[servers.Count];
        var first = _links.TryGet(_firstHop, _firstLogin, Session);
        first?.RefreshRoundTrip(TimeSpan.FromSeconds(1));
        hops[0] = HopQuery.FromRecord(1, servers, StreamRouter.DescribeLink(first, 0), first is null ? $"this server has no link to {servers[0]} (it is dialed for the next connection)" : null);
        if (servers.Count > 1)
        {
            if (first is not { State: LinkState.Up })
            {
                for (var hop = 2; hop <= servers.Count; hop++)
                {
                    hops[hop - 1] = HopQuery.Unknown(hop, servers, $"not asked: the link to {servers[0]} is {hops[0].State.ToString().ToLowerInvariant()}");
                }
            }
            else
            {
                using var timeout = new CancellationTokenSource(wait, _time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
                var asks = Enumerable.Range(2, servers.Count - 1).Select(hop => HopQuery.AskAsync(first, NewOpen(StreamProtocol.LinkInfo, OpenOptions.None, "hop query") with { QueryDepth = (byte)(hop - 2) },
                    hop, servers, _time, wait, linked.Token)).ToArray();
                foreach (var (hop, stats, roundTrip) in await Task.WhenAll(asks).ConfigureAwait(false))
                {
                    hops[hop - 1] = stats;
                    roundTrips[hop - 1] = roundTrip;
                }
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
        return new HopSnapshot(hops, EndToEnd(hops, roundTrips));
    }

    /// <summary>One hop's latency; for more, the round trip of the query to the last gateway plus the last hop's latency.</summary>
    private static TimeSpan? EndToEnd(TunnelHopStats[] hops, TimeSpan?[] roundTrips)
    {
        var last = hops[^1];
        if (last.State != TunnelHopState.Up || last.Latency is not { } latency)
        {
            return null;
        }
        return hops.Length == 1 ? latency : roundTrips[^1] is { } through ? through + latency : null;
    }
}

using System.Globalization;

namespace QmTunnel.Engine.Management;

/// <summary>State of one hop of a tunnel's chain: the link from the server before it to that server.</summary>
public enum TunnelHopState
{
    /// <summary>A connection carries the link.</summary>
    Up,
    /// <summary>The link lost its connection and waits (within its failure tolerance) for a new one.</summary>
    Resuming,
    /// <summary>There is no link: it was never dialed, or its session ended. Nobody dials to find out.</summary>
    Down,
    /// <summary>Nobody could tell: the server before it did not answer in time, refused to, answered garbage, or could not be reached.</summary>
    Unknown,
}

/// <summary>
/// One hop of a tunnel's chain as Get-QmTunnelStats shows it (<see cref="TunnelStats.Hops"/>): the link from the server
/// before it (the owner for hop 1, a gateway for the others, which is asked along the chain) to <see cref="Server"/>.
/// The link is shared by every tunnel that passes that hop with the same login, so its counters are the link's, not
/// this tunnel's. A snapshot; counters are null when the state is <see cref="TunnelHopState.Unknown"/> or Down.
/// Type name <c>QmTunnel.Engine.Management.TunnelHopStats</c> is keyed by the module's format file.
/// </summary>
public sealed class TunnelHopStats
{
    /// <summary>The hop's number in the chain, from 1 (the link from the owning server).</summary>
    public required int Hop { get; init; }
    /// <summary>The server this hop leads to, as <c>qmt://host:port</c> (no user, no options).</summary>
    public required string Server { get; init; }
    public required TunnelHopState State { get; init; }
    /// <summary>The link's last Ping round trip; null when none is known.</summary>
    public TimeSpan? Latency { get; init; }
    /// <summary>Connections the link lost (each one started a wait for a new one).</summary>
    public long? Reconnects { get; init; }
    /// <summary>Times the link carried on on a new connection.</summary>
    public long? Resumes { get; init; }
    /// <summary>Bytes the server before this hop sent on the link (all tunnels that share it, frames with headers).</summary>
    public long? LinkBytesSent { get; init; }
    /// <summary>Bytes the server before this hop received on the link.</summary>
    public long? LinkBytesReceived { get; init; }
    /// <summary>The compression agreed on the link (None: its data goes as it is); null when unknown.</summary>
    public Links.CompressionAlgorithm? Compression { get; init; }
    /// <summary>Application bytes the server before this hop sent on the link, before compression.</summary>
    public long? DataBytesSent { get; init; }
    /// <summary>What <see cref="DataBytesSent"/> took on the wire, after compression (payloads only, no frame headers).</summary>
    public long? DataWireBytesSent { get; init; }
    /// <summary>Application bytes the server before this hop received on the link, after decompression.</summary>
    public long? DataBytesReceived { get; init; }
    /// <summary>What <see cref="DataBytesReceived"/> took on the wire.</summary>
    public long? DataWireBytesReceived { get; init; }

    /// <summary>
    /// Wire bytes per application byte sent and received together (DataWireBytes / DataBytes): 0.25 is data cut to a quarter,
    /// 1 nothing saved; null before any data.
    /// </summary>
    public double? CompressionRatio => (DataBytesSent ?? 0) + (DataBytesReceived ?? 0) is > 0 and var total
        ? (double)((DataWireBytesSent ?? 0) + (DataWireBytesReceived ?? 0)) / total
        : null;

    /// <summary>Why the state is Down or Unknown (no answer in time, refused and why, a malformed answer); null when Up.</summary>
    public string? Detail { get; init; }

    public override string ToString()
    {
        var latency = Latency is { } rtt ? string.Create(CultureInfo.InvariantCulture, $" {rtt.TotalMilliseconds:0.0}ms") : "";
        return string.Create(CultureInfo.InvariantCulture, $"{Hop}: {Server} {State}{latency}");
    }

    /// <summary>
    /// The Hops column of the stats table, at most 6 characters: "" without hops, "2 up" when every hop is up,
    /// otherwise how many hops are in the worst state: "1 down", "1 ?" (unknown), "1 res" (resuming).
    /// </summary>
    public static string Summary(IReadOnlyList<TunnelHopStats> hops)
    {
        if (hops.Count == 0)
        {
            return string.Empty;
        }
        foreach (var (state, word) in new[] { (TunnelHopState.Down, "down"), (TunnelHopState.Unknown, "?"), (TunnelHopState.Resuming, "res") })
        {
            var count = hops.Count(h => h.State == state);
            if (count > 0)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{count} {word}");
            }
        }
        return string.Create(CultureInfo.InvariantCulture, $"{hops.Count} up");
    }
}

using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// One link query (<see cref="StreamProtocol.LinkInfo"/>) from a tunnel's owner: opens it on the link to the first hop,
/// reads the one answer within a bounded wait, and turns it into a <see cref="TunnelHopStats"/>. Whatever the peer
/// does (resets, stays silent, sends too much, too little or garbage) ends as an Unknown hop with the reason; nothing
/// a peer sends makes it throw. It does not pick the depth or the Open (the runtime does) and keeps nothing.
/// </summary>
internal static class HopQuery
{
    /// <summary>
    /// Asks, over <paramref name="first"/>, the gateway before hop <paramref name="hop"/> (2 or more; <paramref name="open"/>
    /// has the matching depth) about its link. <paramref name="servers"/> are the chain's servers (hop 1's first).
    /// Returns the hop and, when it answered for that hop, the query's round trip on <paramref name="time"/>.
    /// <paramref name="cancellationToken"/> (the caller's bound of <paramref name="wait"/> included) ends the wait as
    /// "no answer".
    /// </summary>
    public static async Task<(int Hop, TunnelHopStats Stats, TimeSpan? RoundTrip)> AskAsync(Link first, OpenMessage open, int hop, IReadOnlyList<string> servers,
        TimeProvider time, TimeSpan wait, CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        MuxStream stream;
        try
        {
            stream = first.OpenStream(open, new TrafficCounters(), 0);
        }
        catch (StreamResetException ex)
        {
            return (hop, Unknown(hop, servers, $"not asked: {ex.Message}"), null);
        }
        stream.SendFin(); // nothing to send: the stream ends both ways once the answer is in
        byte[] answer;
        try
        {
            answer = await stream.ReadToEndAsync(LinkInfoRecord.MaxAnswerBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (StreamResetException ex)
        {
            return (hop, Unknown(hop, servers, ex.Code == ProtocolErrorCode.PermissionDenied ? $"refused by {ex.Message}" : ex.Message), null);
        }
        catch (InvalidDataException)
        {
            stream.Reset(ProtocolErrorCode.ConnectionReset, "the answer to a link query is too long");
            return (hop, Unknown(hop, servers, $"the answer is longer than {LinkInfoRecord.MaxAnswerBytes} bytes"), null);
        }
        catch (OperationCanceledException)
        {
            stream.Reset(ProtocolErrorCode.ConnectionReset, "no longer waiting for the answer to a link query");
            return (hop, Unknown(hop, servers, $"no answer within {wait.TotalSeconds:0.#} s"), null);
        }
        var roundTrip = time.GetElapsedTime(started);
        if (!LinkInfoRecord.TryParse(answer, out var record, out var problem))
        {
            return (hop, Unknown(hop, servers, problem!), null);
        }
        if (record.Remaining > 0)
        {
            // A gateway short of the one asked answered for its own next link, which is not up.
            var reached = hop - record.Remaining;
            return reached < 2
                ? (hop, Unknown(hop, servers, $"the answer says the query stopped {record.Remaining} servers short, further back than it went: it cannot be"), null)
                : (hop, Unknown(hop, servers, $"not reached: the link to {servers[reached - 1]} is {record.State.ToString().ToLowerInvariant()}"), null);
        }
        return (hop, FromRecord(hop, servers, record, record.State == LinkInfoState.Down ? $"{servers[hop - 2]} has no link to {servers[hop - 1]}" : null), roundTrip);
    }

    /// <summary>Hop <paramref name="hop"/> as <paramref name="record"/> describes it; <paramref name="detail"/> for a Down one.</summary>
    public static TunnelHopStats FromRecord(int hop, IReadOnlyList<string> servers, LinkInfoRecord record, string? detail) => record.State == LinkInfoState.Down
        ? new TunnelHopStats { Hop = hop, Server = servers[hop - 1], State = TunnelHopState.Down, Detail = detail }
        : new TunnelHopStats
        {
            Hop = hop,
            Server = servers[hop - 1],
            State = record.State == LinkInfoState.Up ? TunnelHopState.Up : TunnelHopState.Resuming,
            Latency = record.RoundTrip,
            Reconnects = record.TransportsLost,
            Resumes = record.Resumes,
            LinkBytesSent = record.BytesSent,
            LinkBytesReceived = record.BytesReceived,
            Compression = record.Compression,
            DataBytesSent = record.DataBytesSent,
            DataWireBytesSent = record.DataWireBytesSent,
            DataBytesReceived = record.DataBytesReceived,
            DataWireBytesReceived = record.DataWireBytesReceived,
        };

    /// <summary>Hop <paramref name="hop"/>, which nobody could describe, and why.</summary>
    public static TunnelHopStats Unknown(int hop, IReadOnlyList<string> servers, string detail) =>
        new() { Hop = hop, Server = servers[hop - 1], State = TunnelHopState.Unknown, Detail = detail };
}

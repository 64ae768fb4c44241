using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tunnels;

using QmTunnel.Engine.Management;
namespace QmTunnel.Engine.Tunnels;

/// <summary>Link queries (<see cref="StreamProtocol.LinkInfo"/>) at a gateway: Get-QmTunnelStats' hops behind the first.</summary>
internal sealed partial class StreamRouter
{
    /// <summary>
    /// LinkInfo (admitted like any stream of the tunnel): carried on while <see cref="OpenMessage.QueryDepth"/> says so,
    /// over the link the tunnel's own streams use to the next server, and only when that link is up: this never dials
    /// (a query must not make a link nobody uses) and never waits on a link that is resuming. The server reached, or a
    /// gateway whose next link is not up, answers OpenAck, one <see cref="LinkInfoRecord"/> about its link to the next
    /// route entry (with the depth it did not reach), and Fin.
    /// </summary>
    private async Task AnswerLinkInfoAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (NextHop(stream, open) is not var (next, login))
        {
            return;
        }
        var link = _context.Pool().TryGet(next, login, NextSession(stream, next));
        if (open.QueryDepth > 0 && link is { State: LinkState.Up })
        {
            if (Onward(stream, open, next) is not { } onwardOpen)
            {
                return;
            }
            if (TryOpenStream(link, onwardOpen) is { } onward)
            {
                await Splice.RunAsync(stream, onward, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
                return;
            }
            link = null; // closed since it was found: answered as down
        }
        link?.RefreshRoundTrip(TimeSpan.FromSeconds(1));
        var record = DescribeLink(link, open.QueryDepth);
        stream.SendOpenAck();
        try
        {
            await stream.SendAsync(record.ToBytes(), cancellationToken).ConfigureAwait(false);
            stream.SendFin();
        }
        catch (StreamResetException)
        {
            // the asker stopped waiting
        }
    }

    /// <summary>A stream on <paramref name="link"/>, or null when the link closed since it was found.</summary>
    private MuxStream? TryOpenStream(Link link, OpenMessage open)
    {
        try
        {
            return link.OpenStream(open, _context.Transit, _context.LinkOptions.InitialWindow);
        }
        catch (StreamResetException)
        {
            return null;
        }
    }

    /// <summary>What a <see cref="LinkInfoRecord"/> says of <paramref name="link"/> (null: no link, Down).</summary>
    internal static LinkInfoRecord DescribeLink(Link? link, byte remaining) => link is null || link.State == LinkState.Closed
        ? new LinkInfoRecord(remaining, LinkInfoState.Down, null, 0, 0, 0, 0)
        : new LinkInfoRecord(remaining, link.State == LinkState.Up ? LinkInfoState.Up : LinkInfoState.Resuming, link.LastRoundTrip,
            link.TransportsLost, link.Resumes, link.BytesSent, link.BytesReceived)
        {
            Compression = link.Compression.Algorithm,
            DataBytesSent = link.DataBytesSent,
            DataWireBytesSent = link.DataWireBytesSent,
            DataBytesReceived = link.DataBytesReceived,
            DataWireBytesReceived = link.DataWireBytesReceived,
        };
}

using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Reverse tunnels in the router (docs/protocol.md, "Reverse tunnels"). A Bind is admitted like any stream of its
/// tunnel (rights and R# allow-rules at every server), carried on by gateways (which register the Bind they open, so
/// Reverse streams naming it come back to them), and served by the last server with a <see cref="FarListener"/>. A
/// Reverse stream is the one stream a peer may open on a link this server dialed: only for a Bind this server opened
/// on that very link (<see cref="ReverseBinds"/>), never with a target or route of its own choosing.
/// </summary>
internal sealed partial class StreamRouter
{
    private readonly FarListeners _farListeners = new();

    /// <summary>The Binds this server opened (owner and gateway), by link.</summary>
    internal ReverseBinds Binds { get; } = new();

    /// <summary>Far listeners this server holds for reverse tunnels (last server).</summary>
    internal int FarListenerCount => _farListeners.Count;

    /// <summary>The far listeners' Bind streams: the link each came on and its id there (tests).</summary>
    internal IReadOnlyList<(Link Link, uint BindId)> FarListenerBinds => _farListeners.Binds;

    /// <summary>
    /// A Reverse stream: handed to the Bind it names on this link (owner: the tunnel connects to its target; gateway:
    /// carried back toward the owner), else refused (PermissionDenied: no such Bind on this link; StreamLimit: its
    /// MaxConnections are open).
    /// </summary>
    private async Task ReverseAsync(Link link, MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        var (entry, code, refusal) = Binds.TryEnter(link, open.BindStreamId, _context.ServerName);
        if (entry is null)
        {
            ReverseLog.ReverseRefused(_context.Logger, link.RemoteEndPoint, open.BindStreamId, refusal!);
            stream.Reset(code, refusal!);
            return;
        }
        try
        {
            await entry.Handler(stream, open, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            entry.Leave();
        }
    }

    /// <summary>
    /// A Tcp or Hold stream that says it belongs to a reverse tunnel: refused before admission (the R# rules it would be
    /// matched against do not allow connecting from this end).
    /// </summary>
    private bool RefusedAsMisdirected(MuxStream stream, OpenMessage open)
    {
        if (open.Protocol is StreamProtocol.Tcp or StreamProtocol.Hold && AccessControl.IsRemoteToLocal(open))
        {
            stream.Reset(ProtocolErrorCode.OpenRejected,
                $"{_context.ServerName}: a {open.Protocol} stream cannot belong to a RemoteToLocal tunnel (a reverse tunnel's clients come back as Reverse streams of its Bind).");
            return true;
        }
        return false;
    }

    /// <summary>
    /// An admitted Bind: passed on to the next server (gateway), or served here with a far listener (last server). It is
    /// a held stream: a stopping server resets it (Shutdown) with the Holds, which closes its listener.
    /// </summary>
    private async Task BindAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        lock (_holds)
        {
            if (!_holdsClosed)
            {
                _holds.Add(stream);
            }
        }
        try
        {
            if (!IsHeld(stream))
            {
                stream.Reset(ProtocolErrorCode.Shutdown, $"{_context.ServerName} is stopping");
                return;
            }
            if (open.Route.Count > 0)
            {
                await ForwardBindAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            }
            var user = stream.Link.Principal?.User.Name ?? "?";
            await _farListeners.ServeAsync(new FarListener.Context(_context.ServerName, user, stream, open, _context.LinkOptions, _context.Logger,
                _context.Transit, _context.CountTransit, _context.Time), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_holds)
            {
                _holds.Remove(stream);
            }
        }
    }

    /// <summary>
    /// At a gateway: opens the Bind on the link to the next server (registered there, so the Reverse streams naming it
    /// are carried back on <paramref name="inbound"/>'s link, naming <paramref name="inbound"/>) and splices the two.
    /// </summary>
    private async Task ForwardBindAsync(MuxStream inbound, OpenMessage open, CancellationToken cancellationToken)
    {
        if (await OnwardLinkAsync(inbound, open, cancellationToken).ConfigureAwait(false) is not var (link, onwardOpen))
        {
            return;
        }
        IDisposable? registration = null;
        MuxStream onward;
        try
        {
            onward = link.OpenStream(onwardOpen, _context.Transit, _context.LinkOptions.InitialWindow,
                created => registration = Binds.Register(created, open.Tunnel, (int)open.MaxConnections,
                    (reverse, reverseOpen, token) => BackwardAsync(inbound, reverse, reverseOpen, token)));
        }
        catch (StreamResetException ex)
        {
            inbound.Reset(ex.Code, $"{_context.ServerName}: {ex.Message}");
            return;
        }
        try
        {
            await Splice.RunAsync(inbound, onward, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            registration?.Dispose();
        }
    }

    /// <summary>At a gateway: a Reverse stream of a Bind it carries goes back on the Bind's inbound link, naming the Bind there.</summary>
    private async Task BackwardAsync(MuxStream inboundBind, MuxStream reverse, OpenMessage open, CancellationToken cancellationToken)
    {
        _context.CountTransit();
        MuxStream back;
        try
        {
            back = inboundBind.Link.OpenStream(open with { BindStreamId = inboundBind.Id }, _context.Transit, _context.LinkOptions.InitialWindow);
        }
        catch (StreamResetException ex)
        {
            reverse.Reset(ex.Code, $"{_context.ServerName}: {ex.Message}");
            return;
        }
        await Splice.RunAsync(reverse, back, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
    }
}

internal static partial class ReverseLog
{
    // Event ids: Diagnostics/EventIds.cs (reverse tunnels, 230-249).
    [LoggerMessage(EventId = EventIds.ReverseRefused, Level = LogLevel.Warning,
        Message = "Link {Peer}: a Reverse stream naming stream {BindId} refused: {Reason}")]
    public static partial void ReverseRefused(ILogger logger, string peer, uint bindId, string reason);

    [LoggerMessage(EventId = EventIds.ReverseListening, Level = LogLevel.Information,
        Message = "Reverse tunnel {Tunnel} of user {User}: listening on {Listen} for {Peer}")]
    public static partial void Listening(ILogger logger, string tunnel, string user, string listen, string peer);

    [LoggerMessage(EventId = EventIds.ReverseListenerClosed, Level = LogLevel.Information,
        Message = "Reverse tunnel {Tunnel} of user {User}: listener {Listen} closed ({Why})")]
    public static partial void ListenerClosed(ILogger logger, string tunnel, string user, string listen, string why);

    [LoggerMessage(EventId = EventIds.ReverseBindRefused, Level = LogLevel.Warning,
        Message = "Reverse tunnel {Tunnel} of user {User}: cannot listen: {Reason}")]
    public static partial void BindRefused(ILogger logger, string tunnel, string user, string reason);

    [LoggerMessage(EventId = EventIds.ReverseBindReplaced, Level = LogLevel.Information,
        Message = "Reverse tunnel {Tunnel} of user {User}: listener {Listen} taken over by a new Bind (the old one's link is waiting to resume)")]
    public static partial void BindReplaced(ILogger logger, string tunnel, string user, string listen);

    [LoggerMessage(EventId = EventIds.ReverseClientRefused, Level = LogLevel.Warning,
        Message = "Reverse tunnel {Tunnel}: a client from {Client} refused: {Reason}")]
    public static partial void ClientRefused(ILogger logger, string tunnel, string client, string reason);
}

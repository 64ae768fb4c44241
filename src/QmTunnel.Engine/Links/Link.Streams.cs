using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// The stream table of a link: streams the peer opens (at most <see cref="LinkLimits.MaxStreams"/> at once), their handlers,
/// and forgetting streams that are finished. It does not move data (MuxStream and the loops do).
/// </summary>
public sealed partial class Link
{
    private uint _highestPeerStreamId;
    private int _peerStreams, _streamLimitLogged;
    private long _streamsRefused;
    private long _streamsEmptySince;

    /// <summary>Streams the peer opened that were refused because <see cref="LinkLimits.MaxStreams"/> were open.</summary>
    public long StreamsRefused => Interlocked.Read(ref _streamsRefused);

    /// <summary>How long the link has carried no stream at all (zero while it carries one), by <see cref="LinkOptions.Time"/>.</summary>
    public TimeSpan IdleTime => _streams.IsEmpty ? Options.Time.GetElapsedTime(Interlocked.Read(ref _streamsEmptySince)) : TimeSpan.Zero;

    private bool IsPeerStreamId(uint id) => (id % 2 == 1) != _isDialer;

    private bool IsKnownStreamId(uint id) => IsPeerStreamId(id) ? id <= Volatile.Read(ref _highestPeerStreamId) : id < _nextStreamId;

    internal void Forget(MuxStream stream)
    {
        if (_streams.TryRemove(new KeyValuePair<uint, MuxStream>(stream.Id, stream)))
        {
            if (IsPeerStreamId(stream.Id))
            {
                Interlocked.Decrement(ref _peerStreams);
            }
            Interlocked.Exchange(ref _streamsEmptySince, Options.Time.GetTimestamp());
        }
    }

    internal void MaybeForget(MuxStream stream)
    {
        if (stream.FinSent && stream.FinReceived)
        {
            Forget(stream);
        }
    }

    private void OnOpen(uint id, OpenMessage open)
    {
        if (!IsPeerStreamId(id) || id <= _highestPeerStreamId)
        {
            throw new ProtocolException(ProtocolErrorCode.StreamStateError, $"the peer opened stream {id}, which it may not (wrong parity or reused)");
        }
        Volatile.Write(ref _highestPeerStreamId, id);
        var max = Options.Limits.MaxStreams;
        if (Volatile.Read(ref _peerStreams) >= max)
        {
            // Nothing is kept for it: late frames of this id are dropped as those of any finished stream.
            Interlocked.Increment(ref _streamsRefused);
            Options.Limits.CountStreamRefused();
            if (Interlocked.Exchange(ref _streamLimitLogged, 1) == 0)
            {
                LinkLog.StreamLimit(_logger, RemoteEndPoint, User ?? "?", max);
            }
            EnqueueControl(id, new ResetMessage(ProtocolErrorCode.StreamLimit,
                $"{Options.ServerName} allows {max} streams at once on one link (MaxStreamsPerLink), and that many are open: " +
                "wait for some to close, or raise the limit there with Set-QmTunnelServerConfig -MaxStreamsPerLink."));
            return;
        }
        Interlocked.Increment(ref _peerStreams);
        var stream = new MuxStream(this, id, Options.InitialWindow, Peer.InitialWindow, new TrafficCounters());
        _streams[id] = stream;
        var handler = StreamOpened;
        if (handler is null)
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, "this side of the link accepts no streams");
            return;
        }
        _ = RunHandlerAsync(handler, stream, open);
    }

    private async Task RunHandlerAsync(Func<MuxStream, OpenMessage, Task> handler, MuxStream stream, OpenMessage open)
    {
        try
        {
            await handler(stream, open).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LinkLog.StreamHandlerFailed(_logger, stream.Id, RemoteEndPoint, ex);
            stream.Reset(ProtocolErrorCode.ConnectionReset, ex.Message);
        }
        // A handler that returned after its Fin reads no more: what the peer still sends on the stream is dropped,
        // and the stream leaves the table now instead of when (if ever) the peer's Fin comes.
        if (!stream.IsReset && stream.FinSent && !stream.FinReceived)
        {
            stream.DiscardInput();
            Forget(stream);
        }
    }
}

internal static partial class LinkLog
{
    [LoggerMessage(EventId = EventIds.LinkStreamLimit, Level = LogLevel.Warning,
        Message = "Link {Peer} (user {User}): the peer has {Max} streams open (MaxStreamsPerLink); more are refused with StreamLimit")]
    public static partial void StreamLimit(ILogger logger, string peer, string user, int max);

    [LoggerMessage(EventId = EventIds.LinkReadPaused, Level = LogLevel.Warning,
        Message = "Link {Peer} (user {User}): the peer does not read what it asks for; reading from it paused while {Queued} bytes wait to be sent")]
    public static partial void ReadPaused(ILogger logger, string peer, string user, long queued);

    [LoggerMessage(EventId = EventIds.LinkBufferFull, Level = LogLevel.Warning,
        Message = "Link {Peer} (user {User}): the send queues of all links hold {Buffered} bytes, the server's budget of {Max} (MaxBufferedMB); senders of data wait for room (raise it with Set-QmTunnelServerConfig -MaxBufferedMB)")]
    public static partial void BufferFull(ILogger logger, string peer, string user, long buffered, long max);

    [LoggerMessage(EventId = EventIds.LinkIdleClosed, Level = LogLevel.Information, Message = "Link {Peer} (user {User}) carried no stream for {Timeout}: closed")]
    public static partial void IdleClosed(ILogger logger, string peer, string user, TimeSpan timeout);
}

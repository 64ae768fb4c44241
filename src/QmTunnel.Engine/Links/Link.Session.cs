using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Session resume (docs/protocol.md, "Session resume"): each side counts the numbered frames it sends and receives;
/// written frames stay in the retained queue (counted in the send queue's bound) until the peer acknowledges them; when
/// the connection is lost the session waits up to its failure tolerance for a new one (the dialer redials with
/// backoff), then both sides resend what the other has not received. Heartbeats and the receive timeout watch the
/// connection. It does not dial (<see cref="Reconnect"/> does) and does not read frames (the loops do).
/// </summary>
public sealed partial class Link
{
    /// <summary>An explicit Ack goes out once this many numbered bytes arrived unacknowledged (others ride on outgoing batches).</summary>
    private const long AckEveryBytes = 256 * 1024;

    /// <summary>An Ack rides on an outgoing batch once this many numbered frames, or <see cref="PiggybackEveryBytes"/>, arrived unacknowledged.</summary>
    private const ulong PiggybackEveryFrames = 32;

    private const long PiggybackEveryBytes = 64 * 1024;

    private readonly Lock _stateLock = new();
    private readonly Lock _retainLock = new();
    private readonly Queue<OutFrame> _retained = new();
    private readonly SemaphoreSlim _resumeLock = new(1, 1);
    private LinkTransport? _transport, _previousTransport;
    private ulong _receivedCount, _ackSentCount, _ackedCount, _writtenCount;
    private long _receivedSinceAck, _unwritten, _transportsLost, _resumes, _reconnectFailures;
    private ITimer? _expiry, _heartbeat;

    /// <summary>The session's settings (failure tolerance, heartbeats, backoff; its id once agreed).</summary>
    public LinkSessionSettings Session { get; }

    /// <summary>Up, Resuming (waiting for a new connection) or Closed.</summary>
    public LinkState State => IsClosed ? LinkState.Closed : Volatile.Read(ref _transport) is null ? LinkState.Resuming : LinkState.Up;

    /// <summary>Connections this session lost (each one started a wait for a new one, or ended it).</summary>
    public long TransportsLost => Interlocked.Read(ref _transportsLost);

    /// <summary>Times this session carried on on a new connection.</summary>
    public long Resumes => Interlocked.Read(ref _resumes);

    /// <summary>Reconnect attempts that failed (dialer side).</summary>
    public long ReconnectFailures => Interlocked.Read(ref _reconnectFailures);

    /// <summary>Bytes written and not yet acknowledged by the peer (kept for a resend).</summary>
    internal int RetainedFrames
    {
        get
        {
            lock (_retainLock)
            {
                return _retained.Count;
            }
        }
    }

    /// <summary>
    /// Dialer side: dials a new connection and resumes this session on it (<see cref="ResumeOnAsync"/>). Set by whoever
    /// dialed the link; without it, a lost connection ends the session.
    /// </summary>
    public Func<Link, CancellationToken, Task>? Reconnect { get; set; }

    // ---------------- counting and acknowledging ----------------

    /// <summary>Writer: keeps the numbered frames of a batch until acknowledged (on a resumable session).</summary>
    private void Retain(List<OutFrame> batch)
    {
        if (!Session.Resumable)
        {
            return;
        }
        lock (_retainLock)
        {
            foreach (var frame in batch)
            {
                if (frame.IsNumbered)
                {
                    _retained.Enqueue(frame);
                    _writtenCount++;
                }
            }
        }
    }

    /// <summary>Writer, after a batch: returns what is not kept, and lets waiting senders and the paused reader look again.</summary>
    private void ReleaseWritten(List<OutFrame> batch)
    {
        long freed = 0, written = 0;
        foreach (var frame in batch)
        {
            written += Cost(frame.Length);
            if (!Session.Resumable || !frame.IsNumbered)
            {
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                freed += Cost(frame.Length);
            }
        }
        Interlocked.Add(ref _unwritten, -written);
        AddQueued(-freed);
        SignalRoom();
    }

    /// <summary>Reader: one more numbered frame received.</summary>
    private void CountReceived(int bytes)
    {
        Interlocked.Increment(ref _receivedCount);
        Interlocked.Add(ref _receivedSinceAck, bytes);
    }

    /// <summary>Writer: an Ack to send with this batch when frames arrived since the last one (the caller returns the buffer).</summary>
    private byte[]? PiggybackAck()
    {
        if (!Session.Resumable)
        {
            return null;
        }
        // Not on every batch: a second segment on every send costs latency (a 64-byte ping-pong is one frame each way).
        // Enough frames or bytes, or the next heartbeat tick, bound what the peer keeps for a resend.
        var received = Interlocked.Read(ref _receivedCount);
        var unacknowledged = received - Interlocked.Read(ref _ackSentCount);
        if (unacknowledged == 0 || (unacknowledged < PiggybackEveryFrames && Interlocked.Read(ref _receivedSinceAck) < PiggybackEveryBytes))
        {
            return null;
        }
        Interlocked.Exchange(ref _ackSentCount, received);
        Interlocked.Exchange(ref _receivedSinceAck, 0);
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 8);
        new FrameHeader(FrameType.Ack, FrameFlags.None, 0, 8).Write(buffer);
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(FrameHeader.Size), received);
        return buffer;
    }

    /// <summary>Reader, after a batch: queues an Ack when much arrived unacknowledged (no outgoing batch carried one).</summary>
    private void MaybeAck(bool force = false)
    {
        var received = Interlocked.Read(ref _receivedCount);
        var unacknowledged = received - Interlocked.Read(ref _ackSentCount);
        if (!Session.Resumable || unacknowledged == 0 || (!force && Interlocked.Read(ref _receivedSinceAck) < AckEveryBytes && unacknowledged < 4 * PiggybackEveryFrames))
        {
            return;
        }
        Interlocked.Exchange(ref _ackSentCount, received);
        Interlocked.Exchange(ref _receivedSinceAck, 0);
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 8);
        new FrameHeader(FrameType.Ack, FrameFlags.None, 0, 8).Write(buffer);
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(FrameHeader.Size), received);
        Enqueue(new OutFrame(buffer, FrameHeader.Size + 8));
    }

    /// <summary>The peer received <paramref name="count"/> numbered frames: those are not kept any longer.</summary>
    private void OnAck(ulong count)
    {
        long freed = 0;
        lock (_retainLock)
        {
            if (count > _writtenCount)
            {
                throw new ProtocolException(ProtocolErrorCode.StreamStateError, $"the peer acknowledged {count} frames; {_writtenCount} were sent");
            }
            while (_ackedCount < count && _retained.TryDequeue(out var frame))
            {
                _ackedCount++;
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                freed += Cost(frame.Length);
            }
        }
        AddQueued(-freed);
    }

    /// <summary>Returns every kept frame (the session ended).</summary>
    private void ReleaseRetained()
    {
        long freed = 0;
        lock (_retainLock)
        {
            while (_retained.TryDequeue(out var frame))
            {
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                freed += Cost(frame.Length);
            }
        }
        AddQueued(-freed);
    }

    /// <summary>Returns the frames never written (the session ended; no writer runs).</summary>
    private void DrainQueue()
    {
        while (_out.Reader.TryRead(out var frame))
        {
            ArrayPool<byte>.Shared.Return(frame.Buffer);
            AddQueued(-Cost(frame.Length));
        }
    }

    // ---------------- heartbeats ----------------

    /// <summary>
    /// The connection the Pings in flight went out on is gone, and Pings are never resent: their waiters fail now.
    /// Else a Ping lost with a connection would stay in flight for good, and no heartbeat Ping would go out again.
    /// </summary>
    private void FailPings(string reason)
    {
        foreach (var (stamp, ping) in _pings)
        {
            if (_pings.TryRemove(stamp, out _))
            {
                ping.TrySetException(new IOException($"the connection to {RemoteEndPoint} was lost before the Pong: {reason}"));
            }
        }
    }

    /// <summary>Starts the heartbeat and receive-timeout watch (when either is on), on <see cref="LinkOptions.Time"/>.</summary>
    private void StartHeartbeat()
    {
        var on = new[] { Session.HeartbeatInterval, Session.ReceiveTimeout }.Where(t => t > TimeSpan.Zero).ToList();
        if (on.Count == 0)
        {
            return;
        }
        var tick = on.Min() / 4;
        tick = tick < TimeSpan.FromMilliseconds(25) ? TimeSpan.FromMilliseconds(25) : tick > TimeSpan.FromSeconds(5) ? TimeSpan.FromSeconds(5) : tick;
        _heartbeat = Options.Time.CreateTimer(_ => Heartbeat(), null, tick, tick);
    }

    private void Heartbeat()
    {
        if (IsClosed || Volatile.Read(ref _transport) is not { } transport)
        {
            return;
        }
        var time = Options.Time;
        if (Session.ReceiveTimeout > TimeSpan.Zero && time.GetElapsedTime(transport.LastReceived) >= Session.ReceiveTimeout)
        {
            TransportLost(transport, $"nothing received for {Session.ReceiveTimeout.TotalSeconds:0.#} s (receive timeout)");
            return;
        }
        if (Session.HeartbeatInterval > TimeSpan.Zero && time.GetElapsedTime(transport.LastSent) >= Session.HeartbeatInterval)
        {
            RefreshRoundTrip(TimeSpan.Zero);
            transport.MarkSent(); // one Ping per interval, even when the Pong is late
        }
        MaybeAck(force: true);
    }

    private void StopSessionTimers()
    {
        Interlocked.Exchange(ref _heartbeat, null)?.Dispose();
        Interlocked.Exchange(ref _expiry, null)?.Dispose();
    }
}

internal static partial class LinkLog
{
    [LoggerMessage(EventId = EventIds.LinkTransportLost, Level = LogLevel.Warning,
        Message = "Link {Peer} (user {User}): connection lost ({Reason}); the session waits up to {Tolerance} s for a new one")]
    public static partial void TransportLost(ILogger logger, string peer, string user, string reason, double tolerance);

    [LoggerMessage(EventId = EventIds.LinkResumed, Level = LogLevel.Information, Message = "Link {Peer} (user {User}): session resumed, {Resent} frames sent again")]
    public static partial void Resumed(ILogger logger, string peer, string user, int resent);

    [LoggerMessage(EventId = EventIds.LinkSessionExpired, Level = LogLevel.Warning, Message = "Link {Peer} (user {User}): session expired: {Reason}")]
    public static partial void SessionExpired(ILogger logger, string peer, string user, string reason);

    [LoggerMessage(EventId = EventIds.LinkResumeRefused, Level = LogLevel.Warning,
        Message = "Link from {Peer}: resume refused: user {User} gave a wrong proof or named a session of {Owner}")]
    public static partial void ResumeRefused(ILogger logger, string peer, string user, string owner);

    [LoggerMessage(EventId = EventIds.LinkReconnectFailed, Level = LogLevel.Information, Message = "Link {Peer} (user {User}): reconnect failed ({Reason}); {Failures} failures so far")]
    public static partial void ReconnectFailed(ILogger logger, string peer, string user, string reason, long failures);
}

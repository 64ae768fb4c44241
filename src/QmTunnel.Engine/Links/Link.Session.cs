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
        var received = Interlocked.Read(ref _receivedCount);
        if (received == Interlocked.Read(ref _ackSentCount))
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
        if (!Session.Resumable || Interlocked.Read(ref _receivedSinceAck) < (force ? 1 : AckEveryBytes))
        {
            return;
        }
        var received = Interlocked.Read(ref _receivedCount);
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

    // ---------------- losing and regaining the connection ----------------

    /// <summary>The connection under the session failed: wait for a new one (resumable) or end.</summary>
    private void TransportLost(LinkTransport transport, string reason)
    {
        lock (_stateLock)
        {
            if (_transport != transport || IsClosed)
            {
                return;
            }
            _transport = null;
        }
        transport.Abort();
        Interlocked.Increment(ref _transportsLost);
        FailPings(reason);
        if (!Session.Resumable)
        {
            Teardown(reason);
            return;
        }
        LinkLog.TransportLost(_logger, RemoteEndPoint, User ?? "?", reason, Session.FailureTolerance.TotalSeconds);
        var expiry = Options.Time.CreateTimer(_ => Expire($"the connection was lost ({reason}) and did not come back within the failure tolerance of {Session.FailureTolerance.TotalSeconds:0.#} s"),
            null, Session.FailureTolerance, Timeout.InfiniteTimeSpan);
        Interlocked.Exchange(ref _expiry, expiry)?.Dispose();
        if (_isDialer && Reconnect is { } reconnect)
        {
            _ = ReconnectLoopAsync(transport, reconnect);
        }
    }

    /// <summary>The session waited its failure tolerance in vain: streams end with LinkSessionExpired.</summary>
    private void Expire(string reason)
    {
        if (IsClosed || Volatile.Read(ref _transport) is not null)
        {
            return;
        }
        LinkLog.SessionExpired(_logger, RemoteEndPoint, User ?? "?", reason);
        Teardown(reason, ProtocolErrorCode.LinkSessionExpired);
    }

    /// <summary>Dialer: redials (at once, then with the hop's backoff) until the session carries on, expires or is refused.</summary>
    private async Task ReconnectLoopAsync(LinkTransport lost, Func<Link, CancellationToken, Task> reconnect)
    {
        await lost.LoopsEndedAsync().ConfigureAwait(false);
        var attempts = 0;
        var random = new Random();
        while (!IsClosed && Volatile.Read(ref _transport) is null)
        {
            // The first attempt at once (a reset connection is often back at once); the hop's backoff after each failure.
            var delay = attempts++ == 0 ? TimeSpan.Zero : Session.Timing.ReconnectDelay(attempts - 1, random);
            try
            {
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, Options.Time, _closing.Token).ConfigureAwait(false);
                }
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
                attempt.CancelAfter(Session.Timing.ConnectTimeout + Options.HandshakeTimeout);
                await reconnect(this, attempt.Token).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (_closing.IsCancellationRequested)
            {
                return;
            }
            catch (ProtocolException ex) when (ex.Code is ProtocolErrorCode.SessionExpired or ProtocolErrorCode.ResumeRefused or ProtocolErrorCode.AuthenticationFailed)
            {
                Expire($"the peer cannot resume the session ({ex.Code}): {ex.Message}");
                return;
            }
            catch (Exception ex)
            {
                if (Interlocked.Increment(ref _reconnectFailures) % 10 == 1)
                {
                    LinkLog.ReconnectFailed(_logger, RemoteEndPoint, User ?? "?", ex.Message, Interlocked.Read(ref _reconnectFailures));
                }
            }
        }
    }

    /// <summary>
    /// Carries the session on on <paramref name="transport"/>: what the peer received (<paramref name="peerReceived"/>)
    /// is dropped, the rest is resent first. Throws a ProtocolException when the peer's count cannot be right.
    /// </summary>
    private void Attach(LinkTransport transport, ulong peerReceived)
    {
        List<OutFrame> resend;
        lock (_retainLock)
        {
            if (peerReceived < _ackedCount || peerReceived > _writtenCount)
            {
                throw new ProtocolException(ProtocolErrorCode.StreamStateError,
                    $"the peer says it received {peerReceived} frames; {_ackedCount} were acknowledged and {_writtenCount} sent");
            }
        }
        OnAck(peerReceived);
        lock (_retainLock)
        {
            resend = [.. _retained];
        }
        lock (_stateLock)
        {
            if (IsClosed)
            {
                transport.Abort();
                throw new ObjectDisposedException(nameof(Link), "the link session ended before it could resume");
            }
            _transport = transport;
            RemoteEndPoint = transport.RemoteEndPoint;
        }
        Interlocked.Exchange(ref _expiry, null)?.Dispose();
        Interlocked.Increment(ref _resumes);
        Interlocked.Exchange(ref _receivedSinceAck, 1); // the peer hears our count soon, even on a quiet link
        RunTransport(transport, resend);
        LinkLog.Resumed(_logger, RemoteEndPoint, User ?? "?", resend.Count);
    }

    /// <summary>
    /// Dialer: the handshake again on a new connection (Hello, the same login), then Resume with this session's proof
    /// and count; on Resumed the session carries on there. A peer that lost the session answers SessionExpired; a
    /// different server at the address is SessionExpired too. The socket and TLS stream become the session's.
    /// </summary>
    internal async Task ResumeOnAsync(System.Net.Sockets.Socket socket, Stream? tls, LinkLogin login, byte[] channelBinding, string server, CancellationToken cancellationToken)
    {
        await _resumeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (reader, peer, ok, rtt) = await DialerHandshakeAsync(socket, Options, cancellationToken, tls, login, channelBinding, server).ConfigureAwait(false);
            if (peer.ServerId != Peer.ServerId || ok is not { ResumeNonce.Length: 32 })
            {
                throw new ProtocolException(ProtocolErrorCode.SessionExpired, $"{server} is not the server instance that held the session (it restarted)");
            }
            await ResumeOverAsync(new SocketLinkTransport(socket, tls, reader, Options.Time), ok.ResumeNonce, rtt, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _resumeLock.Release();
        }
    }

    /// <summary>
    /// Dialer, on a connection whose handshake and login are done (<paramref name="resumeNonce"/> from its AuthOk; the
    /// caller holds the resume lock): detaches the connection still attached, if any, and waits for its loops; sends
    /// Resume with the proof and the count received; reads Resumed (or a GoAway, thrown as a ProtocolException of its
    /// code) and carries the session on on <paramref name="transport"/>.
    /// </summary>
    private async Task ResumeOverAsync(LinkTransport transport, byte[] resumeNonce, TimeSpan rtt, CancellationToken cancellationToken)
    {
        var received = await DetachAsync().ConfigureAwait(false);
        var proof = LinkSessionOffer.Proof(Session.Secret, resumeNonce, Session.Id);
        var resume = BuildHandshake(preamble: false, new ResumeMessage(Session.Id, proof, received));
        await transport.WriteAsync([new ArraySegment<byte>(resume)], resume.Length).ConfigureAwait(false);
        var (_, answer) = await ReadControlAsync(transport.Input, cancellationToken, FrameType.Resumed).ConfigureAwait(false);
        ThrowIfGoAway(answer);
        LastRoundTrip = rtt;
        Attach(transport, ((ResumedMessage)answer).Received);
    }

    /// <summary>
    /// Acceptor: the session <paramref name="resume"/> names, if it lives, belongs to <paramref name="user"/> and the proof
    /// holds, carries on on <paramref name="transport"/> (an older connection still attached is evicted). Refusals are
    /// answered with a GoAway and thrown as a ProtocolException of its code.
    /// </summary>
    private static async Task<Link> ResumeAsAcceptorAsync(LinkTransport transport, ResumeMessage resume, string user, LinkSessionOffer? offer,
        LinkSessionRegistry? sessions, ILogger logger, CancellationToken cancellationToken)
    {
        async Task<Exception> RefuseAsync(ProtocolErrorCode code, string reason)
        {
            var bytes = BuildHandshake(preamble: false, new GoAwayMessage(code, reason));
            await transport.WriteAsync([new ArraySegment<byte>(bytes)], bytes.Length).ConfigureAwait(false);
            return new ProtocolException(code, reason);
        }
        var link = offer is null ? null : sessions?.TryGet(resume.SessionId);
        if (link is null)
        {
            throw await RefuseAsync(ProtocolErrorCode.SessionExpired, "no such link session here: it expired, or this server restarted; start a new one").ConfigureAwait(false);
        }
        var expected = LinkSessionOffer.Proof(link.Session.Secret, offer!.Nonce, link.Session.Id);
        if (!string.Equals(link.User, user, StringComparison.OrdinalIgnoreCase) || !CryptographicOperations.FixedTimeEquals(expected, resume.Proof))
        {
            LinkLog.ResumeRefused(logger, transport.RemoteEndPoint, user, link.User ?? "?");
            throw await RefuseAsync(ProtocolErrorCode.ResumeRefused, "the resume proof does not hold for this user").ConfigureAwait(false);
        }
        await link._resumeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var received = await link.DetachAsync().ConfigureAwait(false);
            var answer = BuildHandshake(preamble: false, new ResumedMessage(received));
            await transport.WriteAsync([new ArraySegment<byte>(answer)], answer.Length).ConfigureAwait(false);
            link.Attach(transport, resume.Received);
            return link;
        }
        finally
        {
            link._resumeLock.Release();
        }
    }

    /// <summary>
    /// Before a resume (acceptor; dialer too, where the connection is already lost): evicts the connection still
    /// attached, waits for the loops of the last one, returns the count received (final once those loops ended).
    /// </summary>
    private async Task<ulong> DetachAsync()
    {
        LinkTransport? old;
        lock (_stateLock)
        {
            old = _transport;
            _transport = null;
        }
        if (old is not null)
        {
            old.Abort();
            Interlocked.Increment(ref _transportsLost);
            FailPings("a resume replaced the connection");
            // Make sure it expires should the new one fail before it is attached.
            var expiry = Options.Time.CreateTimer(_ => Expire("a resume replaced the connection, then failed"), null, Session.FailureTolerance, Timeout.InfiniteTimeSpan);
            Interlocked.Exchange(ref _expiry, expiry)?.Dispose();
        }
        if (Volatile.Read(ref _previousTransport) is { } previous)
        {
            await previous.LoopsEndedAsync().ConfigureAwait(false);
        }
        return Interlocked.Read(ref _receivedCount);
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

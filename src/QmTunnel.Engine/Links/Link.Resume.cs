using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Losing and regaining the connection under a session (docs/protocol.md, "Session resume"): the wait within the
/// failure tolerance, the dialer's reconnect loop, the Resume exchange on both sides, and carrying on (what the peer
/// lacks is resent first). Counting and acknowledging is in Link.Session.cs.
/// </summary>
public sealed partial class Link
{
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

    /// <summary>Why the peer cannot have received <paramref name="peerReceived"/> numbered frames, or null when it can.</summary>
    private string? PeerCountProblem(ulong peerReceived)
    {
        lock (_retainLock)
        {
            return peerReceived < _ackedCount || peerReceived > _writtenCount
                ? $"the peer says it received {peerReceived} frames; {_ackedCount} were acknowledged and {_writtenCount} sent"
                : null;
        }
    }

    /// <summary>
    /// Carries the session on on <paramref name="transport"/>: what the peer received (<paramref name="peerReceived"/>)
    /// is dropped, the rest is resent first. Throws a ProtocolException when the peer's count cannot be right.
    /// </summary>
    private void Attach(LinkTransport transport, ulong peerReceived)
    {
        List<OutFrame> resend;
        if (PeerCountProblem(peerReceived) is { } problem)
        {
            throw new ProtocolException(ProtocolErrorCode.StreamStateError, problem);
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
            // The session's compression was agreed when it started and stays (its kept frames are resent as they are).
            var (reader, peer, ok, rtt) = await DialerHandshakeAsync(socket, Options, cancellationToken, tls, login, channelBinding, server, Session.Compression).ConfigureAwait(false);
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
            if (link.PeerCountProblem(resume.Received) is { } problem)
            {
                // A count no honest peer can have: the session cannot carry on exactly once; it ends now.
                link.Teardown($"the peer's resume is inconsistent: {problem}", ProtocolErrorCode.LinkSessionExpired);
                throw await RefuseAsync(ProtocolErrorCode.StreamStateError, problem).ConfigureAwait(false);
            }
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
}

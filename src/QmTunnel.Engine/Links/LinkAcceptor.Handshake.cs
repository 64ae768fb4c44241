using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>One accepted connection from its first byte to a logged-in link (or its end).</summary>
internal sealed partial class LinkAcceptor
{
    private async Task HandshakeAsync(PendingLink pending)
    {
        var socket = pending.Socket;
        var token = pending.Handshake.Token;
        SslStream? tls = null;
        CoalescingStream? coalescing = null;
        Link? link = null;
        var resumed = false;
        var abort = false;
        try
        {
            socket.NoDelay = true;
            // One port for both: a TLS ClientHello starts with 0x16, a plain link with the preamble "QMTL".
            var first = new byte[1];
            if (await socket.ReceiveAsync(first, SocketFlags.Peek, token).ConfigureAwait(false) == 0)
            {
                return;
            }
            string? refusePlain = null;
            if (first[0] == TlsHandshakeRecord && _tlsOptions is not null)
            {
                coalescing = new CoalescingStream(new NetworkStream(socket, ownsSocket: false));
                pending.Transport = coalescing;
                tls = new SslStream(coalescing, leaveInnerStreamOpen: false);
                await tls.AuthenticateAsServerAsync(_tlsOptions, token).ConfigureAwait(false);
            }
            else if (_refusePlain() is { } reason)
            {
                Interlocked.Increment(ref _plainRefused);
                refusePlain = reason;
            }
            var clientCertificate = tls?.RemoteCertificate is { } remote ? remote as X509Certificate2 ?? new X509Certificate2(remote) : null;
            // Logged in: from now on TLS records are gathered per flushed batch and reads are buffered (not before: a
            // connection that has not logged in holds no large buffer).
            (link, resumed) = await Link.AcceptAsync(socket, _linkOptions, _logger, token, tls, refusePlain,
                _authenticator, clientCertificate, tls is null ? [] : _channelBinding, Sessions, () =>
                {
                    coalescing?.Coalesce = true;
                    // A user logged in: the pending caps are for connections that have not, so none evicts it now.
                    pending.LoggedIn = _pending.Remove(pending);
                }).ConfigureAwait(false);
        }
        catch (Exception) when (pending.Evicted || _stop.IsCancellationRequested)
        {
            // Closed under its handshake to make room (logged then), or the server stops: whatever it threw, no line.
            abort = true;
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.AuthenticationFailed)
        {
            // logged by the authenticator, with the failure count of the source
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.PlainLinkRefused)
        {
            EngineLog.HandshakeRefused(_logger, pending.Peer, ex.Code, ex.Message);
        }
        catch (AuthenticationException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, pending.Peer, ProtocolErrorCode.HandshakeFailed, "TLS: " + ex.Message);
        }
        catch (ProtocolException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, pending.Peer, ex.Code, ex.Message);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            abort = true;
            EngineLog.HandshakeRefused(_logger, pending.Peer, ProtocolErrorCode.HandshakeFailed, pending.Handshake.IsCancellationRequested
                ? $"no login within {_settings.HandshakeTimeout.TotalSeconds:0.#} s of the connection"
                : ex.Message);
        }
        catch (Exception ex)
        {
            // Not expected; never an unobserved task, never a connection left open.
            abort = true;
            AcceptorLog.HandshakeCrashed(_logger, pending.Peer, ex);
        }
        finally
        {
            // Out of the pending table first: from here on nothing evicts it. False: it was evicted (or the server is
            // stopping) and its socket is being aborted by whoever took it out.
            var ours = pending.LoggedIn || _pending.Remove(pending);
            pending.Handshake.Dispose();
            if (link is null || !ours)
            {
                if (link is not null && !resumed)
                {
                    await link.CloseAsync(ProtocolErrorCode.Shutdown, "closed before its login completed").ConfigureAwait(false);
                    link = null;
                }
                // A GoAway sent (plain refused, failed login, bad version) leaves with a normal close; the rest with a reset.
                tls?.Dispose();
                if (abort)
                {
                    PendingLink.AbortSocket(socket);
                }
                else
                {
                    socket.Dispose();
                }
            }
        }
        if (link is null || resumed)
        {
            return; // a resumed session runs on already, among the links it always was
        }
        lock (_handOver)
        {
            if (!_stopping)
            {
                _accepted(link);
                return;
            }
        }
        await link.CloseAsync(ProtocolErrorCode.Shutdown, "the server is stopping").ConfigureAwait(false);
    }
}

internal static partial class AcceptorLog
{
    // Event ids: Diagnostics/EventIds.cs (links, 100-199; this helper's block 104-129).
    [LoggerMessage(EventId = EventIds.PendingLinkRefused, Level = LogLevel.Warning,
        Message = "Link from {Peer} closed at once: {Source} already has {Max} connections that have not logged in (MaxPendingLinksPerSource)")]
    public static partial void PendingRefused(ILogger logger, string peer, string source, int max);

    [LoggerMessage(EventId = EventIds.PendingLinkEvicted, Level = LogLevel.Warning,
        Message = "Link from {Peer} closed before its login, {AgeMs} ms after it connected: {Max} connections had not logged in (MaxPendingLinks), and it was the oldest")]
    public static partial void PendingEvicted(ILogger logger, string peer, int max, long ageMs);

    [LoggerMessage(EventId = EventIds.AcceptFailing, Level = LogLevel.Error,
        Message = "Accepting links fails ({Error}: {Detail}){Hint}; trying again with a back-off of up to {MaxDelayMs} ms")]
    public static partial void AcceptFailing(ILogger logger, SocketError error, string detail, string hint, double maxDelayMs);

    [LoggerMessage(EventId = EventIds.AcceptRecovered, Level = LogLevel.Information,
        Message = "Accepting links again, after {Failures} failed accepts over {Seconds} s")]
    public static partial void AcceptRecovered(ILogger logger, long failures, double seconds);

    [LoggerMessage(EventId = EventIds.LinkHandshakeCrashed, Level = LogLevel.Error, Message = "Link from {Peer}: the handshake failed unexpectedly; connection closed")]
    public static partial void HandshakeCrashed(ILogger logger, string peer, Exception exception);
}

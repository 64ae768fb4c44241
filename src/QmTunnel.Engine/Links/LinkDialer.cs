using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Dials one link to a server: TCP, TLS for qmt:// (the certificate checked against the pin, recorded only after a
/// login over it succeeded), the handshake and login, and a session that resumes by itself (its <see cref="Link.Reconnect"/>
/// does all of it again and Resume). Also the login query (salt and iterations of a user, no login). It keeps nothing:
/// the <see cref="LinkPool"/> shares the links it dials.
/// </summary>
public static class LinkDialer
{
    /// <summary>
    /// Asks <paramref name="hop"/> for the salt and PBKDF2 iterations it gives <paramref name="user"/> (a handshake up to
    /// the challenge; the certificate is pinned as for a link). Errors as <see cref="GetAsync"/>.
    /// </summary>
    public static async Task<(byte[] Salt, int Iterations)> QueryLoginAsync(EndpointUri hop, string user, LinkOptions options, Security.PeerCertificatePolicy? certificates,
        TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(connectTimeout + options.HandshakeTimeout);
        using var socket = await ConnectAsync(hop, connectTimeout, timeout.Token).ConfigureAwait(false);
        SslStream? tls = null;
        try
        {
            if (hop.Scheme == EndpointScheme.Qmt)
            {
                // A login query logs in to nothing: a server seen for the first time is not pinned by it.
                (tls, _, _) = await AuthenticateAsync(socket, hop, null, certificates ?? throw new InvalidOperationException("no certificate policy for TLS links"), timeout.Token).ConfigureAwait(false);
            }
            return await Link.QueryLoginParametersAsync(socket, options, user, timeout.Token, tls).ConfigureAwait(false);
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.PlainLinkRefused)
        {
            throw new QmTunnelException(ErrorIds.PlainLinkRefused, QmErrorKind.SecurityError, hop.ToString(), $"{hop.Address} refused an unencrypted link: {ex.Message}", ex);
        }
        catch (Exception ex) when (ex is ProtocolException or SocketException or IOException or OperationCanceledException or AuthenticationException)
        {
            throw new QmTunnelException(ErrorIds.HopHandshakeFailed, QmErrorKind.ProtocolError, hop.ToString(),
                $"{hop} answered, but not as a qmTunnel server of a compatible version ({ex.Message}). Check the address and the server's version.", ex);
        }
        finally
        {
            tls?.Dispose();
        }
    }

    internal static async Task<Socket> ConnectAsync(EndpointUri hop, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(connectTimeout);
        try
        {
            await socket.ConnectAsync(hop.Host, hop.Port, timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            var why = ex is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : $"no answer within {connectTimeout.TotalSeconds:0.#} s";
            throw new QmTunnelException(ErrorIds.HopConnectFailed, QmErrorKind.ConnectionError, hop.ToString(),
                $"Cannot reach the tunnel server {hop} ({why}). Check that a qmTunnel server runs there (Start-QmTunnelServer) and that the port is open.", ex);
        }
    }

    /// <summary>
    /// Dials one link, logged in as <paramref name="login"/>, and starts it (the pool's links, and management sessions).
    /// With a resumable <paramref name="session"/> (the default), a lost connection is redialed with the session's backoff
    /// and the session resumed on the new one. Errors: HopConnectFailed, HopHandshakeFailed, AuthenticationFailed,
    /// CertificateMismatch, PlainLinkRefused, CredentialOnPlainLink.
    /// </summary>
    public static async Task<Link> DialAsync(EndpointUri hop, LinkLogin login, LinkOptions options, ILogger logger, Security.PeerCertificatePolicy certificates,
        TimeSpan connectTimeout, CancellationToken cancellationToken, LinkSessionSettings? session = null, Action<Link>? prepare = null)
    {
        // The hop's compression is asked for in the Hello; the link keeps what was agreed.
        var settings = (session ?? LinkSessionSettings.For(hop.Timing, LinkSessionSettings.DefaultFailureTolerance)) with { Compression = hop.Compression };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(connectTimeout);
        var (socket, tls, channelBinding, pin) = await OpenAsync(hop, login, certificates, connectTimeout, timeout.Token).ConfigureAwait(false);
        Link link;
        try
        {
            link = await Link.HandshakeAsDialerAsync(socket, options, logger, timeout.Token, tls, login, channelBinding, hop.Address, settings).ConfigureAwait(false);
            certificates.Record(pin); // logged in over this certificate: now it is pinned
        }
        catch (Exception ex)
        {
            tls?.Dispose();
            socket.Dispose();
            throw Translate(ex, hop, login);
        }
        if (link.Session.Resumable)
        {
            link.Reconnect = async (session, ct) =>
            {
                var (s, t, binding, _) = await OpenAsync(hop, login, certificates, settings.Timing.ConnectTimeout, ct).ConfigureAwait(false);
                try
                {
                    await session.ResumeOnAsync(s, t, login, binding, hop.Address, ct).ConfigureAwait(false);
                }
                catch
                {
                    t?.Dispose();
                    s.Dispose();
                    throw;
                }
            };
        }
        prepare?.Invoke(link); // before the loops start: a stream the peer opens at once finds its router
        link.Start();
        LinkLog.Up(logger, link.RemoteEndPoint, link.Peer.ServerName, link.HandshakeRoundTrip.TotalMilliseconds);
        return link;
    }

    /// <summary>TCP, then TLS for qmt:// (the certificate checked against the pin). Errors as <see cref="DialAsync"/>.</summary>
    private static async Task<(Socket, SslStream?, byte[], Security.PendingPin?)> OpenAsync(EndpointUri hop, LinkLogin login, Security.PeerCertificatePolicy certificates,
        TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        var socket = await ConnectAsync(hop, connectTimeout, cancellationToken).ConfigureAwait(false);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        SslStream? tls = null;
        try
        {
            byte[] channelBinding = [];
            Security.PendingPin? pin = null;
            if (hop.Scheme == EndpointScheme.Qmt)
            {
                (tls, channelBinding, pin) = await AuthenticateAsync(socket, hop, (login as CertificateLogin)?.Certificate, certificates, cancellationToken).ConfigureAwait(false);
            }
            else if (login is CertificateLogin)
            {
                throw new QmTunnelException(ErrorIds.CredentialOnPlainLink, QmErrorKind.SecurityError, hop.ToString(),
                    $"A client certificate login needs TLS, and {hop} is an unencrypted link: write the hop as qmt://{hop.HostPort}.");
            }
            return (socket, tls, channelBinding, pin);
        }
        catch (Exception ex)
        {
            tls?.Dispose();
            socket.Dispose();
            throw Translate(ex, hop, login);
        }
    }

    /// <summary>The error a caller of <see cref="DialAsync"/> sees for what a dial threw.</summary>
    private static Exception Translate(Exception ex, EndpointUri hop, LinkLogin login) => ex switch
    {
        QmTunnelException => ex,
        ProtocolException { Code: ProtocolErrorCode.AuthenticationFailed } => new QmTunnelException(ErrorIds.AuthenticationFailed, QmErrorKind.AuthenticationError, hop.ToString(),
            $"{hop.Address} refused the login of '{login.User}': {ex.Message.Replace("the server refused the link: ", "", StringComparison.Ordinal)}", ex),
        ProtocolException { Code: ProtocolErrorCode.PlainLinkRefused } => new QmTunnelException(ErrorIds.PlainLinkRefused, QmErrorKind.SecurityError, hop.ToString(),
            $"{hop} refused an unencrypted link: {ex.Message.Replace("the server refused the link: ", "", StringComparison.Ordinal)}", ex),
        ProtocolException or SocketException or IOException or OperationCanceledException or AuthenticationException => new QmTunnelException(ErrorIds.HopHandshakeFailed,
            QmErrorKind.ProtocolError, hop.ToString(),
            $"{hop} answered, but not as a qmTunnel server of a compatible version ({ex.Message}). Check the address and the server's version.", ex),
        _ => ex,
    };

    /// <summary>
    /// TLS 1.3 (1.2 at least) to the hop; the certificate is accepted by pin, not by name or chain. Returns the stream,
    /// the channel binding of the server certificate (for password logins) and, for a server seen the first time, the
    /// pin to record once the login succeeded.
    /// </summary>
    private static async Task<(SslStream, byte[], Security.PendingPin?)> AuthenticateAsync(Socket socket, EndpointUri hop, X509Certificate2? clientCertificate,
        Security.PeerCertificatePolicy certificates, CancellationToken cancellationToken)
    {
        X509Certificate2? seen = null;
        var coalescing = new CoalescingStream(new NetworkStream(socket, ownsSocket: false));
        var tls = new SslStream(coalescing, leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = hop.Host,
                EnabledSslProtocols = hop.MinimumTls == TlsVersion.Tls13 ? SslProtocols.Tls13 : Security.TlsDefaults.Protocols,
                CipherSuitesPolicy = Security.TlsDefaults.For(hop.Ciphers),
                ClientCertificates = clientCertificate is null ? null : [clientCertificate],
                LocalCertificateSelectionCallback = clientCertificate is null ? null : (_, _, _, _, _) => clientCertificate,
                // Pinning replaces name and chain checks: remember the certificate, decide after the handshake.
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    seen = certificate is null ? null : new X509Certificate2(certificate);
                    return certificate is not null;
                },
            }, cancellationToken).ConfigureAwait(false);
            coalescing.Coalesce = true; // TLS handshake done: from now on TLS records are sent per flushed batch
            var thumbprint = Security.ServerCertificate.Thumbprint(seen!);
            var pin = certificates.Check($"{hop.Host.ToLowerInvariant()}:{hop.Port}", hop.Address, thumbprint, expected: hop.CertificateThumbprint);
            return (tls, Security.PasswordChallenge.TlsServerEndPoint(seen!), pin);
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}

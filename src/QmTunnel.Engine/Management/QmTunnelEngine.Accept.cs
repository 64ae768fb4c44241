using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tunnels;

namespace QmTunnel.Engine.Management;

/// <summary>The accept side: the listening socket, TLS detection, the link handshake and login.</summary>
public sealed partial class QmTunnelEngine
{
    private Socket Bind() => Listener.Open(
        new IPEndPoint(IPAddress.Parse(Options.ListenAddress), Options.Port), 512, $"{Options.ListenAddress}:{Options.Port}",
        "The qmTunnel server", "Stop the other qmTunnel server or program, or start this server with -Port.",
        "Use an address of this host with -ListenAddress.");

    private async Task AcceptLoopAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            _ = AcceptLinkAsync(socket, cancellationToken);
        }
    }

    private async Task AcceptLinkAsync(Socket socket, CancellationToken cancellationToken)
    {
        socket.NoDelay = true;
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        Link link;
        SslStream? tls = null;
        try
        {
            // One port for both: a TLS ClientHello starts with 0x16, a plain link with the preamble "QMTL".
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Options.HandshakeTimeout);
            var first = new byte[1];
            var n = await socket.ReceiveAsync(first, SocketFlags.Peek, timeout.Token).ConfigureAwait(false);
            if (n == 0)
            {
                socket.Dispose();
                return;
            }
            string? refusePlain = null;
            if (first[0] == TlsHandshakeRecord)
            {
                var coalescing = new CoalescingStream(new NetworkStream(socket, ownsSocket: false));
                tls = new SslStream(coalescing, leaveInnerStreamOpen: false);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = _certificateContext,
                    EnabledSslProtocols = TlsDefaults.Protocols,
                    CipherSuitesPolicy = TlsDefaults.CipherSuites,
                    // Asked for, never required: a client certificate is one way to log in (mapped to a user by thumbprint).
                    ClientCertificateRequired = true,
                    RemoteCertificateValidationCallback = (_, _, _, _) => true,
                }, timeout.Token).ConfigureAwait(false);
                coalescing.Coalesce = true; // TLS handshake done: from now on TLS records are sent per flushed batch
            }
            else if (!_allowPlainLinks)
            {
                Interlocked.Increment(ref _plainRefused);
                refusePlain = $"this server accepts only TLS links: dial qmt://{Options.ServerName}:{Port}, or allow plain links there (Set-QmTunnelServerConfig -AllowPlainLinks, or start it with -AllowPlainLinks) to accept qmt+plain://";
            }
            var clientCertificate = tls?.RemoteCertificate is { } remote ? remote as X509Certificate2 ?? new X509Certificate2(remote) : null;
            var channelBinding = tls is null ? [] : PasswordChallenge.TlsServerEndPoint(_certificate!);
            link = await Link.HandshakeAsAcceptorAsync(socket, _linkOptions, _logger, cancellationToken, tls, refusePlain,
                _authenticator, clientCertificate, channelBinding).ConfigureAwait(false);
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.AuthenticationFailed)
        {
            // logged by the authenticator, with the failure count of the source
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.PlainLinkRefused)
        {
            EngineLog.HandshakeRefused(_logger, peer, ex.Code, ex.Message);
            socket.Dispose();
            return;
        }
        catch (AuthenticationException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, peer, ProtocolErrorCode.HandshakeFailed, "TLS: " + ex.Message);
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        catch (ProtocolException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, peer, ex.Code, ex.Message);
            socket.Dispose();
            return;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            EngineLog.HandshakeRefused(_logger, peer, ProtocolErrorCode.HandshakeFailed, ex.Message);
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        link.StreamOpened = (stream, open) => OpenStreamAsync(link, stream, open, cancellationToken);
        link.ProtocolError += _ => Interlocked.Increment(ref _protocolErrors);
        lock (_inbound)
        {
            _inbound.Add(link);
        }
        _ = link.Completion.ContinueWith(_ =>
        {
            lock (_inbound)
            {
                _inbound.Remove(link);
            }
        }, TaskScheduler.Default);
        link.Start();
        LinkLog.Up(_logger, peer, link.Peer.ServerName, 0);
    }
}

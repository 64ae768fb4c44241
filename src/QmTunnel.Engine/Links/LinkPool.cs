using System.Collections.Concurrent;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Outgoing links of a server, one per next-hop server, shared by every tunnel that passes that hop. A dead link is
/// replaced on the next request. It does not reconnect by itself (permanent tunnels and resume come later) and does
/// not carry streams: callers open them on the returned <see cref="Link"/>.
/// </summary>
public sealed class LinkPool(LinkOptions options, ILogger logger, Security.PeerCertificatePolicy? certificates = null) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task<Link>> _links = new(StringComparer.OrdinalIgnoreCase);
    private readonly CancellationTokenSource _disposed = new();

    /// <summary>Number of links that are up.</summary>
    public int Count => _links.Values.Count(t => t.IsCompletedSuccessfully && !t.Result.IsClosed);

    /// <summary>The live link to <paramref name="hop"/>, if there is one (no dialing).</summary>
    public Link? TryGet(EndpointUri hop) =>
        _links.TryGetValue(hop.ToString(), out var task) && task.IsCompletedSuccessfully && !task.Result.IsClosed ? task.Result : null;

    public async Task<Link> GetAsync(EndpointUri hop, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        var key = hop.ToString();
        while (true)
        {
            var task = _links.GetOrAdd(key, _ => DialAsync(hop, connectTimeout));
            Link link;
            try
            {
                link = await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (QmTunnelException)
            {
                _links.TryRemove(new KeyValuePair<string, Task<Link>>(key, task));
                throw;
            }
            if (!link.IsClosed)
            {
                return link;
            }
            _links.TryRemove(new KeyValuePair<string, Task<Link>>(key, task));
        }
    }

    private async Task<Link> DialAsync(EndpointUri hop, TimeSpan connectTimeout)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token);
        timeout.CancelAfter(connectTimeout);
        try
        {
            await socket.ConnectAsync(hop.Host, hop.Port, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            var why = ex is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : $"no answer within {connectTimeout.TotalSeconds:0.#} s";
            throw new QmTunnelException(ErrorIds.HopConnectFailed, QmErrorKind.ConnectionError, hop.ToString(),
                $"Cannot reach the tunnel server {hop} ({why}). Check that a qmTunnel server runs there (Start-QmTunnelServer) and that the port is open.", ex);
        }
        Link link;
        SslStream? tls = null;
        try
        {
            if (hop.Scheme == EndpointScheme.Qmt)
            {
                tls = await AuthenticateAsync(socket, hop, timeout.Token).ConfigureAwait(false);
            }
            link = await Link.HandshakeAsDialerAsync(socket, options, logger, timeout.Token, tls).ConfigureAwait(false);
        }
        catch (QmTunnelException)
        {
            tls?.Dispose();
            socket.Dispose();
            throw;
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.PlainLinkRefused)
        {
            socket.Dispose();
            throw new QmTunnelException(ErrorIds.PlainLinkRefused, QmErrorKind.SecurityError, hop.ToString(),
                $"{hop} refused an unencrypted link: {ex.Message.Replace("the server refused the link: ", "", StringComparison.Ordinal)}", ex);
        }
        catch (Exception ex) when (ex is ProtocolException or SocketException or IOException or OperationCanceledException or AuthenticationException)
        {
            tls?.Dispose();
            socket.Dispose();
            throw new QmTunnelException(ErrorIds.HopHandshakeFailed, QmErrorKind.ProtocolError, hop.ToString(),
                $"{hop} answered, but not as a qmTunnel server of a compatible version ({ex.Message}). Check the address and the server's version.", ex);
        }
        link.Start();
        LinkLog.Up(logger, link.RemoteEndPoint, link.Peer.ServerName, link.HandshakeRoundTrip.TotalMilliseconds);
        return link;
    }

    /// <summary>TLS 1.3 (1.2 at least) to the hop; the certificate is accepted by pin, not by name or chain.</summary>
    private async Task<SslStream> AuthenticateAsync(Socket socket, EndpointUri hop, CancellationToken cancellationToken)
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
                CipherSuitesPolicy = Security.TlsDefaults.CipherSuites,
                // Pinning replaces name and chain checks: remember the certificate, decide after the handshake.
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    seen = certificate is null ? null : new X509Certificate2(certificate);
                    return certificate is not null;
                },
            }, cancellationToken).ConfigureAwait(false);
            coalescing.Coalesce = true; // TLS handshake done: from now on TLS records are sent per flushed batch
            var thumbprint = Security.ServerCertificate.Thumbprint(seen!);
            (certificates ?? throw new InvalidOperationException("no certificate policy for TLS links"))
                .Check($"{hop.Host.ToLowerInvariant()}:{hop.Port}", hop.Address, thumbprint, expected: hop.CertificateThumbprint);
            return tls;
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed.Cancel();
        var closing = new List<Task>();
        foreach (var task in _links.Values)
        {
            if (task.IsCompletedSuccessfully)
            {
                closing.Add(task.Result.CloseAsync(ProtocolErrorCode.Shutdown, "the server is stopping"));
            }
        }
        _links.Clear();
        await Task.WhenAll(closing).ConfigureAwait(false);
    }
}

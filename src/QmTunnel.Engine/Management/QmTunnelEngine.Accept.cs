using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Tunnels;

namespace QmTunnel.Engine.Management;

/// <summary>
/// The accept side, wired: the listening socket, and a <see cref="LinkAcceptor"/> (accept loop, pending-connection
/// caps, TLS, handshake, login) whose logged-in links carry their streams to this engine.
/// </summary>
public sealed partial class QmTunnelEngine
{
    private LinkAcceptor? _acceptor;

    /// <summary>The accept side while the server runs (tests look at its pending connections).</summary>
    internal LinkAcceptor? Acceptor => _acceptor;

    private Socket Bind() => Listener.Open(
        new IPEndPoint(IPAddress.Parse(Options.ListenAddress), Options.Port), 512, $"{Options.ListenAddress}:{Options.Port}",
        "The qmTunnel server", "Stop the other qmTunnel server or program, or start this server with -Port.",
        "Use an address of this host with -ListenAddress.");

    private LinkAcceptor CreateAcceptor(Socket listener, CancellationToken shutdown) => new(
        listener.AcceptAsync,
        new LinkAcceptorSettings
        {
            MaxPendingLinks = Options.MaxPendingLinks,
            MaxPendingLinksPerSource = Options.MaxPendingLinksPerSource,
            HandshakeTimeout = Options.HandshakeTimeout,
        },
        _linkOptions, _authenticator!, (_certificate!, _certificateContext!),
        () => _allowPlainLinks ? null : $"this server accepts only TLS links: dial qmt://{Options.ServerName}:{Port}, or allow plain links there (Set-QmTunnelServerConfig -AllowPlainLinks, or start it with -AllowPlainLinks) to accept qmt+plain://",
        link => OnLinkAccepted(link, shutdown), _logger, _time);

    /// <summary>A logged-in link from the acceptor: its streams go to the <see cref="StreamRouter"/>; it counts among the inbound links.</summary>
    private void OnLinkAccepted(Link link, CancellationToken shutdown)
    {
        _router!.Install(link, shutdown);
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
        LinkLog.Up(_logger, link.RemoteEndPoint, link.Peer.ServerName, 0);
    }

    /// <summary>Stops the acceptor (its pending accept is cancelled), closes the listening socket, keeps the acceptor's counters.</summary>
    private async Task StopAcceptingAsync()
    {
        if (_acceptor is { } acceptor)
        {
            await acceptor.StopAsync().ConfigureAwait(false);
            Interlocked.Add(ref _protocolErrors, acceptor.ProtocolErrors);
            Interlocked.Add(ref _plainRefused, acceptor.PlainLinksRefused);
            _acceptor = null;
        }
        _listener?.Dispose();
    }
}

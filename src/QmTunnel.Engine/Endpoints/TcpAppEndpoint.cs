using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// <c>tcp://host:port</c>: a TCP listener (a host name is resolved once, at bind, to its first address) and a TCP
/// connect with the tunnel's socket options (an address connects directly; only a name goes through the resolver).
/// <c>socks5://</c> listens the same way (its handler then reads each client's request).
/// </summary>
internal sealed class TcpAppEndpoint(EndpointScheme scheme) : AppEndpoint
{
    public static readonly TcpAppEndpoint Instance = new(EndpointScheme.Tcp);
    public static readonly TcpAppEndpoint Socks5 = new(EndpointScheme.Socks5);

    public override async Task<IAppListener> ListenAsync(EndpointUri listen, AppListenOptions options, CancellationToken cancellationToken)
    {
        if (!IPAddress.TryParse(listen.Host, out var address))
        {
            try
            {
                address = (await Dns.GetHostAddressesAsync(listen.Host, cancellationToken).ConfigureAwait(false)).First();
            }
            catch (Exception ex) when (ex is SocketException or InvalidOperationException)
            {
                throw new QmTunnelException(ErrorIds.BindFailed, QmErrorKind.InvalidArgument, listen.ToString(),
                    $"{options.Subject} cannot listen on {listen}: the name '{listen.Host}' does not resolve. Use an IP address of this host.", ex);
            }
        }
        var socket = Listener.Open(new IPEndPoint(address, listen.Port), options.Backlog, listen.ToString(), options.Subject, options.InUseFix, options.OtherFix);
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        return new SocketListener(socket, new EndpointUri(scheme, bound.Address.ToString(), bound.Port), s => s.RemoteEndPoint?.ToString() ?? "?");
    }

    public override async Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            socket.NoDelay = (options & OpenOptions.NoDelay) != 0;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, (options & OpenOptions.KeepAlive) != 0);
            if (IPAddress.TryParse(target.Host, out var address))
            {
                await socket.ConnectAsync(new IPEndPoint(address, target.Port), deadline.Token).ConfigureAwait(false);
            }
            else
            {
                await socket.ConnectAsync(target.Host, target.Port, deadline.Token).ConfigureAwait(false);
            }
            return (new SocketAppConnection(socket, socket.RemoteEndPoint?.ToString() ?? target.HostPort), null);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return (null, Failure(ex, timeout, cancellationToken));
        }
    }
}

/// <summary>A listening stream socket (TCP or Unix) handing out <see cref="SocketAppConnection"/>s.</summary>
internal class SocketListener(Socket socket, EndpointUri bound, Func<Socket, string> remote) : IAppListener
{
    public Socket Socket { get; } = socket;

    public EndpointUri Bound { get; } = bound;

    public async ValueTask<AppConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        Socket client;
        try
        {
            client = await Socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
        {
            throw new AppAcceptException($"a client went away before it was accepted: {ex.SocketErrorCode}", transient: true, ex);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.OperationAborted or SocketError.Interrupted)
        {
            throw new ObjectDisposedException(nameof(SocketListener), ex);
        }
        catch (SocketException ex)
        {
            throw new AppAcceptException($"accepting a connection failed: {ex.SocketErrorCode}", transient: false, ex);
        }
        return new SocketAppConnection(client, remote(client));
    }

    public virtual void Dispose() => Socket.Dispose();
}

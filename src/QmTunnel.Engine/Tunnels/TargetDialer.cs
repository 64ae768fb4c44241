using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Opens the application server's connection at the last server of a chain: a TCP connect with the tunnel's socket
/// options within its connect timeout (an address connects directly; only a name goes through the resolver). It does
/// not decide whether the tunnel may reach the target (the stream router's admission does) and does not relay.
/// </summary>
public static class TargetDialer
{
    /// <summary>
    /// The connected socket, or null and why not (refused, unreachable, timed out, name not resolved, or the server is
    /// stopping when <paramref name="cancellationToken"/> fires).
    /// </summary>
    public static async Task<(Socket? Socket, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
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
            return (socket, null);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return (null, ex is SocketException se
                ? $"{se.SocketErrorCode}: {se.Message}"
                : cancellationToken.IsCancellationRequested ? "the server is stopping" : $"no answer within {timeout.TotalMilliseconds:0} ms");
        }
    }
}

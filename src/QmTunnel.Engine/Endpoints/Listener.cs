using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// Opens a listening TCP socket, turning bind failures into the errors users act on: PortInUse (the port is taken)
/// or BindFailed (any other reason), each naming what could not listen and how to fix it. It does not accept.
/// </summary>
internal static class Listener
{
    public static Socket Open(IPEndPoint endpoint, int backlog, object target, string subject, string inUseFix, string otherFix)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(endpoint);
            socket.Listen(backlog);
            return socket;
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            if (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                throw new QmTunnelException(ErrorIds.PortInUse, QmErrorKind.ResourceBusy, target,
                    $"{subject} cannot listen on {target}: the port is in use by another program. {inUseFix}", ex);
            }
            throw new QmTunnelException(ErrorIds.BindFailed, QmErrorKind.ResourceUnavailable, target,
                $"{subject} cannot listen on {target} ({ex.SocketErrorCode}: {ex.Message}). {otherFix}", ex);
        }
    }
}

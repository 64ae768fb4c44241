using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Opens the application server's connection at the last server of a chain (or at a reverse tunnel's owner), through the
/// target scheme's <see cref="AppEndpoint"/>, with the tunnel's socket options within its connect timeout. It does not
/// decide whether the tunnel may reach the target (the stream router's admission does) and does not relay.
/// </summary>
public static class TargetDialer
{
    /// <summary>
    /// The connection, or null and why not (refused, unreachable, timed out, name not resolved, a scheme this server cannot
    /// dial, or the server is stopping when <paramref name="cancellationToken"/> fires).
    /// </summary>
    public static Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        AppEndpoint endpoint;
        try
        {
            endpoint = AppEndpoint.For(target.Scheme);
        }
        catch (Errors.QmTunnelException ex)
        {
            return Task.FromResult<(AppConnection?, string?)>((null, ex.Message));
        }
        return endpoint.ConnectAsync(target, options, timeout, cancellationToken);
    }

    /// <summary>
    /// The Reset code of a failed dial, from its reason (<see cref="AppEndpoint"/>'s failure text starts with the socket
    /// error's name, or says no answer came in time): TargetRefused, TargetHostUnreachable (a name that does not resolve
    /// included), TargetNetworkUnreachable, TargetTimedOut; TargetConnectFailed for anything else. A SOCKS5 listener
    /// answers its client with the matching reply code (docs/protocol.md, "Version 4: target failures").
    /// </summary>
    public static ProtocolErrorCode CodeFor(string? failure)
    {
        if (failure is null)
        {
            return ProtocolErrorCode.TargetConnectFailed;
        }
        if (failure.StartsWith(AppEndpoint.NoAnswerText, StringComparison.Ordinal))
        {
            return ProtocolErrorCode.TargetTimedOut;
        }
        var colon = failure.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || !Enum.TryParse<System.Net.Sockets.SocketError>(failure.AsSpan(0, colon), ignoreCase: false, out var error))
        {
            return ProtocolErrorCode.TargetConnectFailed;
        }
        return error switch
        {
            System.Net.Sockets.SocketError.ConnectionRefused => ProtocolErrorCode.TargetRefused,
            System.Net.Sockets.SocketError.HostUnreachable or System.Net.Sockets.SocketError.HostDown or System.Net.Sockets.SocketError.HostNotFound
                or System.Net.Sockets.SocketError.NoData or System.Net.Sockets.SocketError.TryAgain => ProtocolErrorCode.TargetHostUnreachable,
            System.Net.Sockets.SocketError.NetworkUnreachable or System.Net.Sockets.SocketError.NetworkDown => ProtocolErrorCode.TargetNetworkUnreachable,
            System.Net.Sockets.SocketError.TimedOut => ProtocolErrorCode.TargetTimedOut,
            _ => ProtocolErrorCode.TargetConnectFailed,
        };
    }
}

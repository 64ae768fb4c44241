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
}

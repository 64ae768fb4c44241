using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

public sealed partial class QmTunnelEngine
{
    /// <summary>
    /// A RemoteToLocal tunnel's ends: its far listener relays byte streams (tcp://, unix:///, pipe://), so a datagram or
    /// SOCKS end is refused (EndpointUriInvalid, naming the end and what to use).
    /// </summary>
    private static void CheckReverseEnds(TunnelProfile profile, Endpoints.EndpointUri listen, Endpoints.EndpointUri? target)
    {
        if (profile.Direction != TunnelDirection.RemoteToLocal)
        {
            return;
        }
        foreach (var end in target is null ? [listen] : new[] { listen, target })
        {
            if (end.Scheme == Endpoints.EndpointScheme.Socks5)
            {
                throw new QmTunnelException(ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, end.ToString(),
                    $"Tunnel '{profile.Name}': a RemoteToLocal tunnel has a fixed target at its owner; a socks5:// listener (each client naming its target) is for LocalToRemote tunnels.");
            }
        }
    }
}

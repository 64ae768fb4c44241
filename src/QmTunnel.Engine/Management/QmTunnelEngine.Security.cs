using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

public sealed partial class QmTunnelEngine
{
    /// <summary>The certificate pins of the servers this server has linked to over TLS (trust on first use).</summary>
    public IReadOnlyList<KnownServer> GetKnownServers()
    {
        _gate.Wait();
        try
        {
            EnsureRunning();
            return _store!.GetKnownServers();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Forgets the pin of <paramref name="server"/> (<c>host:port</c>), so the next link trusts and records the
    /// certificate it then sees. KnownServerNotFound when there is none.
    /// </summary>
    public void RemoveKnownServer(string server)
    {
        ArgumentNullException.ThrowIfNull(server);
        _gate.Wait();
        try
        {
            EnsureRunning();
            if (!_store!.RemoveKnownServer(server))
            {
                throw new QmTunnelException(ErrorIds.KnownServerNotFound, QmErrorKind.ObjectNotFound, server,
                    $"No certificate is pinned for '{server}'. List the pins with Get-QmTunnelKnownServer (names are host:port).");
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}

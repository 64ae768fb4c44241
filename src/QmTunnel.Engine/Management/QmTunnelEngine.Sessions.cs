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

/// <summary>Accepted links as management sessions, and closing the links of a user.</summary>
public sealed partial class QmTunnelEngine
{
    private readonly HashSet<Link> _managementLinks = [];
    private volatile int _maxManagementSessions = DefaultMaxManagementSessions;

    /// <summary>Management sessions open now: accepted links that have made a management request.</summary>
    public int ManagementSessionCount
    {
        get
        {
            lock (_managementLinks)
            {
                return _managementLinks.Count;
            }
        }
    }

    /// <summary>
    /// A link becomes a management session with its first management request; one over MaxManagementSessions is
    /// refused. It stops counting when it closes.
    /// </summary>
    private bool AdmitManagementLink(Link link)
    {
        lock (_managementLinks)
        {
            if (_managementLinks.Contains(link))
            {
                return true;
            }
            if (_managementLinks.Count >= _maxManagementSessions)
            {
                return false;
            }
            _managementLinks.Add(link);
        }
        _ = link.Completion.ContinueWith(_ =>
        {
            lock (_managementLinks)
            {
                _managementLinks.Remove(link);
            }
        }, TaskScheduler.Default);
        return true;
    }

    /// <summary>Closes the accepted links logged in as <paramref name="user"/> (disabled or removed): its streams end now.</summary>
    private void CloseLinksOf(string user, string reason)
    {
        Link[] links;
        lock (_inbound)
        {
            links = _inbound.Where(l => l.Principal is { } p && string.Equals(p.User.Name, user, StringComparison.OrdinalIgnoreCase)).ToArray();
        }
        foreach (var link in links)
        {
            _ = link.CloseAsync(ProtocolErrorCode.AuthenticationFailed, reason);
        }
    }

    /// <summary>The TLS cipher suites of the links this server accepted (tests).</summary>
    internal IReadOnlyList<string?> InboundCipherSuites()
    {
        lock (_inbound)
        {
            return _inbound.Select(l => l.TlsCipherSuite).ToList();
        }
    }
}

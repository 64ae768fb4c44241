using System.Globalization;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Security;

/// <summary>
/// What a logged-in user may build: the right to create tunnels and a matching allow-rule of the group, checked by
/// every server a tunnel passes (from the fields of its Open) and by the owning server when the tunnel is created.
/// Pure: it reads no store and logs nothing.
/// </summary>
public static class AccessControl
{
    /// <summary>The tunnel an Open describes, in allow-rule terms (LocalToRemote).</summary>
    public static TunnelRequest RequestFor(OpenMessage open)
    {
        var (bindHost, bindPort) = SplitHostPort(open.Listen);
        var target = EndpointUri.ParseApplication(open.Target, "Target");
        return new TunnelRequest
        {
            Direction = RuleDirection.LocalToRemote,
            BindHost = bindHost,
            BindPort = bindPort,
            Servers = open.Servers.Select(SplitHostPort).ToList(),
            TargetHost = target.Host,
            TargetPort = target.Port,
        };
    }

    /// <summary>The tunnel a profile describes, in allow-rule terms.</summary>
    public static TunnelRequest RequestFor(EndpointUri listen, IEnumerable<EndpointUri> via, EndpointUri target) => new()
    {
        Direction = RuleDirection.LocalToRemote,
        BindHost = listen.Host,
        BindPort = listen.Port,
        Servers = via.Select(h => (h.Host, h.Port)).ToList(),
        TargetHost = target.Host,
        TargetPort = target.Port,
    };

    /// <summary>Null when <paramref name="principal"/> may build <paramref name="request"/>; else why not, naming the rule set and the fix.</summary>
    public static string? Denial(SecurityPrincipal principal, TunnelRequest request, string serverName) =>
        Denial(principal, AllowRuleSet.For(principal.Group), request, serverName);

    /// <summary>As above, with the group's rules parsed once (<paramref name="rules"/> must be the principal's group's).</summary>
    public static string? Denial(SecurityPrincipal principal, AllowRuleSet rules, TunnelRequest request, string serverName)
    {
        if (!principal.CanCreateTunnels)
        {
            return $"{serverName}: user '{principal.User.Name}' of group '{principal.Group.Name}' lacks the right CreateTunnels needed for tunnel {request}. " +
                $"An administrator of {serverName} can grant it with Set-QmTunnelGroup {principal.Group.Name} -Rights.";
        }
        var decision = rules.Evaluate(request);
        return decision.Allowed ? null : $"{serverName}: user '{principal.User.Name}' refused by the allow-rules of group '{decision.GroupName}'. {decision.Reason}";
    }

    /// <summary>"host:port" (IPv6 in brackets) as written by <see cref="HostPort"/>.</summary>
    public static (string Host, int Port) SplitHostPort(string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"'{text}' is not host:port");
        }
        var host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        return (host, port);
    }

    public static string HostPort(string host, int port) =>
        (host.Contains(':', StringComparison.Ordinal) ? "[" + host + "]" : host) + ":" + port.ToString(CultureInfo.InvariantCulture);
}

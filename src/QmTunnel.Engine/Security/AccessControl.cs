using System.Globalization;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>
/// What a logged-in user may build: the right to create tunnels and a matching allow-rule of the group, checked by
/// every server a tunnel passes (from the fields of its Open) and by the owning server when the tunnel is created.
/// Pure: it reads no store and logs nothing.
/// </summary>
public static class AccessControl
{
    /// <summary>
    /// The tunnel an Open describes, in allow-rule terms: LocalToRemote, or RemoteToLocal when the Open says so
    /// (<see cref="OpenOptions.RemoteToLocal"/>: a reverse tunnel's Bind, and its Check and queries), whose bind
    /// host:port is the listener on the last server and whose target is reached from the owner. An empty target (a Hold,
    /// Check, AuthQuery or LinkInfo of a socks5:// tunnel, which has no fixed target) is <see cref="TunnelRequest.AnyTarget"/>:
    /// a stream that carries data (Tcp) always names its target, and a Tcp Open without one is refused as malformed.
    /// </summary>
    public static TunnelRequest RequestFor(OpenMessage open)
    {
        var (bindHost, bindPort) = SplitEnd(open.Listen);
        if (open.Target.Length == 0 && open.Protocol == StreamProtocol.Tcp)
        {
            throw new ProtocolException(ProtocolErrorCode.OpenRejected, "a Tcp stream's Open names no target");
        }
        var target = open.Target.Length == 0 ? null : EndpointUri.ParseTarget(open.Target, "Target");
        return new TunnelRequest
        {
            Direction = IsRemoteToLocal(open) ? RuleDirection.RemoteToLocal : RuleDirection.LocalToRemote,
            BindHost = bindHost,
            BindPort = bindPort,
            Servers = open.Servers.Select(SplitHostPort).ToList(),
            TargetHost = target is null ? string.Empty : RuleHost(target),
            TargetPort = target?.Port ?? 0,
            AnyTarget = target is null,
        };
    }

    /// <summary>Whether an Open describes a reverse (RemoteToLocal) tunnel.</summary>
    public static bool IsRemoteToLocal(OpenMessage open) => (open.Options & OpenOptions.RemoteToLocal) != 0;

    /// <summary>The tunnel a profile describes, in allow-rule terms; a null <paramref name="target"/> (socks5://) is <see cref="TunnelRequest.AnyTarget"/>.</summary>
    public static TunnelRequest RequestFor(EndpointUri listen, IEnumerable<EndpointUri> via, EndpointUri? target,
        RuleDirection direction = RuleDirection.LocalToRemote) => new()
    {
        Direction = direction,
        BindHost = RuleHost(listen),
        BindPort = listen.Port,
        Servers = via.Select(h => (h.Host, h.Port)).ToList(),
        TargetHost = target is null ? string.Empty : RuleHost(target),
        TargetPort = target?.Port ?? 0,
        AnyTarget = target is null,
    };

    /// <summary>An end as allow-rules see its host: the host, or for a path endpoint its URI (<c>unix:///run/app.sock</c>) with port 0.</summary>
    public static string RuleHost(EndpointUri end) => end.IsPath ? end.ToString() : end.Host;

    /// <summary>Whether an Open's listen text is a <c>udp://host:port</c> URI (a reverse UDP tunnel's far listener).</summary>
    public static bool IsUdpText(string text) => text.StartsWith("udp://", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether an Open's end text names a path endpoint (unix:// or pipe://) rather than host:port.</summary>
    public static bool IsPathText(string text) =>
        text.StartsWith("unix://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("pipe://", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// An Open's listen field as (host, port): host:port, or a path endpoint's URI and port 0. A claimed path is parsed
    /// as an endpoint is (no '..', no '//'; EndpointUriInvalid, an OpenRejected for the stream), so a rule matches it
    /// in its plain form only.
    /// </summary>
    private static (string Host, int Port) SplitEnd(string text) =>
        IsPathText(text) ? (RuleHost(EndpointUri.ParseApplication(text, "Listen")), 0) : SplitHostPort(IsUdpText(text) ? text["udp://".Length..] : text);

    /// <summary>
    /// The tunnel an Open describes as the receiving server can vouch for it, or why the Open is refused. A dialer may
    /// claim anything, so the receiver checks what it can see: (1) the route it is asked to dial must be exactly the
    /// rest of the chain the allow-rules are matched against (<see cref="OpenMessage.Servers"/>, after this server's
    /// place in it), so no rule can be matched with one chain and another dialed; (2) at the first server after the
    /// owner, the tunnel's listener is on the host that dialed this link, so the bind host the rules see is that
    /// host's address as this server sees it (<paramref name="previousServer"/>), with the claimed port: a listen
    /// address on the owner's host cannot be seen from here, and a dialer cannot pick one to match a rule. Servers after
    /// the first get the address the first one saw, in the Open it forwards. Pure: no store, no log.
    /// </summary>
    public static (OpenMessage Seen, string? Problem) AsSeenBy(OpenMessage open, System.Net.IPAddress? previousServer, string serverName)
    {
        var position = open.Servers.Count - open.Route.Count - 1;
        if (position < 0)
        {
            return (open, $"{serverName}: the route lists {open.Route.Count} servers after this one, but the tunnel's chain has {open.Servers.Count} in all: the Open is not a tunnel's.");
        }
        for (var i = 0; i < open.Route.Count; i++)
        {
            string routed;
            try
            {
                routed = EndpointUri.ParseServer(open.Route[i], "Route").HostPort;
            }
            catch (Errors.QmTunnelException ex)
            {
                return (open, $"{serverName}: route entry {i + 1} is malformed: {ex.Message}");
            }
            var chained = open.Servers[position + 1 + i];
            if (!string.Equals(routed, chained, StringComparison.OrdinalIgnoreCase))
            {
                return (open, $"{serverName}: the route asks it to dial {routed}, but the tunnel's chain the allow-rules are checked against has {chained} there.");
            }
        }
        if (position > 0 || IsRemoteToLocal(open))
        {
            // A reverse tunnel listens on its last server, which checks its own listener; its target is reached from the
            // owner, which no server of the chain can see (the rules match it as the owner wrote it).
            return (open, null);
        }
        if (previousServer is null)
        {
            return (open, $"{serverName}: the address of the server before it is unknown, so the tunnel's listener cannot be checked.");
        }
        if (IsPathText(open.Listen))
        {
            // A socket path has no address to see: the rules see the path as claimed (as they see a claimed port), and
            // only path patterns (or the full wildcard) match it, never the previous host's address.
            return (open, null);
        }
        var (_, port) = SplitHostPort(open.Listen);
        var seen = previousServer.IsIPv4MappedToIPv6 ? previousServer.MapToIPv4() : previousServer;
        return (open with { Listen = HostPort(seen.ToString(), port) }, null);
    }

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

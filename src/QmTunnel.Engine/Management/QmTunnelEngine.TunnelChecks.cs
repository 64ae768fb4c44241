using QmTunnel.Engine.Errors;
namespace QmTunnel.Engine.Management;

/// <summary>
/// Checks of a tunnel's definition that need no network: every hop has a login, and which changes need a restart.
/// </summary>
public sealed partial class QmTunnelEngine
{
    /// <summary>
    /// Refuses a profile as the engine would before anything goes on the network: settings out of range
    /// (TunnelSettingInvalid, TunnelNameInvalid, every problem at once) and URIs that cannot be used (EndpointUriInvalid).
    /// Clients call it to refuse bad input before -WhatIf; the engine checks again.
    /// </summary>
    public static void CheckProfile(TunnelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        var errors = profile.Validate();
        if (errors.Count > 0)
        {
            var id = TunnelProfile.IsValidName(profile.Name) ? ErrorIds.TunnelSettingInvalid : ErrorIds.TunnelNameInvalid;
            throw new QmTunnelException(id, QmErrorKind.InvalidArgument, profile.Name, string.Join(" ", errors));
        }
        _ = ParseVia(profile);
        _ = CheckedEnds(profile);
    }

    /// <summary>
    /// The listener and target of <paramref name="profile"/>, checked (<see cref="CheckEnds"/>). The target is null for a
    /// socks5:// listener, which has none (each client names its own); every other listener needs one. Error:
    /// EndpointUriInvalid, naming the end and the fix.
    /// </summary>
    internal static (Endpoints.EndpointUri Listen, Endpoints.EndpointUri? Target) CheckedEnds(TunnelProfile profile)
    {
        var listen = Endpoints.EndpointUri.ParseApplication(profile.Listen, "Listen");
        var perConnection = listen.Scheme == Endpoints.EndpointScheme.Socks5;
        if (perConnection != string.IsNullOrEmpty(profile.Target))
        {
            throw new QmTunnelException(ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, perConnection ? profile.Target : listen.ToString(), perConnection
                ? $"Tunnel '{profile.Name}': a socks5:// listener takes no -Target ({profile.Target}): each SOCKS5 client names its own target. Leave -Target out (an existing tunnel keeps its target: remove it and create it again)."
                : $"Tunnel '{profile.Name}': -Listen {listen} needs a -Target (where its connections go, e.g. tcp://host:port). Only a socks5:// listener goes without one (to change a socks5:// tunnel to another listener, remove it and create it again with -Target).");
        }
        var target = perConnection ? null : Endpoints.EndpointUri.ParseTarget(profile.Target, "Target");
        CheckEnds(profile.Name, listen, target);
        return (listen, target);
    }

    /// <summary>
    /// Refuses two ends that carry different things: a udp:// end carries datagrams, every other scheme a byte stream
    /// (tcp, unix and pipe mix freely). A socks5:// listener (no target) carries byte streams. Error: EndpointUriInvalid, naming both ends.
    /// </summary>
    private static void CheckEnds(string tunnel, Endpoints.EndpointUri listen, Endpoints.EndpointUri? target)
    {
        if (target is null)
        {
            return;
        }
        if (listen.IsDatagram != target.IsDatagram)
        {
            throw new QmTunnelException(ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, listen.IsDatagram ? listen.ToString() : target.ToString(),
                $"Tunnel '{tunnel}': -Listen {listen} and -Target {target} carry different traffic: udp:// carries datagrams, tcp://, unix:/// and pipe:// a byte stream. " +
                "Make both ends udp://, or neither.");
        }
    }

    /// <summary>
    /// A tunnel without a fixed target (socks5://), for each target a client chose: null when its owner (as the database
    /// has it now) may build the tunnel to it (right and allow-rules, as at creation), else why not.
    /// </summary>
    private string? OwnerDenial(string owner, Security.TunnelRequest request)
    {
        (Security.SecurityPrincipal? Principal, Security.AllowRuleSet? Rules) access;
        try
        {
            access = CurrentAccess(owner);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or LiteDB.LiteException)
        {
            return $"{Options.ServerName} is stopping";
        }
        return access.Principal is null
            ? $"{Options.ServerName}: the tunnel's owner '{owner}' is disabled or no longer exists on this server."
            : Security.AccessControl.Denial(access.Principal, access.Rules!, request, Options.ServerName);
    }

    /// <summary>
    /// HopCredentialMissing when a hop of a new tunnel has neither a login in <paramref name="logins"/> nor a credential
    /// in the profile (see <see cref="CheckHopLogins(string, IReadOnlyList{Endpoints.EndpointUri}, IReadOnlyList{HopLogin?}?, IReadOnlyList{ValueTuple{Endpoints.EndpointUri, HopCredential?}})"/>).
    /// </summary>
    public static void CheckHopLogins(TunnelProfile profile, IReadOnlyList<HopLogin?>? logins)
    {
        ArgumentNullException.ThrowIfNull(profile);
        var hops = ParseVia(profile);
        var held = profile.Credentials.Count == hops.Count ? hops.Select((h, i) => (h, profile.Credentials[i])).ToList() : [];
        CheckHopLogins(profile.Name, hops, logins, held);
    }

    /// <summary>
    /// Refuses a chain with a hop that has no login (neither given in <paramref name="logins"/> nor kept from
    /// <paramref name="existing"/>): every server authenticates the link from the one before it, so such a tunnel could
    /// never carry a connection. Checked before anything goes on the network. Error: HopCredentialMissing.
    /// </summary>
    private static void CheckHopLogins(string tunnel, IReadOnlyList<Endpoints.EndpointUri> hops, IReadOnlyList<HopLogin?>? logins,
        IReadOnlyList<(Endpoints.EndpointUri Hop, HopCredential? Credential)> existing)
    {
        for (var i = 0; i < hops.Count; i++)
        {
            var hop = hops[i];
            if ((logins is not null && i < logins.Count && logins[i] is not null) || KeptCredential(existing, hop) is not null)
            {
                continue;
            }
            var user = hop.User ?? "<user>";
            throw new QmTunnelException(ErrorIds.HopCredentialMissing, QmErrorKind.AuthenticationError, hop.ToString(),
                $"Tunnel '{tunnel}': hop {i + 1} of -Via ({hop.Address}) has no login. Every server authenticates the link from the one before it, " +
                $"so no client could ever pass it. Give the hop a login of a user of that server: -Via (New-QmTunnelHop {hop.Address} -Credential {user})" +
                (i == 0 ? ", or -CertificatePath for a client certificate." : "."));
        }
    }

    /// <summary>The credential a hop keeps from <paramref name="existing"/>: same server, and the same user when the hop names one.</summary>
    private static HopCredential? KeptCredential(IReadOnlyList<(Endpoints.EndpointUri Hop, HopCredential? Credential)> existing, Endpoints.EndpointUri hop) =>
        existing.FirstOrDefault(e => e.Credential is not null && string.Equals(e.Hop.Address, hop.Address, StringComparison.OrdinalIgnoreCase)
            && (hop.User is null || string.Equals(e.Credential.User, hop.User, StringComparison.OrdinalIgnoreCase))).Credential;

    /// <summary>
    /// Whether changing a running tunnel from <paramref name="before"/> to <paramref name="after"/> needs a restart: only a
    /// new listen address, chain, target or login does. Every other setting (MaxConnections, ConnectTimeout, NoDelay,
    /// KeepAlive, BufferSize) applies to the next connection, and Description or Persistent to nothing running.
    /// </summary>
    public static bool NeedsRestart(TunnelProfile before, TunnelProfile after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        return before.Direction != after.Direction
            || !string.Equals(before.Listen, after.Listen, StringComparison.OrdinalIgnoreCase)
            || !before.Via.SequenceEqual(after.Via, StringComparer.OrdinalIgnoreCase)
            || !string.Equals(before.Target, after.Target, StringComparison.OrdinalIgnoreCase)
            || !before.Credentials.SequenceEqual(after.Credentials);
    }
}

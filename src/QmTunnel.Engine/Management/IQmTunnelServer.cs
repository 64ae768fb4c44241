using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>
/// Everything the cmdlets ask of a qmTunnel server, local or remote: <see cref="LocalQmTunnelServer"/> calls the
/// in-process engine (as the host, or as a given user); <see cref="Remote.QmTunnelSession"/> sends the same calls over
/// an authenticated management stream to a server elsewhere (docs/protocol.md, "Management"). Every failure is a
/// <see cref="QmTunnelException"/> with the same ids either way, so a script behaves the same on both.
/// </summary>
public interface IQmTunnelServer
{
    /// <summary>Where the server is, for messages: "in-process" or its address.</summary>
    string Address { get; }

    Task<ServerInfo> GetServerInfoAsync(CancellationToken cancellationToken);

    // ---- tunnels (a non-admin user sees and changes its own, group admins their group's) ----
    Task<IReadOnlyList<TunnelInfo>> GetTunnelsAsync(CancellationToken cancellationToken);
    Task<TunnelInfo> GetTunnelAsync(string name, CancellationToken cancellationToken);
    Task<TunnelInfo> NewTunnelAsync(TunnelProfile profile, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken);
    Task<TunnelInfo> StartTunnelAsync(string name, CancellationToken cancellationToken);
    Task<TunnelInfo> StopTunnelAsync(string name, CancellationToken cancellationToken);
    Task<TunnelInfo> SetTunnelAsync(string name, TunnelChange change, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken);
    Task RemoveTunnelAsync(string name, CancellationToken cancellationToken);
    Task<TunnelStats> GetTunnelStatsAsync(string name, CancellationToken cancellationToken);
    Task<IReadOnlyList<ConnectionInfo>> GetConnectionsAsync(string name, CancellationToken cancellationToken);
    IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken);
    IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken);

    // ---- known servers (pins) ----
    Task<IReadOnlyList<KnownServer>> GetKnownServersAsync(CancellationToken cancellationToken);
    Task RemoveKnownServerAsync(string server, CancellationToken cancellationToken);

    // ---- users, groups, configuration ----
    Task<IReadOnlyList<UserInfo>> GetUsersAsync(string? group, CancellationToken cancellationToken);
    Task<UserInfo> GetUserAsync(string name, CancellationToken cancellationToken);
    Task<UserInfo> NewUserAsync(string name, string group, string? password, string? certificateThumbprint, bool enabled, string description, CancellationToken cancellationToken);
    Task<UserInfo> SetUserAsync(string name, UserChange change, CancellationToken cancellationToken);
    Task RemoveUserAsync(string name, CancellationToken cancellationToken);
    Task<IReadOnlyList<GroupInfo>> GetGroupsAsync(CancellationToken cancellationToken);
    Task<GroupInfo> GetGroupAsync(string name, CancellationToken cancellationToken);
    Task<GroupInfo> NewGroupAsync(string name, GroupRights rights, IReadOnlyList<string> allowRules, string description, CancellationToken cancellationToken);
    Task<GroupInfo> SetGroupAsync(string name, GroupChange change, CancellationToken cancellationToken);
    Task RemoveGroupAsync(string name, CancellationToken cancellationToken);
    Task<ServerConfig> GetServerConfigAsync(CancellationToken cancellationToken);
    Task<ServerConfig> SetServerConfigAsync(ServerConfigChange change, CancellationToken cancellationToken);

    // ---- the server itself ----
    /// <summary>
    /// Stops the server gracefully, as SIGTERM stops a daemon (needs ChangeServerConfiguration, else
    /// PermissionDenied). Returns once the server accepted the request; the drain and stop follow.
    /// </summary>
    Task StopServerAsync(CancellationToken cancellationToken);
}

/// <summary>
/// A change to a tunnel's settings: each non-null field replaces the current value, the rest stay (Set-QmTunnel's
/// given parameters). Serializable, so it can travel to a remote server.
/// </summary>
public sealed record TunnelChange
{
    public string? Listen { get; init; }
    public IReadOnlyList<string>? Via { get; init; }
    public string? Target { get; init; }
    public int? MaxConnections { get; init; }
    public TimeSpan? ConnectTimeout { get; init; }
    public bool? NoDelay { get; init; }
    public bool? KeepAlive { get; init; }
    public int? BufferSize { get; init; }
    public string? Description { get; init; }
    public bool? Persistent { get; init; }
    /// <summary>True: the tunnel becomes Permanent; false: a Permanent tunnel becomes PerConnection (any other stays as it is).</summary>
    public bool? Permanent { get; init; }
    /// <summary>True: the tunnel becomes OnDemand; false: an OnDemand tunnel becomes PerConnection (any other stays as it is).</summary>
    public bool? OnDemand { get; init; }
    /// <summary>Only with a tunnel that is OnDemand after the change (TunnelSettingInvalid otherwise).</summary>
    public TimeSpan? IdleTimeout { get; init; }
    public TimeSpan? FailureTolerance { get; init; }
    /// <summary>udp:// tunnels: an association idle (no datagram either way) this long ends.</summary>
    public TimeSpan? UdpIdleTimeout { get; init; }

    /// <summary>
    /// The profile with this change. TunnelSettingInvalid when Permanent and OnDemand are both true, or when IdleTimeout
    /// is given for a tunnel that is not OnDemand after the change (it would do nothing); the ranges are checked by
    /// <see cref="TunnelProfile.Validate"/>.
    /// </summary>
    public TunnelProfile Apply(TunnelProfile p)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (Permanent == true && OnDemand == true)
        {
            throw new QmTunnelException(ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, p.Name,
                $"Tunnel '{p.Name}' cannot be both -Permanent and -OnDemand: a permanent tunnel holds its chain up always, an on-demand one only while clients use it. Give one of them.");
        }
        var mode = Permanent == true ? TunnelMode.Permanent
            : OnDemand == true ? TunnelMode.OnDemand
            : (Permanent == false && p.Mode == TunnelMode.Permanent) || (OnDemand == false && p.Mode == TunnelMode.OnDemand) ? TunnelMode.PerConnection
            : p.Mode;
        if (IdleTimeout is not null && mode != TunnelMode.OnDemand)
        {
            throw new QmTunnelException(ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, p.Name,
                $"-IdleTimeout applies only to on-demand tunnels, and tunnel '{p.Name}' would be {mode}: add -OnDemand, or leave -IdleTimeout out.");
        }
        return ApplySettings(p) with
        {
            Mode = mode,
            IdleTimeout = IdleTimeout ?? p.IdleTimeout,
            FailureTolerance = FailureTolerance ?? p.FailureTolerance,
            UdpIdleTimeout = UdpIdleTimeout ?? p.UdpIdleTimeout,
        };
    }

    private TunnelProfile ApplySettings(TunnelProfile p) => p with
    {
        Listen = Listen ?? p.Listen,
        Via = Via ?? p.Via,
        Target = Target ?? p.Target,
        MaxConnections = MaxConnections ?? p.MaxConnections,
        ConnectTimeout = ConnectTimeout ?? p.ConnectTimeout,
        NoDelay = NoDelay ?? p.NoDelay,
        KeepAlive = KeepAlive ?? p.KeepAlive,
        BufferSize = BufferSize ?? p.BufferSize,
        Description = Description ?? p.Description,
        Persistent = Persistent ?? p.Persistent,
    };
}

using System.Text;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management;

/// <summary>
/// What Get-QmTunnelUser shows of a user: a snapshot that carries no secret (<see cref="HasPassword"/> says whether a
/// password is set; the verifier itself never leaves the server). Type name
/// <c>QmTunnel.Engine.Management.UserInfo</c> is keyed by the module's format file.
/// </summary>
public sealed class UserInfo : QmTunnelObject
{
    public string Name { get; set; } = string.Empty;
    /// <summary>The group that gives the user its rights and allow-rules.</summary>
    public string Group { get; set; } = string.Empty;
    /// <summary>A disabled user cannot log in; its tunnels stay.</summary>
    public bool Enabled { get; set; }
    /// <summary>Whether the user can log in with a password.</summary>
    public bool HasPassword { get; set; }
    /// <summary>SHA-256 thumbprint (upper-case hex) of the client certificate that authenticates the user, or null.</summary>
    public string? CertificateThumbprint { get; set; }
    public string Description { get; set; } = string.Empty;
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>The snapshot of <paramref name="user"/>, without its password verifier.</summary>
    public static UserInfo From(User user) => new()
    {
        Name = user.Name,
        Group = user.Group,
        Enabled = user.Enabled,
        HasPassword = user.PasswordHash is not null,
        CertificateThumbprint = user.CertificateThumbprint,
        Description = user.Description,
        CreatedAt = user.CreatedAt,
    };

    public override string ToString() => Name;
}

/// <summary>
/// What Get-QmTunnelGroup shows of a group: its rights, its tunnel allow-rules (the original's format, see
/// <see cref="AllowRule"/>) and how many users it has. A snapshot. Type name
/// <c>QmTunnel.Engine.Management.GroupInfo</c> is keyed by the module's format file.
/// </summary>
public sealed class GroupInfo : QmTunnelObject
{
    public string Name { get; set; } = string.Empty;
    public GroupRights Rights { get; set; }
    /// <summary>A tunnel is allowed when one rule matches it; none = no tunnel allowed.</summary>
    public string[] AllowRules { get; set; } = [];
    public string Description { get; set; } = string.Empty;
    public int UserCount { get; set; }

    public static GroupInfo From(Group group, int userCount) => new()
    {
        Name = group.Name,
        Rights = group.Rights,
        AllowRules = [.. group.AllowRules],
        Description = group.Description,
        UserCount = userCount,
    };

    public override string ToString() => Name;
}

/// <summary>
/// What Get-QmTunnelServerConfig shows: how the server was started (name, address, port, certificate, data path;
/// changed only by starting it again) and its saved settings that Set-QmTunnelServerConfig changes while it runs
/// (<see cref="AllowPlainLinks"/>, <see cref="PasswordIterations"/>, the limits of sessions and links). Type name
/// <c>QmTunnel.Engine.Management.ServerConfig</c> is keyed by the module's format file.
/// </summary>
public sealed class ServerConfig : QmTunnelObject
{
    /// <summary>Name the server gives peers in the link handshake.</summary>
    public string ServerName { get; set; } = string.Empty;
    public string ListenAddress { get; set; } = string.Empty;
    /// <summary>The port actually listened on.</summary>
    public int Port { get; set; }
    /// <summary>Whether unencrypted links (qmt+plain://) are accepted. Saved; applies to new links at once.</summary>
    public bool AllowPlainLinks { get; set; }
    /// <summary>SHA-256 thumbprint (hex) of the server's TLS certificate.</summary>
    public string? CertificateThumbprint { get; set; }
    /// <summary>PBKDF2 iterations for passwords set from now on (existing passwords keep theirs until set again). Saved.</summary>
    public int PasswordIterations { get; set; }
    /// <summary>Management sessions (Connect-QmTunnelServer) served at once; one more is refused (original default 100).</summary>
    public int MaxManagementSessions { get; set; }
    /// <summary>Management sessions open now.</summary>
    public int ManagementSessions { get; set; }
    /// <summary>Management sessions one user without ChangeServerConfiguration may have open at once (default 10).</summary>
    public int MaxManagementSessionsPerUser { get; set; }
    /// <summary>A management session without a request in progress (or a watch) for this long is closed (default 15 min).</summary>
    public TimeSpan ManagementIdleTimeout { get; set; }
    /// <summary>Streams a peer may have open at once on one link it dialed to this server (default 1024).</summary>
    public int MaxStreamsPerLink { get; set; }
    /// <summary>A link dialed to this server (not a management session) that carried no stream for this long is closed (default 10 min).</summary>
    public TimeSpan LinkIdleTimeout { get; set; }
    /// <summary>Link sessions accepted at once (those waiting to be resumed included); one more is refused with LinkLimit (default 1000).</summary>
    public int MaxLinks { get; set; }
    /// <summary>MiB the send queues of all links may hold together; senders of data wait while they do (default 512).</summary>
    public int MaxBufferedMB { get; set; }
    /// <summary>Local ports of the UDP sockets this server dials targets from, FIRST-LAST (default 33001-63000). Saved.</summary>
    public string UdpPortRange { get; set; } = string.Empty;
    /// <summary>Whether links accepted from now on may be compressed when the dialer asks (default true; links up keep theirs). Saved.</summary>
    public bool AcceptCompression { get; set; }
    public string DataPath { get; set; } = string.Empty;

    public override string ToString() => $"{ServerName} ({ListenAddress}:{Port})";
}

/// <summary>
/// A change to a user for <see cref="QmTunnelEngine.SetUser"/>: each field that is not null is set, the others keep
/// their value. <see cref="CertificateThumbprint"/> = empty string removes the certificate. <see cref="Password"/>
/// is hashed by the engine and never stored or shown (<see cref="ToString"/> hides it).
/// </summary>
public sealed record UserChange
{
    public string? Group { get; init; }
    public bool? Enabled { get; init; }
    public string? Password { get; init; }
    public string? CertificateThumbprint { get; init; }
    public string? Description { get; init; }

    /// <summary>True when nothing but the password changes (what a user may do to itself without rights).</summary>
    public bool IsPasswordOnly => Password is not null && Group is null && Enabled is null && CertificateThumbprint is null && Description is null;

    /// <summary>The names of the fields given, e.g. "Enabled, Password".</summary>
    public string Fields => string.Join(", ", new[]
    {
        Group is null ? null : nameof(Group),
        Enabled is null ? null : nameof(Enabled),
        Password is null ? null : nameof(Password),
        CertificateThumbprint is null ? null : nameof(CertificateThumbprint),
        Description is null ? null : nameof(Description),
    }.Where(f => f is not null));

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append("Group = ").Append(Group).Append(", Enabled = ").Append(Enabled)
            .Append(", Password = ").Append(Password is null ? "" : "(hidden)")
            .Append(", CertificateThumbprint = ").Append(CertificateThumbprint)
            .Append(", Description = ").Append(Description);
        return true;
    }
}

/// <summary>A change to a group for <see cref="QmTunnelEngine.SetGroup"/>: each field that is not null is set.</summary>
public sealed record GroupChange
{
    public GroupRights? Rights { get; init; }
    /// <summary>Replaces the whole list; an empty list allows no tunnel.</summary>
    public IReadOnlyList<string>? AllowRules { get; init; }
    public string? Description { get; init; }
}

/// <summary>A change to the saved server settings for <see cref="QmTunnelEngine.SetServerConfig"/>: each field that is not null is set.</summary>
public sealed record ServerConfigChange
{
    public bool? AllowPlainLinks { get; init; }
    /// <summary><see cref="QmTunnelEngine.MinPasswordIterations"/> to <see cref="PasswordHasher.MaxIterations"/>.</summary>
    public int? PasswordIterations { get; init; }
    /// <summary>1 to 10000.</summary>
    public int? MaxManagementSessions { get; init; }
    /// <summary>1 to 10000; administrators are not limited.</summary>
    public int? MaxManagementSessionsPerUser { get; init; }
    /// <summary>Whole seconds, 1 minute to 7 days.</summary>
    public TimeSpan? ManagementIdleTimeout { get; init; }
    /// <summary><see cref="QmTunnelEngine.MinStreamsPerLink"/> to <see cref="QmTunnelEngine.MaxStreamsPerLinkLimit"/>.</summary>
    public int? MaxStreamsPerLink { get; init; }
    /// <summary>Whole seconds, 1 minute to 7 days.</summary>
    public TimeSpan? LinkIdleTimeout { get; init; }
    /// <summary><see cref="QmTunnelEngine.MinLinks"/> to <see cref="QmTunnelEngine.MaxLinksLimit"/>.</summary>
    public int? MaxLinks { get; init; }
    /// <summary><see cref="QmTunnelEngine.MinBufferedMB"/> to <see cref="QmTunnelEngine.MaxBufferedMBLimit"/> MiB.</summary>
    public int? MaxBufferedMB { get; init; }
    /// <summary>FIRST-LAST (ports 1 to 65535), e.g. 33001-63000: the local ports of outgoing UDP sockets.</summary>
    public string? UdpPortRange { get; init; }
    /// <summary>Whether links accepted from now on may be compressed when the dialer asks; links up keep what they agreed.</summary>
    public bool? AcceptCompression { get; init; }
}

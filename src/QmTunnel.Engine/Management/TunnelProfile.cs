namespace QmTunnel.Engine.Management;

/// <summary>Direction of a tunnel, as in the original qmTunnel.</summary>
public enum TunnelDirection
{
    /// <summary>Listen on the owning (first) server, connect to the target from the last server of the chain.</summary>
    LocalToRemote,
    /// <summary>
    /// A reverse tunnel: listen on the last server of the chain, connect to the target from the owning server, which
    /// only dials out (docs/architecture.md, "Reverse tunnels"). Always Permanent: the owner holds a Bind stream.
    /// </summary>
    RemoteToLocal,
}

/// <summary>Application protocol a tunnel carries. Only TCP in this version.</summary>
public enum TunnelProtocol
{
    Tcp,
}

/// <summary>
/// When a running tunnel holds its chain up (docs/architecture.md, "Tunnel modes"). The chain is up when every link of
/// it is up and the last server accepts the tunnel, which a Hold stream (docs/protocol.md) proves and keeps so.
/// </summary>
public enum TunnelMode
{
    /// <summary>The chain is made per client connection (each one opens its own stream); nothing is held between them.</summary>
    PerConnection,
    /// <summary>The chain is held up whenever the tunnel is started, clients or not, and redialed with backoff when it breaks.</summary>
    Permanent,
    /// <summary>The listener is up with no chain (Idle); the first client brings the chain up; no client for IdleTimeout takes it down.</summary>
    OnDemand,
}

/// <summary>Runtime state of a tunnel on its owning server.</summary>
public enum TunnelState
{
    /// <summary>Saved, not running.</summary>
    Stopped,
    /// <summary>Binding its listener.</summary>
    Starting,
    /// <summary>PerConnection mode: listening; the link to the first hop is not up (not needed yet, or failed and retried on the next client).</summary>
    Listening,
    /// <summary>
    /// PerConnection mode: listening, and the link to the first hop is up. Permanent and OnDemand: listening, and the
    /// whole chain is up (its Hold stream was acknowledged by the last server).
    /// </summary>
    Established,
    /// <summary>Closing its listener and connections.</summary>
    Stopping,
    /// <summary>Could not start (see LastError).</summary>
    Failed,
    /// <summary>OnDemand: listening, no chain held (no client for IdleTimeout, or none yet); the next client brings it up.</summary>
    Idle,
    /// <summary>Permanent or OnDemand: listening, the chain is being brought up (or redialed after it broke; LastError says why).</summary>
    Connecting,
    /// <summary>
    /// A link of the chain broke and its session is waiting up to FailureTolerance for the transport to come back before
    /// the application connections are closed (session resume; set by the link layer).
    /// </summary>
    Resuming,
}

/// <summary>
/// A tunnel's saved definition: where it listens, the servers it passes, where it ends, and its settings, with the
/// original qmTunnel's defaults. Immutable; <see cref="Validate"/> lists every problem at once. It does not hold
/// runtime state (see <see cref="TunnelInfo"/>, <see cref="TunnelStats"/>).
/// </summary>
public sealed record TunnelProfile
{
    public const int MaxNameLength = 64;

    public required string Name { get; init; }
    public string Description { get; init; } = string.Empty;
    public TunnelDirection Direction { get; init; } = TunnelDirection.LocalToRemote;
    public TunnelProtocol Protocol { get; init; } = TunnelProtocol.Tcp;
    /// <summary>Where application clients connect, e.g. <c>tcp://127.0.0.1:5432</c> (port 0 picks a free port).</summary>
    public required string Listen { get; init; }
    /// <summary>Tunnel servers in order, e.g. <c>qmt+plain://hostB:9200</c>; the last one opens the target.</summary>
    public required IReadOnlyList<string> Via { get; init; }
    /// <summary>The application server, resolved by the last server of the chain.</summary>
    public required string Target { get; init; }
    /// <summary>Application clients accepted at once; more are refused (original default 100).</summary>
    public int MaxConnections { get; init; } = 100;
    /// <summary>Timeout of the last server's connection to the target, and of each link dial (original 10 s).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>TCP_NODELAY on the application sockets at both ends.</summary>
    public bool NoDelay { get; init; } = true;
    /// <summary>TCP keepalive on the application sockets at both ends.</summary>
    public bool KeepAlive { get; init; } = true;
    /// <summary>Bytes one connection may have in flight in each direction (per-stream flow-control window).</summary>
    public int BufferSize { get; init; } = DefaultBufferSize;
    /// <summary>When the chain is held up: per connection (default), permanently, or on demand (see <see cref="TunnelMode"/>).</summary>
    public TunnelMode Mode { get; init; } = TunnelMode.PerConnection;
    /// <summary>OnDemand: with no client connection for this long the chain is taken down (Idle). Original default 300 s.</summary>
    public TimeSpan IdleTimeout { get; init; } = DefaultIdleTimeout;
    /// <summary>
    /// How long a session waits for its transport to come back (a link of the chain broke) before the application
    /// connections are closed. Default 30 s (the original's 1 s is too short for real networks).
    /// </summary>
    public TimeSpan FailureTolerance { get; init; } = DefaultFailureTolerance;
    /// <summary>
    /// udp:// tunnels: an association (one client address) with no datagram in EITHER direction for this long is
    /// ended (Fin both ends, the last server's socket closed). Default 60 s; applies to associations started after a change.
    /// </summary>
    public TimeSpan UdpIdleTimeout { get; init; } = DefaultUdpIdleTimeout;
    /// <summary>Survives a server restart (saved in the database). Original default: on.</summary>
    public bool Persistent { get; init; } = true;
    /// <summary>Was running when last changed: started again when the server starts.</summary>
    public bool AutoStart { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset ModifiedAt { get; init; }

    /// <summary>One login per <see cref="Via"/> entry (null where none was given), or empty: how each link of the chain logs in.</summary>
    public IReadOnlyList<HopCredential?> Credentials { get; init; } = [];

    /// <summary>The user who created the tunnel (who sees and changes it, beside administrators).</summary>
    public string Owner { get; init; } = Security.User.AdminName;

    /// <summary>The owner's group when the tunnel was created (its group administrators see and change it).</summary>
    public string OwnerGroup { get; init; } = Security.Group.AdministratorsName;

    public const int DefaultBufferSize = 1024 * 1024;
    public static readonly TimeSpan DefaultIdleTimeout = TimeSpan.FromSeconds(300);
    public static readonly TimeSpan MinIdleTimeout = TimeSpan.FromSeconds(1), MaxIdleTimeout = TimeSpan.FromDays(1);
    public static readonly TimeSpan DefaultFailureTolerance = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan MaxFailureTolerance = TimeSpan.FromHours(1);
    public static readonly TimeSpan DefaultUdpIdleTimeout = TimeSpan.FromSeconds(60);
    public static readonly TimeSpan MinUdpIdleTimeout = TimeSpan.FromSeconds(1), MaxUdpIdleTimeout = TimeSpan.FromDays(1);
    public const int MinBufferSize = 16 * 1024;
    /// <summary>The original's max I/O buffer: 32 MiB.</summary>
    public const int MaxBufferSize = 32 * 1024 * 1024;

    /// <summary>Every problem with this profile, each naming the setting, its range and the fix. Empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!IsValidName(Name))
        {
            errors.Add($"Name '{Name}' is not valid: use 1 to {MaxNameLength} letters, digits, '-', '_' or '.', starting with a letter or digit.");
        }
        if (MaxConnections is < 1 or > 100_000)
        {
            errors.Add($"MaxConnections {MaxConnections} is out of range: use 1 to 100000.");
        }
        if (ConnectTimeout < TimeSpan.FromMilliseconds(100) || ConnectTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"ConnectTimeout {ConnectTimeout} is out of range: use 00:00:00.1 to 00:10:00.");
        }
        if (!Enum.IsDefined(Mode))
        {
            errors.Add($"Mode {(int)Mode} is not a tunnel mode: use PerConnection, Permanent or OnDemand.");
        }
        if (!Enum.IsDefined(Direction))
        {
            errors.Add($"Direction {(int)Direction} is not a tunnel direction: use LocalToRemote or RemoteToLocal.");
        }
        else if (Direction == TunnelDirection.RemoteToLocal && Mode != TunnelMode.Permanent)
        {
            errors.Add($"A RemoteToLocal tunnel is always Permanent (its owner holds the far listener up), so Mode {Mode} does not apply: " +
                "leave -Mode out (New-QmTunnel makes it Permanent) or give -Mode Permanent.");
        }
        if (IdleTimeout < MinIdleTimeout || IdleTimeout > MaxIdleTimeout)
        {
            errors.Add($"IdleTimeout {IdleTimeout} is out of range: use 00:00:01 to 1.00:00:00.");
        }
        if (FailureTolerance < TimeSpan.Zero || FailureTolerance > MaxFailureTolerance)
        {
            errors.Add($"FailureTolerance {FailureTolerance} is out of range: use 00:00:00 to 01:00:00.");
        }
        if (UdpIdleTimeout < MinUdpIdleTimeout || UdpIdleTimeout > MaxUdpIdleTimeout)
        {
            errors.Add($"UdpIdleTimeout {UdpIdleTimeout} is out of range: use 00:00:01 to 1.00:00:00 (00:01:00 is the default).");
        }
        if (BufferSize is < MinBufferSize or > MaxBufferSize)
        {
            errors.Add($"BufferSize {BufferSize} is out of range: use {MinBufferSize} (16 KiB) to {MaxBufferSize} (32 MiB).");
        }
        if (Via.Count == 0)
        {
            errors.Add("Via is empty: give at least one tunnel server, e.g. qmt+plain://hostB:9200.");
        }
        if (Via.Count > 16)
        {
            errors.Add($"Via lists {Via.Count} servers: at most 16.");
        }
        if (Credentials.Count != 0 && Credentials.Count != Via.Count)
        {
            errors.Add($"Credentials has {Credentials.Count} entries for {Via.Count} servers in Via: give one per server (null for none).");
        }
        return errors;
    }

    public static bool IsValidName(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength || !char.IsAsciiLetterOrDigit(name[0]))
        {
            return false;
        }
        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_' and not '.')
            {
                return false;
            }
        }
        return true;
    }
}

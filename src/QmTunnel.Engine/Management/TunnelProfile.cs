namespace QmTunnel.Engine.Management;

/// <summary>Direction of a tunnel, as in the original qmTunnel. Only LocalToRemote is carried in this version.</summary>
public enum TunnelDirection
{
    /// <summary>Listen on the owning (first) server, connect to the target from the last server of the chain.</summary>
    LocalToRemote,
}

/// <summary>Application protocol a tunnel carries. Only TCP in this version.</summary>
public enum TunnelProtocol
{
    Tcp,
}

/// <summary>Runtime state of a tunnel on its owning server.</summary>
public enum TunnelState
{
    /// <summary>Saved, not running.</summary>
    Stopped,
    /// <summary>Binding its listener.</summary>
    Starting,
    /// <summary>Listening; the link to the first hop is not up (not needed yet, or failed and retried on the next client).</summary>
    Listening,
    /// <summary>Listening, and the link to the first hop is up.</summary>
    Established,
    /// <summary>Closing its listener and connections.</summary>
    Stopping,
    /// <summary>Could not start (see LastError).</summary>
    Failed,
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

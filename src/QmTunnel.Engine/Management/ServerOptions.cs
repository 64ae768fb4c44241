namespace QmTunnel.Engine.Management;

/// <summary>How a qmTunnel server starts: where it listens and where it keeps its database.</summary>
public sealed record ServerOptions
{
    public const int DefaultPort = 9200;

    /// <summary>Link port (0 picks a free port; tests use that).</summary>
    public int Port { get; init; } = DefaultPort;

    /// <summary>
    /// Interface to listen on. Loopback by default, so a new server is not reachable from the network before its
    /// administrator chose to: give 0.0.0.0 (or a host address) to accept links from other hosts.
    /// </summary>
    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>Folder of the LiteDB database; created when missing. Default: <see cref="DefaultDataPath"/>.</summary>
    public string DataPath { get; init; } = DefaultDataPath;

    /// <summary>Name shown to peers in the link handshake.</summary>
    public string ServerName { get; init; } = Environment.MachineName;

    /// <summary>A link that has not finished its handshake after this long is closed.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Accept unencrypted links (<c>qmt+plain://</c>) as well as TLS ones. A saved server setting: null keeps the saved
    /// value (off on a new server); true or false changes it.
    /// </summary>
    public bool? AllowPlainLinks { get; init; }

    /// <summary>
    /// The server's own certificate instead of the generated one: a PKCS#12 file (.pfx/.p12) or a PEM certificate
    /// (with its key in the same file or in <see cref="CertificateKeyPath"/>). Null: generated and kept in the data path.
    /// </summary>
    public string? CertificatePath { get; init; }

    /// <summary>PEM private key of <see cref="CertificatePath"/> when it is not in the same file.</summary>
    public string? CertificateKeyPath { get; init; }

    /// <summary>Password of the PKCS#12 file or of an encrypted PEM key.</summary>
    public string? CertificatePassword { get; init; }

    /// <summary>
    /// When the server stops (Stop-QmTunnelServer, SIGTERM, service stop), how long open connections may go on
    /// after it stopped accepting, before they are closed.
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The password of the <c>admin</c> user, set on the first start of a data path (Start-QmTunnelServer
    /// -AdminCredential). On a later start it must match the admin's password (AdminCredentialMismatch otherwise).
    /// Null on a first start: a strong password is generated and shown once (<see cref="QmTunnelEngine.InitialAdminPassword"/>).
    /// </summary>
    public string? AdminPassword { get; init; }

    /// <summary>
    /// PBKDF2 iterations of password verifiers created from now on (a saved setting; null keeps the saved value, 600000
    /// on a new server). At least 100000.
    /// </summary>
    public int? PasswordIterations { get; init; }

    /// <summary>
    /// Connections accepted that have not logged in yet, at most, in all. When a new one would exceed it, the OLDEST
    /// waiting connection is closed to make room, so a flood cannot keep out a peer that logs in quickly. 1000 holds a
    /// reconnect storm of a large installation and costs a few MB; each waits at most <see cref="HandshakeTimeout"/>.
    /// </summary>
    public int MaxPendingLinks { get; init; } = DefaultMaxPendingLinks;
    public const int DefaultMaxPendingLinks = 1000;

    /// <summary>
    /// Connections that have not logged in yet, at most, from one source: an IPv4 address, or an IPv6 /64. A new one
    /// over it is closed at once. 64 is far more than one host needs (a server keeps one link per next hop and login)
    /// and leaves a NAT address shared by many servers room; one address cannot fill <see cref="MaxPendingLinks"/>.
    /// </summary>
    public int MaxPendingLinksPerSource { get; init; } = DefaultMaxPendingLinksPerSource;
    public const int DefaultMaxPendingLinksPerSource = 64;

    /// <summary>
    /// Whether links accepted here may be compressed when the dialer asks (docs/protocol.md, "Compression"; daemon
    /// <c>--accept-compression</c>). False: every dialer is answered None and its link runs uncompressed (for a server
    /// whose CPU is scarce, or that must never compress what it carries). A saved setting (Set-QmTunnelServerConfig
    /// -AcceptCompression changes it while the server runs): null keeps the saved value, true on a new server.
    /// </summary>
    public bool? AcceptCompression { get; init; }

    /// <summary>
    /// The local ports (FIRST-LAST) of the UDP sockets this server dials UDP targets from, one per association (a
    /// saved setting; null keeps the saved value, 33001-63000 on a new server).
    /// </summary>
    public string? UdpPortRange { get; init; }

    /// <summary>Process id to report (a daemon sets its own).</summary>
    public int? ProcessId { get; init; }

    /// <summary>
    /// <c>$QMTUNNEL_DATA</c>, else the user's data folder + <c>qmTunnel</c> (<c>~/.local/share/qmTunnel</c> on Linux,
    /// <c>%LOCALAPPDATA%\qmTunnel</c> on Windows).
    /// </summary>
    public static string DefaultDataPath
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("QMTUNNEL_DATA");
            if (!string.IsNullOrWhiteSpace(env))
            {
                return env;
            }
            var baseDir = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
            if (string.IsNullOrEmpty(baseDir))
            {
                baseDir = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "share");
            }
            return Path.Combine(baseDir, "qmTunnel");
        }
    }

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Port is < 0 or > 65535)
        {
            errors.Add($"Port {Port} is out of range: use 1 to 65535 (0 picks a free port).");
        }
        if (!System.Net.IPAddress.TryParse(ListenAddress, out _))
        {
            errors.Add($"ListenAddress '{ListenAddress}' is not an IP address: use e.g. 127.0.0.1, 0.0.0.0 or ::.");
        }
        if (string.IsNullOrWhiteSpace(DataPath))
        {
            errors.Add("DataPath is empty: give a folder for the database.");
        }
        if (AdminPassword is not null && AdminPassword.Length is < 8 or > Security.PasswordHasher.MaxPasswordLength)
        {
            errors.Add($"The admin password has {AdminPassword.Length} characters: give 8 to {Security.PasswordHasher.MaxPasswordLength}.");
        }
        if (UdpPortRange is not null && Endpoints.UdpPortRange.Parse(UdpPortRange).Problem is { } udpProblem)
        {
            errors.Add(udpProblem);
        }
        if (PasswordIterations is < 100_000 or > Security.PasswordHasher.MaxIterations)
        {
            errors.Add($"PasswordIterations {PasswordIterations} is out of range: give 100000 to {Security.PasswordHasher.MaxIterations} (600000 is the default).");
        }
        if (MaxPendingLinks is < 1 or > 1_000_000)
        {
            errors.Add($"MaxPendingLinks {MaxPendingLinks} is out of range: give 1 to 1000000 ({DefaultMaxPendingLinks} is the default).");
        }
        if (MaxPendingLinksPerSource < 1 || MaxPendingLinksPerSource > MaxPendingLinks)
        {
            errors.Add($"MaxPendingLinksPerSource {MaxPendingLinksPerSource} is out of range: give 1 to MaxPendingLinks ({MaxPendingLinks}); {DefaultMaxPendingLinksPerSource} is the default.");
        }
        if (HandshakeTimeout <= TimeSpan.Zero || HandshakeTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"HandshakeTimeout {HandshakeTimeout} is out of range: give more than 0 and at most 10 minutes (10 s is the default).");
        }
        if (CertificateKeyPath is not null && CertificatePath is null)
        {
            errors.Add("CertificateKeyPath is given without CertificatePath: give the certificate too.");
        }
        return errors;
    }
}

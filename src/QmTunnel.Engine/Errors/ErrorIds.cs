namespace QmTunnel.Engine.Errors;

/// <summary>
/// Every error id the engine reports, as <c>&lt;Noun&gt;&lt;Reason&gt;</c>. The PowerShell layer turns them into
/// ErrorRecord ids unchanged, so they are a contract: add, never rename.
/// </summary>
public static class ErrorIds
{
    public const string TunnelNotFound = nameof(TunnelNotFound);
    public const string TunnelNameInUse = nameof(TunnelNameInUse);
    public const string TunnelNameInvalid = nameof(TunnelNameInvalid);
    public const string TunnelSettingInvalid = nameof(TunnelSettingInvalid);
    public const string PortInUse = nameof(PortInUse);
    public const string BindFailed = nameof(BindFailed);
    public const string EndpointUriInvalid = nameof(EndpointUriInvalid);
    public const string TlsNotAvailable = nameof(TlsNotAvailable);
    public const string ServerNotRunning = nameof(ServerNotRunning);
    public const string ServerAlreadyRunning = nameof(ServerAlreadyRunning);
    public const string ServerStartFailed = nameof(ServerStartFailed);
    public const string DatabaseCorrupt = nameof(DatabaseCorrupt);
    public const string DatabaseLocked = nameof(DatabaseLocked);
    public const string DataPathInvalid = nameof(DataPathInvalid);
    public const string HopConnectFailed = nameof(HopConnectFailed);
    public const string HopHandshakeFailed = nameof(HopHandshakeFailed);
    public const string ProtocolError = nameof(ProtocolError);
    public const string CertificateInvalid = nameof(CertificateInvalid);
    public const string CertificateMismatch = nameof(CertificateMismatch);
    public const string PlainLinkRefused = nameof(PlainLinkRefused);
    public const string KnownServerNotFound = nameof(KnownServerNotFound);
    /// <summary>A tunnel server refused the login of a hop (unknown user, wrong password, disabled, unmapped certificate).</summary>
    public const string AuthenticationFailed = nameof(AuthenticationFailed);
    /// <summary>A hop of a tunnel has no login; every server of a chain authenticates the link from the one before.</summary>
    public const string HopCredentialMissing = nameof(HopCredentialMissing);
    /// <summary>A login would cross an unencrypted link (keys for a later hop, or a password login on qmt+plain).</summary>
    public const string CredentialOnPlainLink = nameof(CredentialOnPlainLink);
    /// <summary>A server of the chain refused the tunnel: a right or allow-rule of the user's group does not permit it.</summary>
    public const string PermissionDenied = nameof(PermissionDenied);
    /// <summary>-AdminCredential does not match the admin password set on the first start of this data path.</summary>
    public const string AdminCredentialMismatch = nameof(AdminCredentialMismatch);
    /// <summary>A management message could not be read (malformed, oversize, unknown operation or version).</summary>
    public const string ManagementMessageInvalid = nameof(ManagementMessageInvalid);
    /// <summary>The management session's link is closed.</summary>
    public const string SessionClosed = nameof(SessionClosed);
    /// <summary>The server already serves MaxManagementSessions management sessions, or the user MaxManagementSessionsPerUser.</summary>
    public const string ManagementSessionLimit = nameof(ManagementSessionLimit);
    /// <summary>
    /// A data folder or a file of qmTunnel's in it (or the client's pins) that other users could read or replace and
    /// qmTunnel will not fix itself: another owner, a link, a shared folder, an open folder holding other files.
    /// </summary>
    public const string DataPathInsecure = nameof(DataPathInsecure);
    /// <summary>A management session already has MaxManagementRequestsPerSession requests in progress (watches included).</summary>
    public const string ManagementRequestLimit = nameof(ManagementRequestLimit);
    /// <summary>A management stream was opened but its request did not arrive within the timeout.</summary>
    public const string ManagementRequestTimeout = nameof(ManagementRequestTimeout);
    /// <summary>A tunnel server refused a new link from this one: it already holds its MaxLinks link sessions.</summary>
    public const string LinkLimit = nameof(LinkLimit);
}

/// <summary>What kind of failure an error is; mapped one to one onto PowerShell's ErrorCategory.</summary>
public enum QmErrorKind
{
    InvalidArgument,
    ObjectNotFound,
    ResourceExists,
    ResourceBusy,
    ResourceUnavailable,
    ConnectionError,
    InvalidOperation,
    InvalidData,
    NotEnabled,
    ProtocolError,
    OpenError,
    SecurityError,
    /// <summary>Wrong or missing credentials (user name, password, client certificate).</summary>
    AuthenticationError,
    /// <summary>The user is known but a right or an allow-rule does not permit the operation.</summary>
    PermissionDenied,
}

/// <summary>
/// The one exception type the engine's management API throws for a failure the user can act on. It carries an
/// <see cref="ErrorId"/> from <see cref="ErrorIds"/>, a <see cref="Kind"/>, the <see cref="Target"/> at fault
/// (tunnel name, URI, file) and a message that ends with what to do next. It is not used for bugs.
/// </summary>
public sealed class QmTunnelException : Exception
{
    public QmTunnelException(string errorId, QmErrorKind kind, object? target, string message, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }

    public string ErrorId { get; }
    public QmErrorKind Kind { get; }
    public object? Target { get; }
}

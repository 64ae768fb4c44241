using QmTunnel.Engine.Errors;
namespace QmTunnel.PowerShell;

/// <summary>
/// Error ids the module itself raises (the engine's own failures keep the engine's id). Ids shared with the engine
/// re-use <see cref="Engine.Errors.ErrorIds"/>, so a script sees one id whichever layer noticed the problem.
/// A contract like the engine's: add, never rename.
/// </summary>
internal static class ErrorIds
{
    /// <summary>No in-process server, or a daemon that is not running (any more).</summary>
    public const string ServerNotRunning = Engine.Errors.ErrorIds.ServerNotRunning;

    /// <summary>Start-QmTunnelServer while this session already runs an in-process server.</summary>
    public const string ServerAlreadyRunning = Engine.Errors.ErrorIds.ServerAlreadyRunning;

    /// <summary>A daemon that could not be launched or did not report listening in time.</summary>
    public const string ServerStartFailed = Engine.Errors.ErrorIds.ServerStartFailed;

    /// <summary>-ListenAddress (or another server option) the engine would refuse.</summary>
    public const string ServerSettingInvalid = nameof(ServerSettingInvalid);

    /// <summary>The data folder could not be created.</summary>
    public const string DataPathInvalid = Engine.Errors.ErrorIds.DataPathInvalid;

    /// <summary>-Daemon on a data folder a server of this session already uses.</summary>
    public const string DatabaseLocked = Engine.Errors.ErrorIds.DatabaseLocked;

    /// <summary>Get-QmTunnelKnownServer with a literal host:port that has no pinned certificate.</summary>
    public const string KnownServerNotFound = Engine.Errors.ErrorIds.KnownServerNotFound;

    /// <summary>A daemon that did not exit, even after being killed.</summary>
    public const string ServerStopFailed = nameof(ServerStopFailed);

    /// <summary>-Follow with an -Interval shorter than the server's 250 ms update limit.</summary>
    public const string FollowIntervalInvalid = nameof(FollowIntervalInvalid);

    /// <summary>-Session with a session that was disconnected or lost its connection (Connect-QmTunnelServer again).</summary>
    public const string SessionClosed = Engine.Errors.ErrorIds.SessionClosed;

    /// <summary>Connect-QmTunnelServer -ConnectTimeout that is zero or negative.</summary>
    public const string ConnectTimeoutInvalid = nameof(ConnectTimeoutInvalid);

    /// <summary>Two parameters that cannot be used together (e.g. -Client with -Session).</summary>
    public const string ParameterConflict = nameof(ParameterConflict);

    /// <summary>
    /// An object from the pipeline came from another server (or from the client pins) than the one an explicit -Session
    /// (or -Client) names, or its origin is known only as text and names no server this command can reach.
    /// </summary>
    public const string SessionMismatch = nameof(SessionMismatch);
}

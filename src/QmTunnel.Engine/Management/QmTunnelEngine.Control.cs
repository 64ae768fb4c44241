using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management;

/// <summary>
/// Stopping a server on request of a management session (Stop-QmTunnelServer -Session). The engine only checks the
/// right and hands the stop to its host, which stops it the way SIGTERM does; it never stops a host process itself.
/// </summary>
public sealed partial class QmTunnelEngine
{
    private int _stopRequested;

    /// <summary>
    /// What the host does when a session asks this server to stop: the daemon stops its .NET host (as SIGTERM does:
    /// stop accepting, drain, close links and the database, exit); the module stops its in-process server. Called
    /// once, on a thread-pool thread, after the request was answered. Null: the engine stops itself (StopAsync).
    /// </summary>
    public Action? StopHandler { get; set; }

    /// <summary>Whether a session asked this server to stop (its drain may still be under way).</summary>
    public bool StopRequested => Volatile.Read(ref _stopRequested) != 0;

    /// <summary>
    /// Stops the server gracefully on behalf of <paramref name="caller"/> (null: the host), which needs the right
    /// ChangeServerConfiguration (else PermissionDenied, and nothing happens). Returns at once; the stop runs on the
    /// thread pool. Its drain waits for the streams open on accepted links, so the answer to the request that asked
    /// for it still reaches the session before its link is closed.
    /// </summary>
    public void RequestStop(SecurityPrincipal? caller)
    {
        EnsureRunning();
        Authorize(caller, "stop the server", ServerId);
        if (Interlocked.Exchange(ref _stopRequested, 1) != 0)
        {
            return;
        }
        ControlLog.StopRequested(_logger, caller?.User.Name ?? "the host");
        _ = Task.Run(async () =>
        {
            if (StopHandler is { } handler)
            {
                handler();
                return;
            }
            await StopAsync().ConfigureAwait(false);
        });
    }
}

internal static partial class ControlLog
{
    // Event ids: Diagnostics/EventIds.cs (engine: first run and server control, 50-69).
    [LoggerMessage(EventId = EventIds.ServerStopRequested, Level = LogLevel.Warning, Message = "Stop requested by {User} through a management session: draining, then stopping")]
    public static partial void StopRequested(ILogger logger, string user);
}

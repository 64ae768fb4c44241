using System.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.PowerShell;

/// <summary>
/// The servers this PowerShell process owns: at most one in-process <see cref="QmTunnelEngine"/> (shared by every
/// runspace of the process), the daemons started from it with Start-QmTunnelServer -Daemon, and the management
/// sessions opened with Connect-QmTunnelServer. It does not find daemons started elsewhere, and it never stops a
/// daemon on its own: daemons outlive the session by design. The in-process engine is stopped and the sessions are
/// closed cleanly when the module is removed or the process exits.
/// </summary>
internal static class ServerRegistry
{
    private static readonly Lock Gate = new();
    private static readonly List<DaemonEntry> Daemons = [];
    private static readonly List<QmTunnelSession> Sessions = [];
    private static QmTunnelEngine? _engine;
    private static bool _starting;
    private static bool _exitHookInstalled;

    /// <summary>How long a stop at module removal / process exit may take before the engine is abandoned.</summary>
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The running in-process engine, or null.</summary>
    public static QmTunnelEngine? Engine
    {
        get
        {
            lock (Gate)
            {
                return _engine;
            }
        }
    }

    /// <summary>
    /// Reserves the in-process slot before an engine starts, so two runspaces cannot both start one. False when an
    /// engine runs or another start is under way. Follow with <see cref="CompleteStart"/> or <see cref="AbortStart"/>.
    /// </summary>
    public static bool TryBeginStart()
    {
        lock (Gate)
        {
            if (_engine is not null || _starting)
            {
                return false;
            }
            _starting = true;
            return true;
        }
    }

    public static void CompleteStart(QmTunnelEngine engine)
    {
        lock (Gate)
        {
            _engine = engine;
            _starting = false;
        }
    }

    public static void AbortStart()
    {
        lock (Gate)
        {
            _starting = false;
        }
    }

    /// <summary>Forgets <paramref name="engine"/> if it is the registered one; returns whether it was.</summary>
    public static bool ClearEngine(QmTunnelEngine engine)
    {
        lock (Gate)
        {
            if (!ReferenceEquals(_engine, engine))
            {
                return false;
            }
            _engine = null;
            return true;
        }
    }

    public static void AddDaemon(Process process, ServerInfo info)
    {
        lock (Gate)
        {
            Daemons.Add(new DaemonEntry(process, info));
        }
    }

    /// <summary>Daemons of this session still running, oldest first; those that exited are forgotten.</summary>
    public static IReadOnlyList<DaemonEntry> GetLiveDaemons()
    {
        lock (Gate)
        {
            PruneExited();
            return [.. Daemons];
        }
    }

    /// <summary>The live daemon with this process id, or null.</summary>
    public static DaemonEntry? FindDaemon(int processId)
    {
        lock (Gate)
        {
            PruneExited();
            return Daemons.Find(d => d.Info.ProcessId == processId);
        }
    }

    public static void RemoveDaemon(DaemonEntry entry)
    {
        lock (Gate)
        {
            if (Daemons.Remove(entry))
            {
                entry.Process.Dispose();
            }
        }
    }

    public static void AddSession(QmTunnelSession session)
    {
        lock (Gate)
        {
            Sessions.Add(session);
        }
    }

    /// <summary>Forgets <paramref name="session"/> (Disconnect-QmTunnelServer closes it); returns whether it was known.</summary>
    public static bool RemoveSession(QmTunnelSession session)
    {
        lock (Gate)
        {
            return Sessions.Remove(session);
        }
    }

    /// <summary>
    /// The open sessions, oldest first. Those whose connection was lost since are forgotten and closed (their link
    /// is already gone; closing releases what is left).
    /// </summary>
    public static IReadOnlyList<QmTunnelSession> GetOpenSessions()
    {
        List<QmTunnelSession> lost;
        List<QmTunnelSession> open;
        lock (Gate)
        {
            lost = Sessions.Where(s => !s.IsOpen).ToList();
            Sessions.RemoveAll(lost.Contains);
            open = [.. Sessions];
        }
        foreach (var session in lost)
        {
            CloseQuietly(session);
        }
        return open;
    }

    /// <summary>Closes every session (module removal, process exit). Never throws.</summary>
    public static void CloseSessionsForShutdown()
    {
        List<QmTunnelSession> sessions;
        lock (Gate)
        {
            sessions = [.. Sessions];
            Sessions.Clear();
        }
        foreach (var session in sessions)
        {
            CloseQuietly(session);
        }
    }

    private static void CloseQuietly(QmTunnelSession session)
    {
        try
        {
            session.DisposeAsync().AsTask().Wait(ShutdownTimeout);
        }
        catch (Exception)
        {
            // Best effort: the session's link is gone or going; nothing is left to release.
        }
    }

    private static void PruneExited()
    {
        foreach (var gone in Daemons.Where(d => HasExited(d.Process)).ToList())
        {
            Daemons.Remove(gone);
            gone.Process.Dispose();
        }
    }

    internal static bool HasExited(Process process)
    {
        try
        {
            return process.HasExited;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    /// <summary>Closes the sessions and stops the in-process engine when the process exits (installed once per process).</summary>
    public static void InstallExitHook()
    {
        lock (Gate)
        {
            if (_exitHookInstalled)
            {
                return;
            }
            _exitHookInstalled = true;
        }
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Shutdown();
    }

    /// <summary>Module removal and process exit: closes the sessions, then stops the in-process engine. Never throws.</summary>
    public static void Shutdown()
    {
        CloseSessionsForShutdown();
        StopEngineForShutdown();
    }

    /// <summary>
    /// A management session asked <paramref name="engine"/> (the in-process server) to stop: forgets it and stops it
    /// as Stop-QmTunnelServer does (drain, then close). Runs on a thread-pool thread; never throws.
    /// </summary>
    public static void StopOnRequest(QmTunnelEngine engine)
    {
        if (!ClearEngine(engine))
        {
            return;
        }
        try
        {
            engine.StopAsync().GetAwaiter().GetResult();
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            // Nobody is there to be told: the session that asked has its answer, and the engine is forgotten.
        }
    }

    /// <summary>
    /// Stops and disposes the in-process engine, if any, within <see cref="ShutdownTimeout"/>. Never throws: it runs
    /// at module removal and process exit, where nobody could handle an error.
    /// </summary>
    public static void StopEngineForShutdown()
    {
        QmTunnelEngine? engine;
        lock (Gate)
        {
            engine = _engine;
            _engine = null;
        }
        if (engine is null)
        {
            return;
        }
        try
        {
            using var timeout = new CancellationTokenSource(ShutdownTimeout);
            engine.StopAsync(timeout.Token).GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            // Best effort: the process is going away; DisposeAsync below still releases the database and sockets.
        }
        try
        {
            engine.DisposeAsync().AsTask().Wait(ShutdownTimeout);
        }
        catch (Exception)
        {
            // As above.
        }
    }
}

/// <summary>A daemon started from this session: its process and what Start-QmTunnelServer -Daemon reported.</summary>
internal sealed record DaemonEntry(Process Process, ServerInfo Info);

using System.Diagnostics;
using System.Management.Automation;
using System.Runtime.InteropServices;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Stop-QmTunnelServer: stops the in-process server (no input), or the servers piped in: the in-process one, or a
/// daemon started from this session (SIGTERM, so it closes its tunnels and database; killed after 15 s). With
/// -Session it asks the server of a management session to stop (any server this user may manage: a daemon started
/// elsewhere, a service, another pwsh's in-process server), which it does as on SIGTERM; the user needs the right
/// ChangeServerConfiguration there (else PermissionDenied).
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "QmTunnelServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByInputObject,
    HelpUri = HelpLinks.Base + "Stop-QmTunnelServer.md")]
[OutputType(typeof(void))]
public sealed class StopQmTunnelServerCommand : QmTunnelCmdlet
{
    private const string BySession = nameof(BySession);

    /// <summary>How long a daemon gets to stop after SIGTERM before it is killed.</summary>
    private static readonly TimeSpan DaemonStopTimeout = TimeSpan.FromSeconds(15);

    /// <summary>How long to wait for a server asked through its session to finish its drain and close the session.</summary>
    private static readonly TimeSpan RemoteStopTimeout = TimeSpan.FromSeconds(60);

    [Parameter(ValueFromPipeline = true, ParameterSetName = ByInputObject)]
    [ValidateNotNull]
    public ServerInfo[]? InputObject { get; set; }

    /// <summary>Management sessions (Connect-QmTunnelServer) whose servers to stop.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = BySession)]
    [ValidateNotNull]
    public Engine.Management.Remote.QmTunnelSession[] Session { get; set; } = null!;

    protected override void ProcessRecord()
    {
        if (ParameterSetName == BySession)
        {
            foreach (var session in Session)
            {
                StopThroughSession(session);
            }
            return;
        }
        if (InputObject is null)
        {
            StopInProcess(null);
            return;
        }
        foreach (var server in InputObject)
        {
            if (server.IsDaemon)
            {
                StopDaemon(server);
            }
            else
            {
                StopInProcess(server);
            }
        }
    }

    private void StopInProcess(ServerInfo? requested)
    {
        var engine = ServerRegistry.Engine;
        if (engine is null)
        {
            WriteError(NewServerNotRunningError());
            return;
        }
        var info = engine.GetServerInfo();
        if (requested is not null && requested.ServerId != info.ServerId)
        {
            WriteError(NewErrorRecord(ErrorIds.ServerNotRunning, QmErrorKind.ObjectNotFound, requested,
                $"The in-process server {requested.Address} (data {requested.DataPath}) is no longer running; this session now runs " +
                $"{info.Address}. Run Get-QmTunnelServer to see the servers of this session."));
            return;
        }
        if (!ShouldProcess($"in-process qmTunnel server {info.Address} (data {info.DataPath})", "Stop"))
        {
            return;
        }
        try
        {
            Wait(engine.StopAsync(CancellationToken));
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
        finally
        {
            // Forget it even when the stop failed: a half-stopped engine must not be handed out again.
            ServerRegistry.ClearEngine(engine);
            Wait(engine.DisposeAsync());
        }
    }

    private void StopDaemon(ServerInfo server)
    {
        var daemon = ServerRegistry.FindDaemon(server.ProcessId!.Value);
        if (daemon is null)
        {
            WriteError(NewErrorRecord(ErrorIds.ServerNotRunning, QmErrorKind.ObjectNotFound, server,
                $"No daemon with process id {server.ProcessId} started from this session is running ({server.Address}). " +
                "Run Get-QmTunnelServer to see the servers of this session."));
            return;
        }
        if (!ShouldProcess($"qmtunnel-server daemon {server.Address} (pid {server.ProcessId}, data {server.DataPath})", "Stop"))
        {
            return;
        }
        var process = daemon.Process;
        try
        {
            RequestStop(process);
            if (!WaitForExit(process, DaemonStopTimeout, $"Waiting for qmtunnel-server (pid {server.ProcessId}) to finish its connections and stop"))
            {
                WriteWarning($"qmtunnel-server (pid {server.ProcessId}) did not stop within {DaemonStopTimeout.TotalSeconds:0} s; killing it.");
                process.Kill(entireProcessTree: true);
                if (!WaitForExit(process, TimeSpan.FromSeconds(5), $"Waiting for qmtunnel-server (pid {server.ProcessId}) to exit after being killed"))
                {
                    WriteError(NewErrorRecord(ErrorIds.ServerStopFailed, QmErrorKind.ResourceBusy, server,
                        $"qmtunnel-server (pid {server.ProcessId}) is still running after being killed. Check the process with Get-Process -Id {server.ProcessId}."));
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // It exited between the lookup and the signal: that is what was asked for.
        }
        ServerRegistry.RemoveDaemon(daemon);
    }

    /// <summary>
    /// Asks the session's server to stop (it answers, then drains and closes, as on SIGTERM) and waits until it closed
    /// the session; the session is then forgotten. PermissionDenied without ChangeServerConfiguration.
    /// </summary>
    private void StopThroughSession(Engine.Management.Remote.QmTunnelSession session)
    {
        if (!session.IsOpen)
        {
            WriteError(ServerCmdlet.NewSessionClosedError(session));
            return;
        }
        if (!ShouldProcess($"qmTunnel server {session.Address} (through the session as {session.User})", "Stop"))
        {
            return;
        }
        try
        {
            Wait(session.StopServerAsync(CancellationToken));
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
            return;
        }
        var closed = session.Completion.WaitAsync(RemoteStopTimeout, CancellationToken);
        try
        {
            WaitWithProgress(closed, "Stop-QmTunnelServer", $"Waiting for {session.Address} to finish its connections and stop", RemoteStopTimeout);
        }
        catch (TimeoutException)
        {
            WriteWarning($"{session.Address} accepted the stop but still holds the session after {RemoteStopTimeout.TotalSeconds:0} s: " +
                "it is draining long-lived connections. It stops on its own; check its log.");
        }
        ServerRegistry.RemoveSession(session);
        Wait(session.DisposeAsync());
    }

    /// <summary>SIGTERM on Unix (the daemon's host stops gracefully); Windows has no such signal, so it is killed.</summary>
    private static void RequestStop(Process process)
    {
        if (OperatingSystem.IsWindows())
        {
            process.Kill(entireProcessTree: true);
            return;
        }
        const int sigterm = 15;
        if (Kill(process.Id, sigterm) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            const int esrch = 3;
            if (errno != esrch)
            {
                throw new System.ComponentModel.Win32Exception(errno);
            }
        }
    }

    /// <summary>Waits for the exit in short steps so Ctrl+C still stops the pipeline; shows progress after a second.</summary>
    private bool WaitForExit(Process process, TimeSpan timeout, string status)
    {
        var clock = Stopwatch.StartNew();
        ProgressRecord? progress = null;
        try
        {
            while (clock.Elapsed < timeout)
            {
                if (process.WaitForExit(TimeSpan.FromMilliseconds(200)))
                {
                    return true;
                }
                if (CancellationToken.IsCancellationRequested)
                {
                    throw new PipelineStoppedException();
                }
                if (clock.Elapsed >= ProgressDelay)
                {
                    progress ??= new ProgressRecord(ProgressId, "Stop-QmTunnelServer", status);
                    ReportProgress(progress, status, clock.Elapsed, timeout);
                }
            }
            return process.HasExited;
        }
        finally
        {
            if (progress is not null)
            {
                progress.RecordType = ProgressRecordType.Completed;
                WriteProgress(progress);
            }
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}

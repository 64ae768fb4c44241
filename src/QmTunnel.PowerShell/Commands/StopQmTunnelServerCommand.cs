using System.Diagnostics;
using System.Management.Automation;
using System.Runtime.InteropServices;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Stop-QmTunnelServer: stops the in-process server (no input), or the servers piped in: the in-process one, or a
/// daemon started from this session (SIGTERM, so it closes its tunnels and database; killed after 15 s).
/// It does not stop daemons this session did not start.
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "QmTunnelServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(void))]
public sealed class StopQmTunnelServerCommand : QmTunnelCmdlet
{
    /// <summary>How long a daemon gets to stop after SIGTERM before it is killed.</summary>
    private static readonly TimeSpan DaemonStopTimeout = TimeSpan.FromSeconds(15);

    [Parameter(ValueFromPipeline = true)]
    [ValidateNotNull]
    public ServerInfo[]? InputObject { get; set; }

    protected override void ProcessRecord()
    {
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
            if (!WaitForExit(process, DaemonStopTimeout))
            {
                WriteWarning($"qmtunnel-server (pid {server.ProcessId}) did not stop within {DaemonStopTimeout.TotalSeconds:0} s; killing it.");
                process.Kill(entireProcessTree: true);
                if (!WaitForExit(process, TimeSpan.FromSeconds(5)))
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

    /// <summary>Waits for the exit in short steps so Ctrl+C still stops the pipeline.</summary>
    private bool WaitForExit(Process process, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
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
        }
        return process.HasExited;
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}

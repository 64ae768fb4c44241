using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelServer: the servers this session owns, with their counters as they are now: the in-process server (if
/// running), then each daemon started from this session that is still running, read from its owner-only status socket
/// (LocalStatusChannel; no password needed, nothing sent but the request to connect). With -Session, the servers of
/// those management sessions instead, as their users may see them. It lists no daemons started elsewhere: connect to
/// them (Connect-QmTunnelServer) and use -Session.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelServer", HelpUri = HelpLinks.Base + "Get-QmTunnelServer.md")]
[OutputType(typeof(ServerInfo))]
public sealed class GetQmTunnelServerCommand : QmTunnelCmdlet
{
    /// <summary>How long a daemon's status socket may take to answer.</summary>
    private static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Management sessions (Connect-QmTunnelServer) whose servers to show.</summary>
    [Parameter(ValueFromPipeline = true)]
    [ValidateNotNull]
    public QmTunnelSession[]? Session { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var session in Session ?? [])
        {
            if (!session.IsOpen)
            {
                WriteError(ServerCmdlet.NewSessionClosedError(session));
                continue;
            }
            try
            {
                WriteObject(Wait(session.GetServerInfoAsync(CancellationToken)));
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }

    protected override void EndProcessing()
    {
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Session)) || MyInvocation.ExpectingInput)
        {
            return;
        }
        if (ServerRegistry.Engine is { } engine && engine.IsRunning)
        {
            WriteObject(Wait(new LocalQmTunnelServer(engine).GetServerInfoAsync(CancellationToken)));
        }
        foreach (var daemon in ServerRegistry.GetLiveDaemons())
        {
            WriteObject(CurrentInfo(daemon));
        }
    }

    /// <summary>
    /// The daemon as it is now, from its status socket; what it reported when it started (with a warning) when the
    /// socket does not answer or answers for another process.
    /// </summary>
    private ServerInfo CurrentInfo(DaemonEntry daemon)
    {
        var current = Wait(LocalStatusChannel.QueryAsync(daemon.Info.DataPath, StatusTimeout, CancellationToken));
        if (current is not null && current.ProcessId == daemon.Info.ProcessId)
        {
            return current;
        }
        WriteWarning($"qmtunnel-server (pid {daemon.Info.ProcessId}, {daemon.Info.Address}) did not answer on its status socket " +
            $"{LocalStatusChannel.PathFor(daemon.Info.DataPath)}: its Tunnels, Links and OpenStreams are as of its start. " +
            $"Connect-QmTunnelServer {daemon.Info.Address} -Credential admin, then Get-QmTunnelServer -Session, shows them now.");
        return daemon.Info;
    }
}

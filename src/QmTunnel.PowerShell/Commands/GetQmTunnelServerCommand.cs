using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelServer: the servers this session owns: the in-process server (if running), then each daemon
/// started from this session that is still running. It lists no daemons started elsewhere.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelServer")]
[OutputType(typeof(ServerInfo))]
public sealed class GetQmTunnelServerCommand : QmTunnelCmdlet
{
    protected override void EndProcessing()
    {
        if (ServerRegistry.Engine is { } engine)
        {
            WriteObject(Wait(new LocalQmTunnelServer(engine).GetServerInfoAsync(CancellationToken)));
        }
        foreach (var daemon in ServerRegistry.GetLiveDaemons())
        {
            WriteObject(daemon.Info);
        }
    }
}

using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Disconnect-QmTunnelServer: closes each management session given (from Connect-QmTunnelServer or
/// Get-QmTunnelSession) and forgets it. Only the session ends: the server, its tunnels and their connections go on.
/// A session that is already closed is just forgotten. A closed session used with -Session is refused (SessionClosed).
/// </summary>
[Cmdlet(VerbsCommunications.Disconnect, "QmTunnelServer", SupportsShouldProcess = true, HelpUri = HelpLinks.Base + "Disconnect-QmTunnelServer.md")]
[OutputType(typeof(void))]
public sealed class DisconnectQmTunnelServerCommand : QmTunnelCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public QmTunnelSession[] Session { get; set; } = null!;

    protected override void ProcessRecord()
    {
        foreach (var session in Session)
        {
            if (!ShouldProcess($"session to {session.Address} as '{session.User}'", "Disconnect"))
            {
                continue;
            }
            ServerRegistry.RemoveSession(session);
            try
            {
                Wait(session.DisposeAsync());
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }
}

using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnelGroup: deletes each group given. A group that still has users is refused (GroupNotEmpty names
/// them). ConfirmImpact Medium: scripts are not prompted; -Confirm asks.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnelGroup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Remove-QmTunnelGroup.md")]
[OutputType(typeof(void))]
public sealed class RemoveQmTunnelGroupCommand : GroupActionCmdlet
{
    protected override string Action => "Remove";

    protected override void Process(IQmTunnelServer server, string name) => Wait(server.RemoveGroupAsync(name, CancellationToken));
}

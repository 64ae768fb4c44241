using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnel: deletes each tunnel given from the server (-Session, or the in-process one) and from its database
/// (the engine decides whether a running one is stopped first). ConfirmImpact Medium: scripts are not prompted;
/// -Confirm asks.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnel", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Remove-QmTunnel.md")]
[OutputType(typeof(void))]
public sealed class RemoveQmTunnelCommand : TunnelActionCmdlet
{
    protected override string Action => "Remove";

    protected override void Process(IQmTunnelServer server, string name) => Wait(server.RemoveTunnelAsync(name, CancellationToken));
}

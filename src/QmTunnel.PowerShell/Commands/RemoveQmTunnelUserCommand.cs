using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnelUser: deletes each user given from the server's database (-Session, or the in-process server). The
/// last user who can manage the server cannot be removed (AdministratorRequired). ConfirmImpact Medium: scripts are not
/// prompted; -Confirm asks.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnelUser", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Remove-QmTunnelUser.md")]
[OutputType(typeof(void))]
public sealed class RemoveQmTunnelUserCommand : UserActionCmdlet
{
    protected override string Action => "Remove";

    protected override void Process(IQmTunnelServer server, string name) => Wait(server.RemoveUserAsync(name, CancellationToken));
}

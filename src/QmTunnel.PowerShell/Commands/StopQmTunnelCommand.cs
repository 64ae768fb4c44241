using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Stop-QmTunnel: stops each tunnel given: closes its listener and its open connections. The tunnel stays defined
/// (Remove-QmTunnel deletes it).
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "QmTunnel", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Stop-QmTunnel.md")]
[OutputType(typeof(TunnelInfo))]
public sealed class StopQmTunnelCommand : TunnelActionCmdlet
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override string Action => "Stop";

    protected override void Process(IQmTunnelServer server, string name)
    {
        var tunnel = Wait(server.StopTunnelAsync(name, CancellationToken));
        if (PassThru)
        {
            WriteObject(tunnel);
        }
    }
}

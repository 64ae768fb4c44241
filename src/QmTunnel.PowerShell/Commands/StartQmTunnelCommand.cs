using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Start-QmTunnel: starts each tunnel given: binds its listener and carries its connections over the link to its first
/// hop.
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "QmTunnel", SupportsShouldProcess = true, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Start-QmTunnel.md")]
[OutputType(typeof(TunnelInfo))]
public sealed class StartQmTunnelCommand : TunnelActionCmdlet
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override string Action => "Start";

    protected override void Process(IQmTunnelServer server, string name)
    {
        var tunnel = Wait(server.StartTunnelAsync(name, CancellationToken));
        if (PassThru)
        {
            WriteObject(tunnel);
        }
    }
}

using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnel: the tunnels of the server (-Session, or the in-process one) that the caller may see, all or those
/// -Name selects (wildcards allowed; a literal name that matches nothing is a TunnelNotFound error, like Get-Service).
/// Snapshots, not live objects. Names piped in with an Origin are looked up where they came from (ServerInputCmdlet).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnel", HelpUri = HelpLinks.Base + "Get-QmTunnel.md")]
[OutputType(typeof(TunnelInfo))]
public sealed class GetQmTunnelCommand : ServerInputCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        var server = ServerFor(Origin, Name is null ? "tunnels" : $"tunnel '{string.Join("', '", Name)}'", Name);
        if (server is null)
        {
            return;
        }
        foreach (var tunnel in SelectTunnels(server, Name))
        {
            WriteObject(tunnel);
        }
    }
}

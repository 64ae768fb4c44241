using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnel: the tunnels of the in-process server, all or those -Name selects (wildcards allowed; a literal
/// name that matches nothing is a TunnelNotFound error, like Get-Service). Snapshots, not live objects.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnel")]
[OutputType(typeof(TunnelInfo))]
public sealed class GetQmTunnelCommand : QmTunnelCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[]? Name { get; set; }

    private QmTunnelEngine _engine = null!;

    protected override void BeginProcessing() => _engine = RequireServer();

    protected override void ProcessRecord()
    {
        foreach (var tunnel in SelectTunnels(_engine, Name))
        {
            WriteObject(tunnel);
        }
    }
}

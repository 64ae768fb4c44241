using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelStats: the counters of the tunnels -Name selects (all by default; wildcards allowed) on the
/// in-process server: state, bytes each way, connections, failures, link latency. Counters reset with the server.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelStats")]
[OutputType(typeof(TunnelStats))]
public sealed class GetQmTunnelStatsCommand : QmTunnelCmdlet
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
            try
            {
                WriteObject(_engine.GetTunnelStats(tunnel.Name));
            }
            catch (QmTunnelException ex)
            {
                // Removed since it was listed, say.
                WriteError(ToErrorRecord(ex));
            }
        }
    }
}

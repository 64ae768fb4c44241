using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelStats: the counters of the tunnels -Name selects (all by default; wildcards allowed) on the server
/// (-Session, or the in-process one): state, bytes each way, connections, failures, link latency. Counters reset with
/// the server. -Follow keeps going: an update every -Interval (1 s by default, 250 ms at least), changed or not, until
/// Ctrl+C — a live table redrawn in place when typed at the prompt, objects in a pipeline or a script.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelStats", HelpUri = HelpLinks.Base + "Get-QmTunnelStats.md")]
[OutputType(typeof(TunnelStats))]
public sealed class GetQmTunnelStatsCommand : ServerCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[]? Name { get; set; }

    /// <summary>Stream updates until stopped.</summary>
    [Parameter]
    public SwitchParameter Follow { get; set; }

    /// <summary>With -Follow: the time between two updates (1 s by default; 250 ms to 1 h; a number is seconds).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan Interval { get; set; } = QmTunnelEngine.DefaultWatchInterval;

    private readonly List<string> _followed = [];
    private bool _all;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        ValidateFollowInterval(Interval);
    }

    protected override void ProcessRecord()
    {
        if (Follow && Name is null)
        {
            _all = true;
            return;
        }
        foreach (var tunnel in SelectTunnels(Name))
        {
            if (Follow)
            {
                _followed.Add(tunnel.Name);
                continue;
            }
            try
            {
                WriteObject(Wait(TargetServer.GetTunnelStatsAsync(tunnel.Name, CancellationToken)));
            }
            catch (QmTunnelException ex)
            {
                // Removed since it was listed, say.
                WriteError(ToErrorRecord(ex));
            }
        }
    }

    protected override void EndProcessing()
    {
        if (!Follow || (!_all && _followed.Count == 0))
        {
            return;
        }
        var view = LiveView.IsWanted(MyInvocation, Host) ? new LiveView(Host.UI) : null;
        FollowUpdates(TargetServer.WatchTunnelStatsAsync(_all ? null : _followed, Interval, CancellationToken), snapshot =>
        {
            if (view is not null)
            {
                view.Show(snapshot);
                return;
            }
            foreach (var stats in snapshot)
            {
                WriteObject(stats);
            }
        });
    }
}

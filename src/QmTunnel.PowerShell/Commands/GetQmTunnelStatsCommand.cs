using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelStats: the counters of the tunnels -Name selects (all by default; wildcards allowed) on the server
/// (-Session, or the in-process one): state, bytes each way, connections, failures, link latency, and each hop of the
/// chain with the end-to-end round trip (the server asks its gateways as it answers, 2 s at most per tunnel; see
/// TunnelStats.Hops). Counters reset with the server. -Follow keeps going: an update every -Interval (1 s by default, 250 ms at least), changed or not, until
/// Ctrl+C — a live table redrawn in place when typed at the prompt, objects in a pipeline or a script. Tunnels piped in
/// are read where they came from (ServerInputCmdlet), -Follow too: one watch per server.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelStats", HelpUri = HelpLinks.Base + "Get-QmTunnelStats.md")]
[OutputType(typeof(TunnelStats))]
public sealed class GetQmTunnelStatsCommand : ServerInputCmdlet
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

    /// <summary>With -Follow: the tunnels to watch on each server (null: all of that server's).</summary>
    private readonly Dictionary<IQmTunnelServer, List<string>?> _followed = [];

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        ValidateFollowInterval(Interval);
    }

    protected override void ProcessRecord()
    {
        var server = ServerFor(Origin, Name is null ? "tunnels" : $"tunnel '{string.Join("', '", Name)}'", Name);
        if (server is null)
        {
            return;
        }
        if (Follow && Name is null)
        {
            _followed[server] = null;
            return;
        }
        foreach (var tunnel in SelectTunnels(server, Name))
        {
            if (Follow)
            {
                if (!_followed.TryGetValue(server, out var names))
                {
                    _followed[server] = [tunnel.Name];
                }
                names?.Add(tunnel.Name);
                continue;
            }
            try
            {
                WriteObject(Wait(server.GetTunnelStatsAsync(tunnel.Name, CancellationToken)));
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
        if (!Follow || _followed.Count == 0)
        {
            return;
        }
        var view = LiveView.IsWanted(MyInvocation, Host) ? new LiveView(Host.UI) : null;
        var watches = _followed.Select(f => f.Key.WatchTunnelStatsAsync(f.Value, Interval, CancellationToken)).ToList();
        FollowUpdates(WatchMerge.Merge(watches, CancellationToken), snapshot =>
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

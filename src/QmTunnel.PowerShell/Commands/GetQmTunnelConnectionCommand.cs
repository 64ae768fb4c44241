using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelConnection: the application connections of the tunnels -Name selects (all by default; wildcards
/// allowed): open ones and recently closed ones, as far as the server keeps them. -State filters. -Follow keeps
/// going, like Get-QmTunnelStats -Follow: the whole list again every -Interval.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelConnection", HelpUri = HelpLinks.Base + "Get-QmTunnelConnection.md")]
[OutputType(typeof(ConnectionInfo))]
public sealed class GetQmTunnelConnectionCommand : ServerCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[]? Name { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public ConnectionState[]? State { get; set; }

    /// <summary>Stream the list again every -Interval, until stopped.</summary>
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

    protected override void EndProcessing()
    {
        if (!Follow || (!_all && _followed.Count == 0))
        {
            return;
        }
        var view = LiveView.IsWanted(MyInvocation, Host) ? new LiveView(Host.UI) : null;
        FollowUpdates(TargetServer.WatchConnectionsAsync(_all ? null : _followed, Interval, CancellationToken), snapshot =>
        {
            var shown = snapshot.Where(c => State is null || State.Contains(c.State)).ToList();
            if (view is not null)
            {
                view.Show(shown);
                return;
            }
            foreach (var connection in shown)
            {
                WriteObject(connection);
            }
        });
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
            IReadOnlyList<ConnectionInfo> connections;
            try
            {
                connections = Wait(TargetServer.GetConnectionsAsync(tunnel.Name, CancellationToken));
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
                continue;
            }
            foreach (var connection in connections)
            {
                if (State is null || State.Contains(connection.State))
                {
                    WriteObject(connection);
                }
            }
        }
    }
}

using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelConnection: the application connections of the tunnels -Name selects (all by default; wildcards
/// allowed): open ones and recently closed ones, as far as the server keeps them. -State filters. -Follow keeps
/// going, like Get-QmTunnelStats -Follow: the whole list again every -Interval. Tunnels piped in are read where they
/// came from (ServerInputCmdlet), -Follow too: one watch per server.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelConnection", HelpUri = HelpLinks.Base + "Get-QmTunnelConnection.md")]
[OutputType(typeof(ConnectionInfo))]
public sealed class GetQmTunnelConnectionCommand : ServerInputCmdlet
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

    /// <summary>With -Follow: the tunnels to watch on each server (null: all of that server's).</summary>
    private readonly Dictionary<IQmTunnelServer, List<string>?> _followed = [];

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        ValidateFollowInterval(Interval);
    }

    protected override void EndProcessing()
    {
        if (!Follow || _followed.Count == 0)
        {
            return;
        }
        var view = LiveView.IsWanted(MyInvocation, Host) ? new LiveView(Host.UI) : null;
        var watches = _followed.Select(f => f.Key.WatchConnectionsAsync(f.Value, Interval, CancellationToken)).ToList();
        FollowUpdates(WatchMerge.Merge(watches, CancellationToken), snapshot =>
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
            IReadOnlyList<ConnectionInfo> connections;
            try
            {
                connections = Wait(server.GetConnectionsAsync(tunnel.Name, CancellationToken));
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

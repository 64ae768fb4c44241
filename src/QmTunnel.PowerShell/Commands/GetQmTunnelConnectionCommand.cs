using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelConnection: the application connections of the tunnels -Name selects (all by default; wildcards
/// allowed): open ones and recently closed ones, as far as the server keeps them. -State filters.
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelConnection")]
[OutputType(typeof(ConnectionInfo))]
public sealed class GetQmTunnelConnectionCommand : QmTunnelCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[]? Name { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public ConnectionState[]? State { get; set; }

    private QmTunnelEngine _engine = null!;

    protected override void BeginProcessing() => _engine = RequireServer();

    protected override void ProcessRecord()
    {
        foreach (var tunnel in SelectTunnels(_engine, Name))
        {
            IReadOnlyList<ConnectionInfo> connections;
            try
            {
                connections = _engine.GetConnections(tunnel.Name);
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

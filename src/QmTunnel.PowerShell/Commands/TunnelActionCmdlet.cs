using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that act on existing tunnels one at a time (Start, Stop, Set, Remove): the tunnels come by
/// -Name (parameter set ByName; also from a Name property in the pipeline) or as tunnel objects (ByInputObject,
/// the pipeline). Each tunnel is asked about with ShouldProcess and handled on its own: a failure is written as
/// an error and the next tunnel goes on. Names are literal (no wildcards: these cmdlets change things).
/// Each goes to the server it came from (its Origin; see <see cref="ServerInputCmdlet"/>), a plain name to -Session or the
/// in-process server.
/// </summary>
public abstract class TunnelActionCmdlet : ServerInputCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByName, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(TunnelNameCompleter))]
    public string[] Name { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByInputObject, ValueFromPipeline = true)]
    [ValidateNotNull]
    public TunnelInfo[] InputObject { get; set; } = null!;

    /// <summary>What ShouldProcess shows as the action, e.g. "Start".</summary>
    protected abstract string Action { get; }

    protected override void ProcessRecord() =>
        ProcessEach(Items(InputObject, Name, x => x.Name), "tunnel", Action, Process);

    /// <summary>Acts on one tunnel on <paramref name="server"/> (where it came from, see ServerInputCmdlet); a <see cref="QmTunnelException"/> becomes that tunnel's error.</summary>
    protected abstract void Process(IQmTunnelServer server, string name);
}

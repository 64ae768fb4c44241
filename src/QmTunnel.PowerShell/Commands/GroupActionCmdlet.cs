using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that act on existing groups one at a time (Set, Remove): by -Name (ByName; also from a Name
/// property in the pipeline) or as GroupInfo objects (ByInputObject, the pipeline). Each group is asked about with
/// ShouldProcess and handled on its own; a failure is written as an error and the next group goes on. Names are
/// literal.
/// </summary>
public abstract class GroupActionCmdlet : ServerCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByName, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(GroupNameCompleter))]
    public string[] Name { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByInputObject, ValueFromPipeline = true)]
    [ValidateNotNull]
    public GroupInfo[] InputObject { get; set; } = null!;

    /// <summary>What ShouldProcess shows as the action, e.g. "Remove".</summary>
    protected abstract string Action { get; }

    protected override void ProcessRecord() =>
        ProcessEach(ParameterSetName == ByInputObject ? InputObject.Select(x => x.Name) : Name, "group", Action, Process);

    /// <summary>Acts on one group; a <see cref="QmTunnelException"/> becomes that group's error.</summary>
    protected abstract void Process(string name);
}

using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that act on existing users one at a time (Set, Remove): the users come by -Name (parameter
/// set ByName; also from a Name property in the pipeline) or as UserInfo objects (ByInputObject, the pipeline). Each
/// user is asked about with ShouldProcess and handled on its own: a failure is written as an error and the next user
/// goes on. Names are literal (no wildcards: these cmdlets change things).
/// </summary>
public abstract class UserActionCmdlet : ServerCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByName, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(UserNameCompleter))]
    public string[] Name { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByInputObject, ValueFromPipeline = true)]
    [ValidateNotNull]
    public UserInfo[] InputObject { get; set; } = null!;

    /// <summary>What ShouldProcess shows as the action, e.g. "Remove".</summary>
    protected abstract string Action { get; }

    protected override void ProcessRecord() =>
        ProcessEach(ParameterSetName == ByInputObject ? InputObject.Select(x => x.Name) : Name, "user", Action, Process);

    /// <summary>Acts on one user; a <see cref="QmTunnelException"/> becomes that user's error.</summary>
    protected abstract void Process(string name);
}

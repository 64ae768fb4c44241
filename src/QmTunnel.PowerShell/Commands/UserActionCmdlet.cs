using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that act on existing users one at a time (Set, Remove): the users come by -Name (parameter
/// set ByName; also from a Name property in the pipeline) or as UserInfo objects (ByInputObject, the pipeline). Each
/// user is asked about with ShouldProcess and handled on its own: a failure is written as an error and the next user
/// goes on. Names are literal (no wildcards: these cmdlets change things).
/// Each goes to the server it came from (its Origin; see <see cref="ServerInputCmdlet"/>), a plain name to -Session or the
/// in-process server.
/// </summary>
public abstract class UserActionCmdlet : ServerInputCmdlet
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
        ProcessEach(Items(InputObject, Name, x => x.Name), "user", Action, Process);

    /// <summary>Acts on one user on <paramref name="server"/> (where it came from, see ServerInputCmdlet); a <see cref="QmTunnelException"/> becomes that user's error.</summary>
    protected abstract void Process(IQmTunnelServer server, string name);
}

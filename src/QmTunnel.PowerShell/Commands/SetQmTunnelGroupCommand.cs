using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnelGroup: changes the settings given (and only those) of each group given. -Rights and -AllowRule
/// replace the whole value (-AllowRule @() allows no tunnel). Every rule is parsed before any group changes. The engine
/// refuses taking ChangeServerConfiguration from the last group that can manage the server (AdministratorRequired).
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnelGroup", SupportsShouldProcess = true, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Set-QmTunnelGroup.md")]
[OutputType(typeof(GroupInfo))]
public sealed class SetQmTunnelGroupCommand : GroupActionCmdlet
{
    [Parameter]
    public GroupRights Rights { get; set; }

    [Parameter]
    [Alias("AllowRules")]
    [AllowEmptyCollection]
    [ValidateNotNull]
    public string[]? AllowRule { get; set; }

    [Parameter]
    [AllowEmptyString]
    [ValidateNotNull]
    public string? Description { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private GroupChange _change = new();

    protected override string Action
    {
        get
        {
            var fields = new[]
            {
                _change.Rights is null ? null : $"Rights ({_change.Rights})",
                _change.AllowRules is null ? null : $"AllowRules ({_change.AllowRules.Count})",
                _change.Description is null ? null : "Description",
            }.Where(f => f is not null).ToList();
            return fields.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", fields);
        }
    }

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (AllowRule is not null)
        {
            AllowRuleCheck.Check(this, AllowRule);
        }
        _change = new GroupChange
        {
            Rights = MyInvocation.BoundParameters.ContainsKey(nameof(Rights)) ? Rights : null,
            AllowRules = AllowRule,
            Description = Description,
        };
    }

    protected override void Process(IQmTunnelServer server, string name)
    {
        var group = Wait(server.SetGroupAsync(name, _change, CancellationToken));
        if (PassThru)
        {
            WriteObject(group);
        }
    }
}

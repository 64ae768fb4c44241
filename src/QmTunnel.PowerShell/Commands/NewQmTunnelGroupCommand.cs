using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnelGroup: adds a group to the server (-Session, or the in-process one) and outputs it. Rights default to
/// none and allow-rules to none (no tunnel allowed): a group gets only what is given. Every -AllowRule is parsed before
/// anything is created; a bad one stops the cmdlet with AllowRuleInvalid naming the rule and the format.
/// </summary>
[Cmdlet(VerbsCommon.New, "QmTunnelGroup", SupportsShouldProcess = true, HelpUri = HelpLinks.Base + "New-QmTunnelGroup.md")]
[OutputType(typeof(GroupInfo))]
public sealed class NewQmTunnelGroupCommand : ServerCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    [Parameter(Position = 1)]
    public GroupRights Rights { get; set; }

    [Parameter]
    [Alias("AllowRules")]
    [AllowEmptyCollection]
    [ValidateNotNull]
    public string[] AllowRule { get; set; } = [];

    [Parameter]
    [AllowEmptyString]
    [ValidateNotNull]
    public string Description { get; set; } = string.Empty;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        AllowRuleCheck.Check(this, AllowRule);
    }

    protected override void ProcessRecord()
    {
        if (!ShouldProcess($"group '{Name}'{OnServer} with rights {Rights} and {AllowRule.Length} allow-rule(s)", "Create"))
        {
            return;
        }
        try
        {
            var group = Wait(TargetServer.NewGroupAsync(Name, Rights, AllowRule, Description, CancellationToken));
            if (group.Rights.HasFlag(GroupRights.CreateTunnels) && group.AllowRules.Length == 0)
            {
                WriteWarning($"Group '{group.Name}' may create tunnels but has no allow-rule, so every tunnel its users build is refused. Add rules with Set-QmTunnelGroup {group.Name} -AllowRule 'L#127.0.0.1:*#*#*:*'.");
            }
            WriteObject(group);
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}

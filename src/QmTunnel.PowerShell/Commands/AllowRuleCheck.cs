using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>The -AllowRule check of New- and Set-QmTunnelGroup: every rule parsed before anything is changed.</summary>
internal static class AllowRuleCheck
{
    /// <summary>Stops <paramref name="cmdlet"/> with AllowRuleInvalid (naming the rule, the field and the format) at the first bad rule.</summary>
    public static void Check(PSCmdlet cmdlet, IEnumerable<string> rules)
    {
        foreach (var rule in rules)
        {
            if (!AllowRule.TryParse(rule, out _, out var error))
            {
                cmdlet.ThrowTerminatingError(new ErrorRecord(
                    new QmTunnelException(SecurityErrorIds.AllowRuleInvalid, QmErrorKind.InvalidArgument, rule, error),
                    SecurityErrorIds.AllowRuleInvalid, ErrorCategory.InvalidArgument, rule));
            }
        }
    }
}

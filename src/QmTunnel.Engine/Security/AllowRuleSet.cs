using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Security;

/// <summary>The outcome of checking a tunnel against a group's rules: allowed or not, by which rule, and why, in words.</summary>
public sealed record AllowRuleDecision(bool Allowed, string GroupName, AllowRule? Rule, string Reason);

/// <summary>
/// A group's allow-rules, parsed once: a tunnel is allowed when at least one rule matches (first match wins; rules
/// only allow, there is no deny). No rules, or no matching rule, denies. A stored rule that does not parse (the
/// database was edited by hand) is ignored, which can only deny more, and is named in the reason.
/// It does not check rights (<see cref="SecurityPrincipal"/>) and does not throw: the caller turns a denial into an error.
/// </summary>
public sealed class AllowRuleSet
{
    private readonly List<AllowRule> _rules = [];
    private readonly List<string> _invalid = [];

    public AllowRuleSet(string groupName, IEnumerable<string> rules)
    {
        GroupName = groupName;
        foreach (var rule in rules)
        {
            if (AllowRule.TryParse(rule, out var parsed, out _))
            {
                _rules.Add(parsed);
            }
            else
            {
                _invalid.Add(rule);
            }
        }
    }

    public string GroupName { get; }
    public IReadOnlyList<AllowRule> Rules => _rules;
    /// <summary>Stored rules that do not parse and are ignored.</summary>
    public IReadOnlyList<string> InvalidRules => _invalid;

    public static AllowRuleSet For(Group group) => new(group.Name, group.AllowRules);

    public static AllowRuleDecision Evaluate(Group group, TunnelRequest request) => For(group).Evaluate(request);

    public AllowRuleDecision Evaluate(TunnelRequest request)
    {
        foreach (var rule in _rules)
        {
            if (rule.Matches(request))
            {
                return new AllowRuleDecision(true, GroupName, rule, $"Rule '{rule.Text}' of group '{GroupName}' allows tunnel {request}.");
            }
        }
        var ignored = _invalid.Count == 0 ? string.Empty : $" ({_invalid.Count} stored rule(s) of the group are not valid and were ignored: '{string.Join("', '", _invalid)}'.)";
        var reason = _rules.Count == 0 && _invalid.Count == 0
            ? $"Group '{GroupName}' has no allow-rules, so it may build no tunnel, and tunnel {request} is refused. Ask an administrator to add a rule that matches it to the group (the tunnel itself written as a rule is {request})."
            : $"No rule of group '{GroupName}' matches tunnel {request}.{ignored} Ask an administrator to add a rule that matches it to the group (the tunnel itself written as a rule is {request}).";
        return new AllowRuleDecision(false, GroupName, null, reason);
    }
}

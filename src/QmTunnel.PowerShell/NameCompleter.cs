using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell;

/// <summary>
/// Base of the completers that offer names from the in-process server (nothing when this session runs none).
/// Names are quoted when they need it, keeping the quote the user started with. It never throws into the console.
/// </summary>
public abstract class NameCompleter : IArgumentCompleter
{
    /// <summary>The candidates: (name, tooltip), from the running engine.</summary>
    protected abstract IEnumerable<(string Name, string ToolTip)> Candidates(QmTunnelEngine engine);

    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName,
        string parameterName,
        string wordToComplete,
        CommandAst commandAst,
        IDictionary fakeBoundParameters)
    {
        var engine = ServerRegistry.Engine;
        if (engine is null)
        {
            return [];
        }
        var word = wordToComplete ?? string.Empty;
        var quote = word.Length > 0 && word[0] is '\'' or '"' ? word[0] : '\0';
        var typed = word.Trim('\'', '"');
        var pattern = new WildcardPattern(WildcardPattern.Escape(typed) + "*", WildcardOptions.IgnoreCase);
        List<(string Name, string ToolTip)> matches;
        try
        {
            matches = Candidates(engine).Where(c => pattern.IsMatch(c.Name)).OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase).ToList();
        }
        catch (Exception)
        {
            // Completion must never throw into the console (a server stopping, say).
            return [];
        }
        return matches.Select(c => new CompletionResult(Quote(c.Name, quote), c.Name, CompletionResultType.ParameterValue, c.ToolTip));
    }

    internal static string Quote(string name, char quote)
    {
        if (quote == '"')
        {
            return "\"" + name.Replace("`", "``").Replace("\"", "`\"").Replace("$", "`$") + "\"";
        }
        if (quote == '\'' || NeedsQuotes(name))
        {
            return "'" + name.Replace("'", "''") + "'";
        }
        return name;
    }

    private static bool NeedsQuotes(string name) =>
        name.Length == 0 || name[0] is '-' or '@' or '#' || name.Any(c => char.IsWhiteSpace(c) || "'\"`$;,(){}[]|&<>".Contains(c));
}

/// <summary>Tab completion of tunnel names from the in-process server. It does not ask daemons or remote servers.</summary>
public sealed class TunnelNameCompleter : NameCompleter
{
    protected override IEnumerable<(string Name, string ToolTip)> Candidates(QmTunnelEngine engine) =>
        engine.GetTunnels().Select(t => (t.Name, $"{t.Name}: {t.Listen} → {t.Target} ({t.State})"));
}

/// <summary>Tab completion of the pinned servers (host:port) of the in-process server.</summary>
public sealed class KnownServerCompleter : NameCompleter
{
    protected override IEnumerable<(string Name, string ToolTip)> Candidates(QmTunnelEngine engine) =>
        engine.GetKnownServers().Select(k => (k.Server, $"{k.Server} SHA256 {k.Thumbprint}"));
}

/// <summary>Tab completion of the user names of the in-process server.</summary>
public sealed class UserNameCompleter : NameCompleter
{
    protected override IEnumerable<(string Name, string ToolTip)> Candidates(QmTunnelEngine engine) =>
        engine.GetUsers().Select(u => (u.Name, $"{u.Name} (group {u.Group}{(u.Enabled ? "" : ", disabled")})"));
}

/// <summary>Tab completion of the group names of the in-process server.</summary>
public sealed class GroupNameCompleter : NameCompleter
{
    protected override IEnumerable<(string Name, string ToolTip)> Candidates(QmTunnelEngine engine) =>
        engine.GetGroups().Select(g => (g.Name, $"{g.Name}: {g.Rights}, {g.UserCount} user(s)"));
}

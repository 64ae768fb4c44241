using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace QmTunnel.PowerShell;

/// <summary>
/// Tab completion of tunnel names from the in-process server (nothing when this session runs none). Names are
/// quoted when they need it, keeping the quote the user started with. It does not ask daemons or remote servers.
/// </summary>
public sealed class TunnelNameCompleter : IArgumentCompleter
{
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
        IEnumerable<string> names;
        try
        {
            names = engine.GetTunnels().Select(t => t.Name).Where(pattern.IsMatch).Order(StringComparer.OrdinalIgnoreCase).ToList();
        }
        catch (Exception)
        {
            // Completion must never throw into the console (a server stopping, say).
            return [];
        }
        return names.Select(name => new CompletionResult(Quote(name, quote), name, CompletionResultType.ParameterValue, name));
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

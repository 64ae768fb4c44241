using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace QmTunnel.PowerShell;

/// <summary>
/// Tab completion of the pinned servers (host:port) of the in-process server, for Get- and
/// Remove-QmTunnelKnownServer; nothing when this session runs no server. Quoting as <see cref="TunnelNameCompleter"/>.
/// </summary>
public sealed class KnownServerCompleter : IArgumentCompleter
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
        List<Engine.Security.KnownServer> known;
        try
        {
            known = engine.GetKnownServers().Where(k => pattern.IsMatch(k.Server)).ToList();
        }
        catch (Exception)
        {
            // Completion must never throw into the console (a server stopping, say).
            return [];
        }
        return known.Select(k => new CompletionResult(
            TunnelNameCompleter.Quote(k.Server, quote), k.Server, CompletionResultType.ParameterValue, $"{k.Server} SHA256 {k.Thumbprint}"));
    }
}

using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.PowerShell;

/// <summary>
/// Base of the completers that offer names from a server: the -Session typed on the command line when there is one
/// (and it is open), else the in-process server; nothing when there is neither. Names are quoted when they need it,
/// keeping the quote the user started with. It never throws into the console, and gives up on a server that does not
/// answer within <see cref="Timeout"/>.
/// </summary>
public abstract class NameCompleter : IArgumentCompleter
{
    /// <summary>How long a completion waits for the server (a remote one may be slow or gone).</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    /// <summary>The candidates: (name, tooltip), from the server.</summary>
    protected abstract Task<IEnumerable<(string Name, string ToolTip)>> CandidatesAsync(IQmTunnelServer server, CancellationToken cancellationToken);

    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName,
        string parameterName,
        string wordToComplete,
        CommandAst commandAst,
        IDictionary fakeBoundParameters)
    {
        var server = FindServer(fakeBoundParameters);
        if (server is null)
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
            using var timeout = new CancellationTokenSource(Timeout);
            var candidates = CandidatesAsync(server, timeout.Token);
            if (!candidates.Wait(Timeout))
            {
                return [];
            }
            matches = candidates.Result.Where(c => pattern.IsMatch(c.Name)).OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase).ToList();
        }
        catch (Exception)
        {
            // Completion must never throw into the console (a server stopping, a session lost, no right to list).
            return [];
        }
        return matches.Select(c => new CompletionResult(Quote(c.Name, quote), c.Name, CompletionResultType.ParameterValue, c.ToolTip));
    }

    /// <summary>The open -Session of the command line, else the in-process server as its host, else null.</summary>
    private static IQmTunnelServer? FindServer(IDictionary? fakeBoundParameters)
    {
        if (fakeBoundParameters is not null && fakeBoundParameters.Contains("Session"))
        {
            var value = fakeBoundParameters["Session"];
            return (value is PSObject o ? o.BaseObject : value) is QmTunnelSession { IsOpen: true } session ? session : null;
        }
        return ServerRegistry.Engine is { } engine ? new LocalQmTunnelServer(engine) : null;
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

/// <summary>Tab completion of the tunnel names the caller may see.</summary>
public sealed class TunnelNameCompleter : NameCompleter
{
    protected override async Task<IEnumerable<(string Name, string ToolTip)>> CandidatesAsync(IQmTunnelServer server, CancellationToken cancellationToken) =>
        (await server.GetTunnelsAsync(cancellationToken).ConfigureAwait(false)).Select(t => (t.Name, $"{t.Name}: {t.Listen} → {t.Target} ({t.State})"));
}

/// <summary>Tab completion of the pinned servers (host:port).</summary>
public sealed class KnownServerCompleter : NameCompleter
{
    protected override async Task<IEnumerable<(string Name, string ToolTip)>> CandidatesAsync(IQmTunnelServer server, CancellationToken cancellationToken) =>
        (await server.GetKnownServersAsync(cancellationToken).ConfigureAwait(false)).Select(k => (k.Server, $"{k.Server} SHA256 {k.Thumbprint}"));
}

/// <summary>Tab completion of user names.</summary>
public sealed class UserNameCompleter : NameCompleter
{
    protected override async Task<IEnumerable<(string Name, string ToolTip)>> CandidatesAsync(IQmTunnelServer server, CancellationToken cancellationToken) =>
        (await server.GetUsersAsync(null, cancellationToken).ConfigureAwait(false)).Select(u => (u.Name, $"{u.Name} (group {u.Group}{(u.Enabled ? "" : ", disabled")})"));
}

/// <summary>Tab completion of group names.</summary>
public sealed class GroupNameCompleter : NameCompleter
{
    protected override async Task<IEnumerable<(string Name, string ToolTip)>> CandidatesAsync(IQmTunnelServer server, CancellationToken cancellationToken) =>
        (await server.GetGroupsAsync(cancellationToken).ConfigureAwait(false)).Select(g => (g.Name, $"{g.Name}: {g.Rights}, {g.UserCount} user(s)"));
}

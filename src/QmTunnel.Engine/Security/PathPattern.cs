using System.Diagnostics.CodeAnalysis;

namespace QmTunnel.Engine.Security;

/// <summary>
/// An allow-rule field for a path end: <c>unix:///run/qmt/*</c> (a Unix socket path) or <c>pipe://sql*</c> (a pipe
/// name), with <c>*</c> (any run of characters, '/' included) and <c>?</c> (one character), compared case-sensitively
/// (a rule only allows, so the stricter comparison can only deny a spelling Windows would take as the same name).
/// A path pattern matches only path ends of its scheme; a host:port pattern matches a path end only when it is the
/// full wildcard (<c>*:*</c>, <c>*</c> or empty), see <see cref="AllowRule"/>.
/// </summary>
internal sealed class PathPattern
{
    private readonly string _scheme; // "unix://" or "pipe://"
    private readonly string _path;

    private PathPattern(string scheme, string path)
    {
        _scheme = scheme;
        _path = path;
    }

    /// <summary>Whether a rule field or a request's end is written as a path (<c>unix://</c> or <c>pipe://</c>).</summary>
    public static bool IsPath(string text) => AccessControl.IsPathText(text);

    public static bool TryParse(string field, [NotNullWhen(true)] out PathPattern? pattern, [NotNullWhen(false)] out string? problem)
    {
        pattern = null;
        var scheme = field[..7].ToLowerInvariant();
        var path = field[7..];
        if (path.Length == 0)
        {
            problem = scheme == "unix://"
                ? "a unix pattern needs a path: unix:///run/qmt/* (sockets under /run/qmt), or unix://* for any socket path."
                : "a pipe pattern needs a name: pipe://sql* (pipes whose name starts with sql), or pipe://* for any pipe.";
            return false;
        }
        if (path.Contains("?mode=", StringComparison.OrdinalIgnoreCase))
        {
            problem = "a rule matches the socket's path only: leave ?mode= out of it (the mode is not checked by rules).";
            return false;
        }
        if (path.Any(char.IsControl))
        {
            problem = "a path pattern cannot hold control characters.";
            return false;
        }
        if (scheme == "unix://")
        {
            if (path[0] is not '/' and not '*')
            {
                problem = $"a socket path is absolute, written with three slashes: unix:///{path}.";
                return false;
            }
            if (path.Contains("//", StringComparison.Ordinal) || path.Split('/').Any(part => part is "." or ".."))
            {
                problem = "write the plain absolute path, without '//', '.' or '..' parts (endpoints are refused with them too).";
                return false;
            }
        }
        else if (!path.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '*' or '?'))
        {
            problem = "a pipe name pattern has letters, digits, '.', '_', '-' and the wildcards * and ?, e.g. pipe://sql*.";
            return false;
        }
        pattern = new PathPattern(scheme, path);
        problem = null;
        return true;
    }

    /// <summary>Whether <paramref name="end"/> (a path end's URI text, e.g. <c>unix:///run/a.sock?mode=0660</c>) matches.</summary>
    public bool Matches(string end)
    {
        if (!IsPath(end) || !string.Equals(end[..7], _scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var path = end[7..];
        var query = path.IndexOf('?', StringComparison.Ordinal); // paths cannot hold '?': what follows is ?mode=
        return RuleGlob.Matches(_path, query < 0 ? path : path[..query], ignoreCase: false);
    }

    /// <summary>A path end's URI as a rule writes it: without its <c>?mode=</c>.</summary>
    public static string RuleText(string end)
    {
        var query = end.IndexOf('?', StringComparison.Ordinal);
        return query < 0 ? end : end[..query];
    }
}

/// <summary>The wildcards of allow-rules: <c>*</c> any run (empty too), <c>?</c> one character.</summary>
internal static class RuleGlob
{
    /// <summary>Linear backtracking on the last star.</summary>
    public static bool Matches(string pattern, string text, bool ignoreCase)
    {
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || Same(pattern[p], text[t], ignoreCase)))
            {
                p++;
                t++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = t;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++mark;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }
        return p == pattern.Length;
    }

    private static bool Same(char a, char b, bool ignoreCase) =>
        a == b || (ignoreCase && char.ToLowerInvariant(a) == char.ToLowerInvariant(b));
}

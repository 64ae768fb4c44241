using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>Direction of a tunnel as allow-rules write it: <c>L</c> or <c>R</c>.</summary>
public enum RuleDirection
{
    /// <summary><c>L</c>: the first (owning) server listens, the last server connects to the target.</summary>
    LocalToRemote,
    /// <summary><c>R</c>: the last server listens, the first (owning) server connects to the target.</summary>
    RemoteToLocal,
}

/// <summary>
/// A tunnel as the allow-rules see it. <see cref="BindHost"/>:<see cref="BindPort"/> is always where the tunnel
/// listens and <see cref="TargetHost"/>:<see cref="TargetPort"/> where its connections go, whatever the direction;
/// <see cref="Servers"/> are the tunnel servers after the owning one, in chain order (the hops of -Via).
/// Hosts are names or addresses as the user wrote them (IPv6 with or without brackets).
/// </summary>
public sealed record TunnelRequest
{
    public required RuleDirection Direction { get; init; }
    public required string BindHost { get; init; }
    public required int BindPort { get; init; }
    public IReadOnlyList<(string Host, int Port)> Servers { get; init; } = [];
    public required string TargetHost { get; init; }
    public required int TargetPort { get; init; }

    /// <summary>
    /// The tunnel has no fixed target (a socks5:// listener: each connection names its own, and that connection's Open
    /// is checked with it): only the bind and server fields of a rule are matched, its target field is not. Written as
    /// <c>*:*</c> in <see cref="ToString"/>.
    /// </summary>
    public bool AnyTarget { get; init; }

    /// <summary>The request in rule format: a rule with exactly this text allows exactly this tunnel.</summary>
    public override string ToString()
    {
        var text = new StringBuilder(Direction == RuleDirection.LocalToRemote ? "L" : "R");
        var (first, firstPort, last, lastPort) = Direction == RuleDirection.LocalToRemote
            ? (BindHost, BindPort, TargetHost, TargetPort)
            : (TargetHost, TargetPort, BindHost, BindPort);
        text.Append('#').Append(HostPort(first, firstPort));
        foreach (var (host, port) in Servers)
        {
            text.Append('#').Append(HostPort(host, port));
        }
        text.Append('#').Append(AnyTarget && Direction == RuleDirection.LocalToRemote ? "*:*" : HostPort(last, lastPort));
        return text.ToString();
    }

    private static string HostPort(string host, int port) => PathPattern.IsPath(host) ? PathPattern.RuleText(host) :
        (host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('[') ? $"[{host}]" : host) + ":" + port.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// One allow-rule in the original qmTunnel's format, parsed:
/// <c>L#bind-host:bind-port#server[:port]#…#target-host:target-port</c> or
/// <c>R#remote-host:remote-port#server[:port]#…#bind-host:bind-port</c> (remote-host:remote-port is the target the
/// owning server connects to, bind-host:bind-port the listener on the last server).
/// Hosts and ports take <c>*</c> (any run of characters) and <c>?</c> (one character); an empty host, port or field
/// means any; hosts compare case-insensitively; IPv6 addresses go in brackets (<c>[::1]:80</c>); a port may also be
/// a range <c>1024-65535</c>; a server without <c>:port</c> matches any port. A middle field that is just <c>*</c>
/// (or empty) matches any number of servers, none included; any other middle field matches exactly one server. So
/// the original's defaults <c>L#*:*#*#*:*</c> and <c>R#*:*#*#*:*</c> allow every tunnel.
/// It does not resolve names: <c>db.lan</c> and its address are different hosts to a rule.
/// A path end (a request's host is then its URI, port 0) is matched by a path field, <c>unix:///run/qmt/*</c> or
/// <c>pipe://sql*</c> (<see cref="PathPattern"/>); of host:port fields only the full wildcard (<c>*:*</c>, <c>*</c>,
/// empty) matches it, so <c>L#*:*#*#*:*</c> still allows everything and <c>L#127.0.0.1:*#…</c> no socket listener.
/// </summary>
public sealed class AllowRule
{
    public const int MaxLength = 4096;
    public const int MaxServerFields = 32;

    private readonly EndpointPattern _first;
    private readonly EndpointPattern?[] _servers; // null = any number of servers
    private readonly EndpointPattern _last;

    private AllowRule(string text, RuleDirection direction, EndpointPattern first, EndpointPattern?[] servers, EndpointPattern last)
    {
        Text = text;
        Direction = direction;
        _first = first;
        _servers = servers;
        _last = last;
    }

    /// <summary>The rule as written (trimmed).</summary>
    public string Text { get; }
    public RuleDirection Direction { get; }

    /// <summary>Parses a rule; an invalid one throws AllowRuleInvalid naming the rule, the field and the fix.</summary>
    public static AllowRule Parse(string rule)
    {
        if (!TryParse(rule, out var parsed, out var error))
        {
            throw new QmTunnelException(SecurityErrorIds.AllowRuleInvalid, QmErrorKind.InvalidArgument, rule, error);
        }
        return parsed;
    }

    public static bool TryParse(string? rule, [NotNullWhen(true)] out AllowRule? parsed, [NotNullWhen(false)] out string? error)
    {
        parsed = null;
        var text = rule?.Trim() ?? string.Empty;
        if (text.Length == 0)
        {
            error = $"An allow-rule is empty. {FormatHint}";
            return false;
        }
        if (text.Length > MaxLength)
        {
            error = $"Allow-rule '{text[..40]}…' is {text.Length} characters long: at most {MaxLength}.";
            return false;
        }
        var fields = text.Split('#');
        if (fields.Length < 3)
        {
            error = $"Allow-rule '{text}' has {fields.Length} '#'-separated field{(fields.Length == 1 ? "" : "s")}: it needs at least the direction, the first host:port and the last host:port. {FormatHint}";
            return false;
        }
        if (fields.Length - 3 > MaxServerFields)
        {
            error = $"Allow-rule '{text}' has {fields.Length - 3} server fields: at most {MaxServerFields}.";
            return false;
        }
        RuleDirection direction;
        switch (fields[0].Trim())
        {
            case "L" or "l":
                direction = RuleDirection.LocalToRemote;
                break;
            case "R" or "r":
                direction = RuleDirection.RemoteToLocal;
                break;
            default:
                error = $"Allow-rule '{text}', field 1 (direction) '{fields[0].Trim()}': use L (local to remote) or R (remote to local). {FormatHint}";
                return false;
        }
        var firstName = direction == RuleDirection.LocalToRemote ? "bind host:port" : "remote host:port";
        var lastName = direction == RuleDirection.LocalToRemote ? "target host:port" : "bind host:port";
        if (!EndpointPattern.TryParse(fields[1], out var first, out var problem))
        {
            error = FieldError(text, 2, firstName, fields[1], problem);
            return false;
        }
        if (!EndpointPattern.TryParse(fields[^1], out var last, out problem))
        {
            error = FieldError(text, fields.Length, lastName, fields[^1], problem);
            return false;
        }
        var servers = new EndpointPattern?[fields.Length - 3];
        for (var i = 0; i < servers.Length; i++)
        {
            var field = fields[i + 2].Trim();
            if (field is "" or "*")
            {
                servers[i] = null;
                continue;
            }
            if (PathPattern.IsPath(field))
            {
                error = FieldError(text, i + 3, $"server {i + 1}", field, "a server is host[:port]; unix:// and pipe:// patterns go in the first and last fields.");
                return false;
            }
            if (!EndpointPattern.TryParse(field, out var server, out problem))
            {
                error = FieldError(text, i + 3, $"server {i + 1}", field, problem);
                return false;
            }
            servers[i] = server;
        }
        parsed = new AllowRule(text, direction, first, servers, last);
        error = null;
        return true;
    }

    private const string FormatHint =
        "Rules look like L#bind-host:bind-port#server[:port]#…#target-host:target-port or R#remote-host:remote-port#server[:port]#…#bind-host:bind-port, with * and ? wildcards; a Unix socket or pipe end is written unix:///run/qmt/* or pipe://name*; L#*:*#*#*:* allows every local-to-remote tunnel.";

    private static string FieldError(string rule, int index, string name, string field, string problem) =>
        $"Allow-rule '{rule}', field {index} ({name}) '{field.Trim()}': {problem}";

    public bool Matches(TunnelRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Direction != Direction)
        {
            return false;
        }
        var (firstHost, firstPort, lastHost, lastPort) = Direction == RuleDirection.LocalToRemote
            ? (request.BindHost, request.BindPort, request.TargetHost, request.TargetPort)
            : (request.TargetHost, request.TargetPort, request.BindHost, request.BindPort);
        return _first.Matches(firstHost, firstPort) && (request.AnyTarget || _last.Matches(lastHost, lastPort)) && MatchServers(request.Servers);
    }

    /// <summary>Glob over the server list: a null pattern is "any number of servers", others match one each.</summary>
    private bool MatchServers(IReadOnlyList<(string Host, int Port)> servers)
    {
        // reachable[j]: the patterns so far can match the first j servers.
        var reachable = new bool[servers.Count + 1];
        reachable[0] = true;
        foreach (var pattern in _servers)
        {
            var next = new bool[servers.Count + 1];
            for (var j = 0; j <= servers.Count; j++)
            {
                if (pattern is null)
                {
                    next[j] = reachable[j] || (j > 0 && next[j - 1]);
                }
                else
                {
                    next[j] = j > 0 && reachable[j - 1] && pattern.Matches(servers[j - 1].Host, servers[j - 1].Port);
                }
            }
            reachable = next;
        }
        return reachable[servers.Count];
    }

    public override string ToString() => Text;

    /// <summary><c>host[:port]</c> with wildcards; empty parts match anything.</summary>
    private sealed class EndpointPattern
    {
        private readonly string _host; // lower case, no brackets; "" or "*" = any
        private readonly string _port; // "" = any, else glob of digits
        private readonly int _low;
        private readonly int _high; // a range when _port is "-"
        private readonly System.Net.IPAddress? _exactAddress; // a host without wildcards that is an address
        private readonly PathPattern? _path; // a unix:// or pipe:// field: matches path ends only

        private EndpointPattern(PathPattern path) : this(string.Empty, string.Empty, 0, 0) => _path = path;

        private EndpointPattern(string host, string port, int low, int high)
        {
            _host = host;
            _port = port;
            _low = low;
            _high = high;
            if (!host.Contains('*', StringComparison.Ordinal) && !host.Contains('?', StringComparison.Ordinal)
                && System.Net.IPAddress.TryParse(host, out var address))
            {
                _exactAddress = address;
            }
        }


        public static bool TryParse(string field, [NotNullWhen(true)] out EndpointPattern? pattern, [NotNullWhen(false)] out string? problem)
        {
            pattern = null;
            field = field.Trim();
            if (PathPattern.IsPath(field))
            {
                pattern = PathPattern.TryParse(field, out var path, out problem) ? new EndpointPattern(path) : null;
                return pattern is not null;
            }
            string host;
            string port;
            if (field.StartsWith('['))
            {
                var close = field.IndexOf(']', StringComparison.Ordinal);
                if (close < 0)
                {
                    problem = "the '[' of an IPv6 address is not closed: write [address]:port, e.g. [::1]:5432.";
                    return false;
                }
                host = field[1..close];
                var rest = field[(close + 1)..];
                if (rest.Length > 0 && rest[0] != ':')
                {
                    problem = $"'{rest}' after the IPv6 address: write [address]:port, e.g. [::1]:5432.";
                    return false;
                }
                port = rest.Length > 0 ? rest[1..] : string.Empty;
                foreach (var c in host)
                {
                    if (!char.IsAsciiLetterOrDigit(c) && c is not ':' and not '.' and not '%' and not '*' and not '?')
                    {
                        problem = $"'{c}' is not allowed in an IPv6 address: use hex digits, ':', '.', and the wildcards * and ?.";
                        return false;
                    }
                }
            }
            else
            {
                var colons = field.Count(c => c == ':');
                if (colons > 1)
                {
                    problem = $"an IPv6 address needs brackets: write [{field}] for any port, or [address]:port.";
                    return false;
                }
                var colon = field.IndexOf(':', StringComparison.Ordinal);
                host = colon < 0 ? field : field[..colon];
                port = colon < 0 ? string.Empty : field[(colon + 1)..];
                foreach (var c in host)
                {
                    if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '.' and not '_' and not '*' and not '?')
                    {
                        problem = $"'{c}' is not allowed in a host: use a name or address with letters, digits, '-', '.', '_' and the wildcards * and ?{(c == '/' ? " (a Unix socket is written unix:///path, a pipe pipe://name)" : "")}.";
                        return false;
                    }
                }
            }
            if (host.Length > 255)
            {
                problem = "the host is longer than 255 characters.";
                return false;
            }
            port = port.Trim();
            if (port is "*")
            {
                port = string.Empty;
            }
            int low = 0, high = 0;
            var dash = port.IndexOf('-', StringComparison.Ordinal);
            if (dash >= 0)
            {
                if (!TryPort(port[..dash], out low) || !TryPort(port[(dash + 1)..], out high) || low > high)
                {
                    problem = $"port range '{port}' is not valid: write low-high with numbers from 0 to 65535, e.g. 1024-65535.";
                    return false;
                }
                port = "-";
            }
            else if (port.Length > 0)
            {
                if (port.Length > 5 || port.Any(c => !char.IsAsciiDigit(c) && c is not '*' and not '?'))
                {
                    problem = $"port '{port}' is not valid: write a number from 0 to 65535, a range like 1024-65535, * for any, or digits with * and ? wildcards (54?? is 5400 to 5499).";
                    return false;
                }
                if (!port.Contains('*', StringComparison.Ordinal) && !port.Contains('?', StringComparison.Ordinal))
                {
                    if (!TryPort(port, out var number))
                    {
                        problem = $"port '{port}' is out of range: use 0 to 65535.";
                        return false;
                    }
                    port = number.ToString(CultureInfo.InvariantCulture); // "080" matches 80
                }
            }
            pattern = new EndpointPattern(host.ToLowerInvariant(), port, low, high);
            problem = null;
            return true;
        }

        private static bool TryPort(string text, out int port) =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port <= 65535;

        public bool Matches(string host, int port)
        {
            if (_path is not null || PathPattern.IsPath(host ?? string.Empty))
            {
                return _path?.Matches(host!) ?? (_host is "" or "*" && _port.Length == 0);
            }
            if (_port.Length > 0)
            {
                if (_port == "-")
                {
                    if (port < _low || port > _high)
                    {
                        return false;
                    }
                }
                else if (!RuleGlob.Matches(_port, port.ToString(CultureInfo.InvariantCulture), ignoreCase: true))
                {
                    return false;
                }
            }
            if (_host is "" or "*")
            {
                return true;
            }
            host ??= string.Empty;
            if (host.Length >= 2 && host[0] == '[' && host[^1] == ']')
            {
                host = host[1..^1];
            }
            if (_exactAddress is not null && System.Net.IPAddress.TryParse(host, out var address))
            {
                // 127.0.0.1 and ::ffff:127.0.0.1 stay different; 0:0:0:0:0:0:0:1 and ::1 are the same address.
                return _exactAddress.Equals(address);
            }
            return RuleGlob.Matches(_host, host, ignoreCase: true);
        }
    }
}

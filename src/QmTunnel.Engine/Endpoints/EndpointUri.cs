using System.Globalization;
using System.Net;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Endpoints;

/// <summary>TLS versions a hop may be limited to.</summary>
public enum TlsVersion
{
    Tls12,
    Tls13,
}

/// <summary>The AEAD ciphers a hop may offer (each as its TLS 1.3 suite and its ECDHE TLS 1.2 suites).</summary>
public enum TlsCipher
{
    /// <summary>AES-128-GCM (<c>aes128gcm</c>): the fastest with AES instructions; the default first choice.</summary>
    Aes128Gcm,
    /// <summary>ChaCha20-Poly1305 (<c>chacha20</c>): fast without AES instructions.</summary>
    ChaCha20Poly1305,
    /// <summary>AES-256-GCM (<c>aes256gcm</c>).</summary>
    Aes256Gcm,
}

/// <summary>The URI schemes qmTunnel understands on the command line.</summary>
public enum EndpointScheme
{
    /// <summary><c>tcp://host:port</c>: an application endpoint.</summary>
    Tcp,
    /// <summary><c>qmt://host:port</c>: a tunnel server over TLS.</summary>
    Qmt,
    /// <summary><c>qmt+plain://host:port</c>: a tunnel server over an explicitly unencrypted link.</summary>
    QmtPlain,
    /// <summary><c>udp://host:port</c>: an application endpoint carrying datagrams (each client address an association).</summary>
    Udp,
    /// <summary><c>unix:///path</c>: a Unix domain (stream) socket, by its path.</summary>
    Unix,
    /// <summary><c>pipe://name</c>: a named pipe (on Unix, .NET maps the name to a socket path; see docs).</summary>
    Pipe,
    /// <summary><c>socks5://host:port</c>: a listener only; each client names its target (dynamic forwarding).</summary>
    Socks5,
}

/// <summary>
/// A parsed endpoint: scheme, host and port, and for a tunnel server its options (pin, TLS, login user, link timing).
/// An application endpoint is either network (<c>tcp</c>, <c>udp</c>, <c>socks5</c>: host and port) or path
/// (<c>unix</c>, <c>pipe</c>: <see cref="Path"/>, with Host empty and Port 0). Parsing collects the exact problem and
/// says how to write it right. It does not resolve names (that happens on the server at that end of the tunnel).
/// </summary>
public sealed partial record EndpointUri(EndpointScheme Scheme, string Host, int Port)
{
    /// <summary>
    /// For a <c>qmt://</c> server: the SHA-256 thumbprint (64 hex digits) its certificate must have, written
    /// <c>qmt://host:9200?sha256=HEX</c>. Null: the certificate is pinned on first use instead.
    /// </summary>
    public string? CertificateThumbprint { get; init; }

    public const int DefaultServerPort = 9200;

    public static string SchemeText(EndpointScheme scheme) => scheme switch
    {
        EndpointScheme.Tcp => "tcp",
        EndpointScheme.Qmt => "qmt",
        EndpointScheme.QmtPlain => "qmt+plain",
        EndpointScheme.Udp => "udp",
        EndpointScheme.Unix => "unix",
        EndpointScheme.Pipe => "pipe",
        EndpointScheme.Socks5 => "socks5",
        _ => throw new ArgumentOutOfRangeException(nameof(scheme)),
    };

    public bool IsServer => Scheme is EndpointScheme.Qmt or EndpointScheme.QmtPlain;

    public override string ToString()
    {
        if (IsPath)
        {
            return PathText();
        }
        var host = Host.Contains(':', StringComparison.Ordinal) ? "[" + Host + "]" : Host;
        var options = new List<string>(4);
        if (CertificateThumbprint is not null)
        {
            options.Add("sha256=" + CertificateThumbprint);
        }
        if (MinimumTls is { } tls)
        {
            options.Add(tls == TlsVersion.Tls13 ? "tls=1.3" : "tls=1.2");
        }
        if (Ciphers is { Count: > 0 } ciphers)
        {
            options.Add("cipher=" + string.Join(',', ciphers.Select(CipherText)));
        }
        options.AddRange(TimingOptions(Timing));
        options.AddRange(CompressionOptions(Scheme, Compression));
        var query = options.Count == 0 ? "" : "?" + string.Join('&', options);
        var user = User is null ? "" : User + "@";
        return string.Create(CultureInfo.InvariantCulture, $"{SchemeText(Scheme)}://{user}{host}:{Port}{query}");
    }

    /// <summary>For a tunnel server: the user this side logs in as (<c>qmt://alice@host:9200</c>); null: none named.</summary>
    public string? User { get; init; }

    /// <summary>
    /// "host:port" (IPv6 in brackets), as allow-rules and pins name a server; for a path endpoint its URI
    /// (<c>unix:///run/app.sock</c>, <c>pipe://name</c>), which is what allow-rules match a path against.
    /// </summary>
    public string HostPort => IsPath ? ToString() : Security.AccessControl.HostPort(Host, Port);

    /// <summary>For a <c>qmt://</c> server: the lowest TLS version accepted (<c>?tls=1.3</c>); null: 1.2 or 1.3.</summary>
    public TlsVersion? MinimumTls { get; init; }

    /// <summary>
    /// For a <c>qmt://</c> server: the only ciphers offered (<c>?cipher=chacha20,aes256gcm</c>); the accepting server
    /// picks among them by its own preference (AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM). Null: all three.
    /// </summary>
    public IReadOnlyList<TlsCipher>? Ciphers { get; init; }

    public static string CipherText(TlsCipher cipher) => cipher switch
    {
        TlsCipher.Aes128Gcm => "aes128gcm",
        TlsCipher.ChaCha20Poly1305 => "chacha20",
        TlsCipher.Aes256Gcm => "aes256gcm",
        _ => throw new ArgumentOutOfRangeException(nameof(cipher)),
    };

    /// <summary>The server's address without its options and user (what pins are keyed by).</summary>
    public string Address => (this with { CertificateThumbprint = null, MinimumTls = null, User = null, Ciphers = null, Timing = LinkTiming.Default, Compression = DefaultCompression(Scheme) }).ToString();

    /// <summary>
    /// Parses an application endpoint: <c>tcp://host:port</c>, <c>udp://host:port</c>, <c>unix:///path</c>,
    /// <c>pipe://name</c> or (a listener only: <see cref="ParseListen"/>) <c>socks5://host:port</c>.
    /// </summary>
    public static EndpointUri ParseApplication(string? text, string what)
    {
        var uri = Parse(text, what, requirePort: true);
        if (uri.IsServer)
        {
            throw Invalid(text, what, $"'{text}' names a tunnel server; {what} needs an application endpoint such as tcp://127.0.0.1:5432.");
        }
        return uri;
    }

    /// <summary>A target (where the last server, or a reverse tunnel's owner, connects): any application endpoint but socks5://.</summary>
    public static EndpointUri ParseTarget(string? text, string what)
    {
        var uri = ParseApplication(text, what);
        if (uri.Scheme == EndpointScheme.Socks5)
        {
            throw Invalid(text, what, $"{what} '{text}': socks5:// is a listener (each client names its own target); a target is tcp://, udp://, unix:/// or pipe://.");
        }
        if (uri.UnixMode is not null)
        {
            throw Invalid(text, what, $"{what} '{text}': mode= sets the permissions of a socket qmTunnel creates, so it applies to -Listen only; leave it out of {what}.");
        }
        return uri;
    }

    /// <summary>Parses a tunnel server: <c>qmt://host[:9200]</c> (TLS) or <c>qmt+plain://host[:9200]</c> (unencrypted).</summary>
    public static EndpointUri ParseServer(string? text, string what)
    {
        var uri = Parse(text, what, requirePort: false);
        if (!uri.IsServer)
        {
            throw Invalid(text, what, $"'{text}' is not a tunnel server address; write it as qmt://host:9200 (or qmt+plain://host:9200 for an unencrypted link).");
        }
        if (uri.Port == 0)
        {
            throw Invalid(text, what, $"'{text}': a tunnel server cannot be reached on port 0; give its real port (9200 by default).");
        }
        return uri;
    }

    private static EndpointUri Parse(string? text, string what, bool requirePort)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw Invalid(text, what, requirePort
                ? $"{what} is empty. Give an application endpoint such as tcp://127.0.0.1:8080."
                : $"{what} is empty. Give a tunnel server such as qmt://host:9200.");
        }
        var trimmed = text.Trim();
        var sep = trimmed.IndexOf("://", StringComparison.Ordinal);
        if (sep <= 0)
        {
            // Suggest what this parameter takes: a server address where a server is expected (requirePort is false
            // only for servers), never a scheme the same parameter would then refuse.
            var bare = sep == 0 ? trimmed[3..] : trimmed;
            throw Invalid(text, what, requirePort
                ? $"{what} '{text}' has no scheme. Write it as tcp://{bare} (an application endpoint)."
                : $"{what} '{text}' has no scheme. Write it as qmt://{bare} (a tunnel server over TLS; qmt+plain:// for an unencrypted link).");
        }
        var schemeText = trimmed[..sep].ToLowerInvariant();
        EndpointScheme scheme = schemeText switch
        {
            "tcp" => EndpointScheme.Tcp,
            "qmt" => EndpointScheme.Qmt,
            "qmt+plain" => EndpointScheme.QmtPlain,
            "udp" => EndpointScheme.Udp,
            "unix" => EndpointScheme.Unix,
            "pipe" => EndpointScheme.Pipe,
            "socks5" => EndpointScheme.Socks5,
            _ => throw Invalid(text, what, requirePort
                ? $"{what} '{text}' has an unknown scheme '{schemeText}'. Use tcp://, udp://, unix:///path, pipe://name or (to listen) socks5://."
                : $"{what} '{text}' has an unknown scheme '{schemeText}'. Use qmt:// or qmt+plain://."),
        };
        var rest = trimmed[(sep + 3)..];
        if (scheme is EndpointScheme.Unix or EndpointScheme.Pipe)
        {
            return ParsePath(text, what, scheme, rest);
        }
        var options = QueryOptions.None;
        var query = rest.IndexOf('?', StringComparison.Ordinal);
        if (query >= 0)
        {
            options = ParseQuery(text, what, scheme, rest[(query + 1)..]);
            rest = rest[..query];
        }
        rest = rest.TrimEnd('/');
        string? user = null;
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            if (!(scheme is EndpointScheme.Qmt or EndpointScheme.QmtPlain))
            {
                throw Invalid(text, what, $"{what} '{text}' must be {schemeText}://host:port with no user part.");
            }
            user = Uri.UnescapeDataString(rest[..at]);
            rest = rest[(at + 1)..];
            if (!Security.SecurityNames.IsValid(user))
            {
                throw Invalid(text, what, $"{what} '{text}': '{user}' is not a user name (1 to 64 letters, digits, '-', '_' or '.'). A password never goes in the URI: give it with New-QmTunnelHop -Credential.");
            }
        }
        if (rest.Contains('/', StringComparison.Ordinal) || rest.Contains('?', StringComparison.Ordinal) || rest.Contains('@', StringComparison.Ordinal))
        {
            throw Invalid(text, what, $"{what} '{text}' must be scheme://[user@]host:port with no path.");
        }
        string host;
        string? portText = null;
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                throw Invalid(text, what, $"{what} '{text}' opens an IPv6 address with '[' but never closes it; write [::1]:port.");
            }
            host = rest[1..close];
            var after = rest[(close + 1)..];
            if (after.Length > 0)
            {
                if (after[0] != ':')
                {
                    throw Invalid(text, what, $"{what} '{text}': expected ':port' after the IPv6 address.");
                }
                portText = after[1..];
            }
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                throw Invalid(text, what, $"{what} '{text}': '{host}' is not an IPv6 address.");
            }
        }
        else
        {
            var colon = rest.LastIndexOf(':');
            if (colon >= 0 && rest.IndexOf(':') != colon)
            {
                throw Invalid(text, what, $"{what} '{text}': put an IPv6 address in brackets, e.g. tcp://[::1]:8080.");
            }
            host = colon >= 0 ? rest[..colon] : rest;
            portText = colon >= 0 ? rest[(colon + 1)..] : null;
        }
        if (host.Length == 0)
        {
            throw Invalid(text, what, $"{what} '{text}' has no host. Write e.g. tcp://127.0.0.1:8080 (use 0.0.0.0 to listen on every interface).");
        }
        if (Uri.CheckHostName(host) == UriHostNameType.Unknown)
        {
            throw Invalid(text, what, $"{what} '{text}': '{host}' is not a valid host name or IP address.");
        }
        int port;
        if (portText is null)
        {
            if (requirePort)
            {
                throw Invalid(text, what, $"{what} '{text}' has no port. Write it as {schemeText}://{host}:PORT.");
            }
            port = DefaultServerPort;
        }
        else if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port < 0 || port > 65535)
        {
            throw Invalid(text, what, $"{what} '{text}': port '{portText}' is not a number from 0 to 65535.");
        }
        return new EndpointUri(scheme, host, port)
        {
            CertificateThumbprint = options.Pin, MinimumTls = options.MinimumTls, User = user, Ciphers = options.Ciphers, Timing = options.Timing,
            Compression = options.Compression ?? DefaultCompression(scheme),
        };
    }

    /// <summary>The options of a server address, as <see cref="ParseQuery"/> reads them.</summary>
    private sealed record QueryOptions(string? Pin, TlsVersion? MinimumTls, IReadOnlyList<TlsCipher>? Ciphers, LinkTiming Timing, LinkCompression? Compression = null)
    {
        public static readonly QueryOptions None = new(null, null, null, LinkTiming.Default);
    }

    /// <summary>
    /// Parses the options of a server address, joined by '&amp;': for <c>qmt://</c> only, <c>sha256=HEX</c>,
    /// <c>tls=1.2|1.3</c> and <c>cipher=...</c>; for both <c>qmt://</c> and <c>qmt+plain://</c>, the link timing
    /// (<see cref="TimingKeys"/>, checked together by <see cref="LinkTiming.Validate(Func{string, string})"/>).
    /// </summary>
    private static QueryOptions ParseQuery(string? text, string what, EndpointScheme scheme, string query)
    {
        if (!(scheme is EndpointScheme.Qmt or EndpointScheme.QmtPlain))
        {
            throw Invalid(text, what, $"{what} '{text}' takes no query: only a tunnel server address (qmt://host:port?sha256=...&tls=1.3) and a unix:/// listener (?mode=0660) take options.");
        }
        string? pin = null;
        TlsVersion? tls = null;
        List<TlsCipher>? ciphers = null;
        var timing = LinkTiming.Default;
        CompressionAlgorithm? compress = null;
        int? compressLevel = null;
        foreach (var option in query.Split('&'))
        {
            var eq = option.IndexOf('=', StringComparison.Ordinal);
            var key = (eq < 0 ? option : option[..eq]).ToLowerInvariant();
            var value = eq < 0 ? string.Empty : option[(eq + 1)..];
            if (TryParseTimingOption(text, what, key, value, ref timing) || TryParseCompressionOption(text, what, key, value, ref compress, ref compressLevel))
            {
                continue;
            }
            if (scheme != EndpointScheme.Qmt && key is "sha256" or "tls" or "cipher")
            {
                throw Invalid(text, what, $"{what} '{text}': {key}= is a TLS option, and qmt+plain:// is an unencrypted link. Write the address as qmt://... " +
                    $"to use TLS, or leave {key}= out (an unencrypted link takes only the timing options {TimingOptionList} and {CompressOptionList}).");
            }
            switch (key)
            {
                case "sha256":
                    var hex = new string(value.Where(c => c != ':').ToArray()).ToUpperInvariant();
                    if (hex.Length != 64 || !hex.All(Uri.IsHexDigit))
                    {
                        throw Invalid(text, what, $"{what} '{text}': '{value}' is not a SHA-256 thumbprint (64 hex digits, colons allowed). Get-QmTunnelServer on that server shows its CertificateThumbprint.");
                    }
                    pin = hex;
                    break;
                case "tls":
                    tls = value switch
                    {
                        "1.2" => TlsVersion.Tls12,
                        "1.3" => TlsVersion.Tls13,
                        _ => throw Invalid(text, what, $"{what} '{text}': tls={value} is not a TLS version this server speaks; use tls=1.2 (1.2 or 1.3) or tls=1.3 (1.3 only)."),
                    };
                    break;
                case "cipher":
                    ciphers = [];
                    foreach (var name in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        var cipher = Enum.GetValues<TlsCipher>().Cast<TlsCipher?>().FirstOrDefault(c => string.Equals(CipherText(c!.Value), name, StringComparison.OrdinalIgnoreCase))
                            ?? throw Invalid(text, what, $"{what} '{text}': '{name}' is not a cipher a link offers; use aes128gcm, chacha20 or aes256gcm (comma-separated).");
                        if (!ciphers.Contains(cipher))
                        {
                            ciphers.Add(cipher);
                        }
                    }
                    if (ciphers.Count == 0)
                    {
                        throw Invalid(text, what, $"{what} '{text}': cipher= names no cipher; use aes128gcm, chacha20 or aes256gcm.");
                    }
                    break;
                default:
                    throw Invalid(text, what, scheme == EndpointScheme.Qmt
                        ? $"{what} '{text}': unknown option '{key}'. A server address takes sha256=<certificate thumbprint>, tls=1.2 or tls=1.3 (the lowest TLS version accepted), " +
                          $"cipher=aes128gcm,chacha20,aes256gcm (the only ciphers offered), {CompressOptionList} and the link timing options {TimingOptionList}."
                        : $"{what} '{text}': unknown option '{key}'. An unencrypted server address (qmt+plain://) takes only the link timing options {TimingOptionList} and {CompressOptionList}.");
            }
        }
        CheckTiming(text, what, timing);
        return new QueryOptions(pin, tls, ciphers, timing, ResolveCompression(text, what, scheme, compress, compressLevel));
    }

    private static QmTunnelException Invalid(string? text, string what, string message) =>
        new(ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, text ?? string.Empty, message);
}

using System.Globalization;
using System.Text;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// Path endpoints: <c>unix:///absolute/path[?mode=0660]</c> (a Unix domain stream socket) and <c>pipe://name</c> (a named
/// pipe; on Unix .NET carries it over a Unix socket at <c>$TMPDIR/CoreFxPipe_name</c>). A path endpoint has no host or
/// port: <see cref="EndpointUri.Host"/> is empty and <see cref="EndpointUri.Port"/> 0.
/// </summary>
public sealed partial record EndpointUri
{
    /// <summary>The longest socket path the kernel takes (sun_path is 108 bytes with its terminating NUL).</summary>
    public const int MaxUnixPathBytes = 107;

    /// <summary>The longest pipe name accepted.</summary>
    public const int MaxPipeNameLength = 128;

    /// <summary>For <c>unix://</c>: the absolute socket path; for <c>pipe://</c>: the pipe's name. Null for network endpoints.</summary>
    public string? Path { get; init; }

    /// <summary>For a <c>unix://</c> listener: the permission bits its socket file gets (<c>?mode=0660</c>); null: the process umask's.</summary>
    public int? UnixMode { get; init; }

    /// <summary>Whether this endpoint is named by a path (unix, pipe) rather than host and port.</summary>
    public bool IsPath => Scheme is EndpointScheme.Unix or EndpointScheme.Pipe;

    /// <summary>Whether this endpoint carries datagrams (udp) rather than a byte stream.</summary>
    public bool IsDatagram => Scheme == EndpointScheme.Udp;

    /// <summary>A path endpoint for <paramref name="path"/> (unix: absolute path; pipe: name), without options.</summary>
    public static EndpointUri ForPath(EndpointScheme scheme, string path) => new(scheme, string.Empty, 0) { Path = path };

    private string PathText() => Scheme == EndpointScheme.Unix
        ? "unix://" + Path + (UnixMode is { } mode ? "?mode=" + Convert.ToString(mode, 8).PadLeft(4, '0') : string.Empty)
        : "pipe://" + Path;

    private static EndpointUri ParsePath(string? text, string what, EndpointScheme scheme, string rest)
    {
        int? mode = null;
        var query = rest.IndexOf('?', StringComparison.Ordinal);
        if (query >= 0)
        {
            mode = ParseMode(text, what, scheme, rest[(query + 1)..]);
            rest = rest[..query];
        }
        if (scheme == EndpointScheme.Pipe)
        {
            if (rest.Length == 0 || rest.Length > MaxPipeNameLength || !rest.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            {
                throw Invalid(text, what, $"{what} '{text}': a pipe name is 1 to {MaxPipeNameLength} letters, digits, '.', '_' or '-', written pipe://name (e.g. pipe://sqlquery).");
            }
            return ForPath(EndpointScheme.Pipe, rest);
        }
        if (!rest.StartsWith('/'))
        {
            throw Invalid(text, what, $"{what} '{text}': a Unix socket is named by its absolute path, written with three slashes: unix:///run/app.sock.");
        }
        if (rest.Length < 2 || rest.EndsWith('/'))
        {
            throw Invalid(text, what, $"{what} '{text}' names a directory, not a socket file; write unix:///run/app.sock.");
        }
        if (rest.Contains("//", StringComparison.Ordinal) || rest.Split('/').Any(part => part is "." or ".."))
        {
            // A rule may allow unix:///run/qmt/* only: a path is written once, in its plain form, so no '..' walks out of it.
            throw Invalid(text, what, $"{what} '{text}': write the socket's plain absolute path, without '//', '.' or '..' parts.");
        }
        if (rest.Any(c => char.IsControl(c) || c is '#' or '*' or '?'))
        {
            throw Invalid(text, what, $"{what} '{text}': the path has a control character or one of # * ? (kept for allow-rules); rename the socket.");
        }
        if (Encoding.UTF8.GetByteCount(rest) > MaxUnixPathBytes)
        {
            throw Invalid(text, what, $"{what} '{text}': a Unix socket path is at most {MaxUnixPathBytes} bytes (the kernel's limit); use a shorter path, e.g. under /run.");
        }
        return ForPath(EndpointScheme.Unix, rest) with { UnixMode = mode };
    }

    private static int ParseMode(string? text, string what, EndpointScheme scheme, string query)
    {
        if (scheme != EndpointScheme.Unix)
        {
            throw Invalid(text, what, $"{what} '{text}' takes no query: pipe://name has no options.");
        }
        var eq = query.IndexOf('=', StringComparison.Ordinal);
        var key = eq < 0 ? query : query[..eq];
        var value = eq < 0 ? string.Empty : query[(eq + 1)..];
        if (!string.Equals(key, "mode", StringComparison.OrdinalIgnoreCase) || query.Contains('&', StringComparison.Ordinal))
        {
            throw Invalid(text, what, $"{what} '{text}': a unix:/// endpoint takes one option, mode=<octal permissions> (e.g. ?mode=0660).");
        }
        if (value.Length is < 3 or > 4 || !value.All(c => c is >= '0' and <= '7'))
        {
            throw Invalid(text, what, $"{what} '{text}': mode={value} is not octal permissions such as 0660 or 600.");
        }
        return Convert.ToInt32(value, 8) is var bits && bits <= 0x1FF
            ? bits
            : throw Invalid(text, what, $"{what} '{text}': mode={value} sets more than the permission bits; use at most 0777.");
    }

    /// <summary>The mode as <c>0660</c>, for messages.</summary>
    public static string ModeText(int mode) => Convert.ToString(mode, 8).PadLeft(4, '0').ToString(CultureInfo.InvariantCulture);
}

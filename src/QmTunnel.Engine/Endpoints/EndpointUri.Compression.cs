using System.Globalization;
using QmTunnel.Engine.Links;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// The compression options of a server address (<c>qmt://</c> and <c>qmt+plain://</c> alike): <c>compress=none|lz4|zstd</c>
/// and <c>compress-level=N</c> (docs/protocol.md, "Compression"). The default depends on the scheme: none on a TLS hop
/// (compressed lengths leak what TLS hides, docs/security.md), LZ4 on an unencrypted one (the original qmTunnel's default);
/// only what differs from that default is written. It reads and writes text only: the link asks for it in its Hello.
/// </summary>
public sealed partial record EndpointUri
{
    /// <summary>
    /// For a tunnel server: the compression asked for on the link to it (<c>qmt://host:9200?compress=lz4</c>). A tunnel
    /// sends the later hops' addresses to its first server as the route, so each gateway asks its next hop for the
    /// compression given for that hop. Application endpoints: None.
    /// </summary>
    public LinkCompression Compression { get; init; } = DefaultCompression(Scheme);

    /// <summary>The compression of an address that names none: LZ4 for qmt+plain://, none otherwise (qmt://: TLS).</summary>
    public static LinkCompression DefaultCompression(EndpointScheme scheme) =>
        scheme == EndpointScheme.QmtPlain ? LinkCompression.DefaultForHop(tls: false) : LinkCompression.None;

    private const string CompressOptionList = "compress=none|lz4|zstd, compress-level=";

    /// <summary>"compress=..." and "compress-level=..." when <paramref name="compression"/> is not the scheme's default.</summary>
    private static IEnumerable<string> CompressionOptions(EndpointScheme scheme, LinkCompression compression)
    {
        if (compression == DefaultCompression(scheme))
        {
            yield break;
        }
        yield return "compress=" + LinkCompression.Text(compression.Algorithm);
        if (compression.Enabled && compression.Level != LinkCompression.DefaultFor(compression.Algorithm).Level)
        {
            yield return "compress-level=" + compression.Level.ToString(CultureInfo.InvariantCulture);
        }
    }

    /// <summary>
    /// Reads <c>compress=</c> or <c>compress-level=</c> into <paramref name="algorithm"/> / <paramref name="level"/>; false
    /// for any other key. An unknown algorithm or a level that is not a number is EndpointUriInvalid naming the option.
    /// </summary>
    private static bool TryParseCompressionOption(string? text, string what, string key, string value, ref CompressionAlgorithm? algorithm, ref int? level)
    {
        switch (key)
        {
            case "compress":
                algorithm = LinkCompression.Parse(value)
                    ?? throw Invalid(text, what, $"{what} '{text}': compress={value} is not a compression; use compress=none, compress=lz4 or compress=zstd.");
                return true;
            case "compress-level":
                if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed))
                {
                    throw Invalid(text, what, $"{what} '{text}': compress-level={value} is not a whole number; lz4 takes 0 to 12, zstd 1 to 19.");
                }
                level = parsed;
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// The compression of the options read (the scheme's default algorithm when only a level is given, the algorithm's
    /// default level when only an algorithm is), checked: a level outside the algorithm's range, or a level with none, is
    /// EndpointUriInvalid. Null when the address names neither.
    /// </summary>
    private static LinkCompression? ResolveCompression(string? text, string what, EndpointScheme scheme, CompressionAlgorithm? algorithm, int? level)
    {
        if (algorithm is null && level is null)
        {
            return null;
        }
        var chosen = algorithm ?? DefaultCompression(scheme).Algorithm;
        var compression = new LinkCompression(chosen, level ?? LinkCompression.DefaultFor(chosen).Level);
        if (compression.Problem("compress-level=") is { } problem)
        {
            throw Invalid(text, what, $"{what} '{text}': {problem}");
        }
        return compression;
    }
}

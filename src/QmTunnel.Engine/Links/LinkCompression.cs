using System.Globalization;

namespace QmTunnel.Engine.Links;

/// <summary>How a link compresses the application data it sends. Wire values (the Hello's compression byte): never renumber.</summary>
public enum CompressionAlgorithm : byte
{
    /// <summary>Nothing is compressed.</summary>
    None = 0,
    /// <summary>LZ4 block format (K4os.Compression.LZ4): fast, modest ratio. Levels 0-2 fast, 3-12 high compression.</summary>
    Lz4 = 1,
    /// <summary>Zstandard frames (ZstdSharp.Port): better ratio, more CPU. Levels 1-19.</summary>
    Zstd = 2,
}

/// <summary>
/// The compression of a link (docs/protocol.md, "Compression"): the algorithm and the level this side compresses with.
/// A hop asks for it in its address (<c>qmt://host?compress=zstd&amp;compress-level=6</c>, New-QmTunnelHop -Compression);
/// the dialer asks in its Hello and the acceptor agrees or answers <see cref="None"/>; both sides then compress what they
/// send on that link. Defaults: off on TLS hops (qmt://, docs/security.md: compressed lengths leak what TLS hides),
/// LZ4 on unencrypted hops (qmt+plain://, as the original qmTunnel had it on). It does no compressing (FrameCompression does).
/// </summary>
public sealed record LinkCompression(CompressionAlgorithm Algorithm, int Level)
{
    /// <summary>Nothing compressed.</summary>
    public static LinkCompression None { get; } = new(CompressionAlgorithm.None, 0);

    /// <summary>LZ4 at level 0 (the fast compressor).</summary>
    public static LinkCompression Lz4 { get; } = new(CompressionAlgorithm.Lz4, 0);

    /// <summary>Zstandard at level 3 (zstd's own default).</summary>
    public static LinkCompression Zstd { get; } = new(CompressionAlgorithm.Zstd, 3);

    public bool Enabled => Algorithm != CompressionAlgorithm.None;

    /// <summary>The algorithm at its default level.</summary>
    public static LinkCompression DefaultFor(CompressionAlgorithm algorithm) => algorithm switch
    {
        CompressionAlgorithm.Lz4 => Lz4,
        CompressionAlgorithm.Zstd => Zstd,
        _ => None,
    };

    /// <summary>
    /// The levels a link takes for <paramref name="algorithm"/>: LZ4 0-12 (0-2 the fast compressor, 3-12 LZ4 HC), Zstandard
    /// 1-19 (20-22, zstd's "ultra" levels, are left out: on frames of at most 256 KiB they cost several times the CPU of 19
    /// for a gain of about a percent, and the peer compresses its direction at the same level). None: 0 only.
    /// </summary>
    public static (int Min, int Max) LevelRange(CompressionAlgorithm algorithm) => algorithm switch
    {
        CompressionAlgorithm.Lz4 => (0, 12),
        CompressionAlgorithm.Zstd => (1, 19),
        _ => (0, 0),
    };

    /// <summary>The word of the address and of New-QmTunnelHop: none, lz4, zstd.</summary>
    public static string Text(CompressionAlgorithm algorithm) => algorithm switch
    {
        CompressionAlgorithm.None => "none",
        CompressionAlgorithm.Lz4 => "lz4",
        CompressionAlgorithm.Zstd => "zstd",
        _ => ((byte)algorithm).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The algorithm a word names (case-insensitive), or null.</summary>
    public static CompressionAlgorithm? Parse(string text) => text.ToLowerInvariant() switch
    {
        "none" or "off" => CompressionAlgorithm.None,
        "lz4" => CompressionAlgorithm.Lz4,
        "zstd" => CompressionAlgorithm.Zstd,
        _ => null,
    };

    /// <summary>
    /// What is wrong with this setting, or null: an unknown algorithm, or a level outside <see cref="LevelRange"/>.
    /// <paramref name="levelName"/> is how the caller names the level (<c>compress-level=</c>, <c>-CompressionLevel</c>).
    /// </summary>
    public string? Problem(string levelName)
    {
        if (!Enum.IsDefined(Algorithm))
        {
            return $"compression {(byte)Algorithm} is not one qmTunnel knows; use none, lz4 or zstd.";
        }
        var (min, max) = LevelRange(Algorithm);
        if (Level >= min && Level <= max)
        {
            return null;
        }
        return Algorithm == CompressionAlgorithm.None
            ? $"{levelName}{Level} needs a compression: give lz4 (levels 0-12) or zstd (levels 1-19), or leave the level out."
            : $"{levelName}{Level} is not a {Text(Algorithm)} level; {Text(Algorithm)} takes {min} to {max} ({(Algorithm == CompressionAlgorithm.Lz4 ? "0 the fastest, 3-12 LZ4 HC" : "3 the default, higher is smaller and slower")}).";
    }

    /// <summary>The default of a hop: off on TLS (qmt://), LZ4 on an unencrypted hop (qmt+plain://).</summary>
    public static LinkCompression DefaultForHop(bool tls) => tls ? None : Lz4;

    /// <summary>
    /// The acceptor's answer to a dialer asking for <paramref name="asked"/> (the raw bytes of its Hello): that algorithm
    /// and level when this side knows them and <paramref name="allowed"/>, else <see cref="None"/> with the reason (never
    /// an error: a dialer asking for something unknown gets an uncompressed link).
    /// </summary>
    internal static (LinkCompression Agreed, string? Refusal) Answer(byte algorithm, byte level, bool allowed)
    {
        if (algorithm == (byte)CompressionAlgorithm.None)
        {
            return (None, null);
        }
        var asked = new LinkCompression((CompressionAlgorithm)algorithm, level);
        if (asked.Problem("level ") is { } problem)
        {
            return (None, problem);
        }
        return allowed ? (asked, null) : (None, "this server does not compress links (its AcceptCompression is off; Set-QmTunnelServerConfig -AcceptCompression turns it on)");
    }

    public override string ToString() => Enabled ? string.Create(CultureInfo.InvariantCulture, $"{Text(Algorithm)}:{Level}") : "none";
}

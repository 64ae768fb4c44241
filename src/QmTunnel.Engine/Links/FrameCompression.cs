using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using K4os.Compression.LZ4;
using QmTunnel.Engine.Protocol;
using ZstdSharp;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Compresses and decompresses one Data payload (docs/protocol.md, "Compression"). A compressed payload is a u32
/// big-endian uncompressed length, then one LZ4 block or one Zstandard frame; each frame stands alone (no dictionary or
/// window across frames), so a frame kept for a resume can be resent on another connection as it is. Compression is
/// tried only for payloads of at least <see cref="MinPayload"/> bytes and kept only when the result, prefix included,
/// is smaller. Decompression trusts nothing: the declared length is checked against the receiver's limit before a byte
/// is allocated, the output buffer is exactly that long, and the data must fill it exactly. It does no I/O and knows
/// nothing of links or streams.
/// </summary>
public static class FrameCompression
{
    /// <summary>Smaller payloads are never compressed (the original qmTunnel's threshold).</summary>
    public const int MinPayload = 512;

    /// <summary>The u32 uncompressed length in front of a compressed payload.</summary>
    public const int PrefixSize = 4;

    /// <summary>Zstandard window the decompressor accepts: 2^20, the largest a frame of at most 1 MiB needs.</summary>
    private const int MaxWindowLog = 20;

    /// <summary>
    /// Compresses <paramref name="source"/> into <paramref name="destination"/> (prefix, then the compressed data) with
    /// <paramref name="compression"/>. Returns the bytes written, always fewer than <c>source.Length</c>, or 0 when the
    /// payload is below <see cref="MinPayload"/>, compression is off, or the result would not be smaller (then send it raw).
    /// </summary>
    public static int TryCompress(LinkCompression compression, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (!compression.Enabled || source.Length < MinPayload)
        {
            return 0;
        }
        // Only a result strictly smaller than the source is any use: give the compressor no more room than that.
        var room = Math.Min(destination.Length, source.Length - 1) - PrefixSize;
        var body = destination.Slice(PrefixSize, room);
        int written;
        switch (compression.Algorithm)
        {
            case CompressionAlgorithm.Lz4:
                written = LZ4Codec.Encode(source, body, (LZ4Level)compression.Level);
                break;
            case CompressionAlgorithm.Zstd:
                var compressor = ZstdCompressors.Rent(compression.Level);
                try
                {
                    if (!compressor.TryWrap(source, body, out written))
                    {
                        written = 0;
                    }
                }
                catch (ZstdException)
                {
                    written = 0; // did not fit
                }
                finally
                {
                    ZstdCompressors.Return(compression.Level, compressor);
                }
                break;
            default:
                return 0;
        }
        if (written <= 0)
        {
            return 0;
        }
        BinaryPrimitives.WriteInt32BigEndian(destination, source.Length);
        return PrefixSize + written;
    }

    /// <summary>
    /// The uncompressed length a compressed payload declares, checked before anything is allocated: the payload has a
    /// prefix and data, the length is from 1 to <paramref name="maxPayload"/> (the largest payload the receiver announced),
    /// and the compressed form is smaller than it. Anything else is a ProtocolException (FrameTooLarge for a length over
    /// the limit, MalformedFrame otherwise).
    /// </summary>
    public static int DeclaredLength(ReadOnlySequence<byte> payload, int maxPayload)
    {
        if (payload.Length <= PrefixSize)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame,
                $"a compressed Data payload of {payload.Length} bytes has no room for its {PrefixSize}-byte length and data");
        }
        Span<byte> prefix = stackalloc byte[PrefixSize];
        payload.Slice(0, PrefixSize).CopyTo(prefix);
        var declared = BinaryPrimitives.ReadUInt32BigEndian(prefix);
        var limit = Math.Min(maxPayload, FrameCodec.HardMaxPayload);
        if (declared > (uint)limit)
        {
            throw new ProtocolException(ProtocolErrorCode.FrameTooLarge,
                $"a compressed Data payload declares {declared} uncompressed bytes; the limit is {limit} (decompression bomb refused)");
        }
        if (payload.Length - PrefixSize >= declared)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame,
                $"a compressed Data payload of {payload.Length} bytes declares {declared} uncompressed bytes: compressed data must be smaller than what it carries");
        }
        return (int)declared;
    }

    /// <summary>
    /// Decompresses a payload whose <see cref="DeclaredLength"/> is <paramref name="declared"/> into a buffer rented from
    /// <see cref="ArrayPool{T}.Shared"/> (the caller returns it); the data is its first <paramref name="declared"/> bytes.
    /// Data that is corrupt, or decodes to more or fewer bytes than declared, is a ProtocolException (MalformedFrame); the
    /// buffer is then returned here.
    /// </summary>
    public static byte[] Decompress(CompressionAlgorithm algorithm, ReadOnlySequence<byte> payload, int declared)
    {
        var data = payload.Slice(PrefixSize);
        byte[]? joined = null;
        var output = ArrayPool<byte>.Shared.Rent(declared);
        try
        {
            ReadOnlySpan<byte> body;
            if (data.IsSingleSegment)
            {
                body = data.FirstSpan;
            }
            else
            {
                joined = ArrayPool<byte>.Shared.Rent((int)data.Length); // smaller than declared: within the limit too
                data.CopyTo(joined);
                body = joined.AsSpan(0, (int)data.Length);
            }
            var target = output.AsSpan(0, declared);
            var decoded = algorithm switch
            {
                CompressionAlgorithm.Lz4 => Lz4BlockIsSound(body, declared) ? LZ4Codec.Decode(body, target) : -1,
                CompressionAlgorithm.Zstd => DecodeZstd(body, target),
                _ => throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"compression {(byte)algorithm} is not one this server decodes"),
            };
            if (decoded != declared)
            {
                throw new ProtocolException(ProtocolErrorCode.MalformedFrame, decoded < 0
                    ? $"a compressed Data payload is not valid {LinkCompression.Text(algorithm)} data for the {declared} bytes it declares"
                    : $"a compressed Data payload declares {declared} bytes and decodes to {decoded}");
            }
            return output;
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(output);
            throw;
        }
        finally
        {
            if (joined is not null)
            {
                ArrayPool<byte>.Shared.Return(joined);
            }
        }
    }

    /// <summary>
    /// Walks an LZ4 block's sequences without decoding it: true when every literal run and match stays within the data
    /// and within <paramref name="declared"/> output bytes, every match offset is from 1 to the bytes already written,
    /// and the block ends on a literal run exactly at <paramref name="declared"/> bytes. K4os.Compression.LZ4 1.3.8's
    /// decoder accepts a match offset of 0 and then copies bytes from outside the output (found by the compressed-data
    /// fuzz target): a block is handed to it only when this check holds, so it reads nothing but what it wrote.
    /// </summary>
    internal static bool Lz4BlockIsSound(ReadOnlySpan<byte> block, int declared)
    {
        var ip = 0;
        long op = 0;
        while (ip < block.Length)
        {
            var token = block[ip++];
            long literals = token >> 4;
            if (literals == 15 && !ReadLength(block, ref ip, ref literals))
            {
                return false;
            }
            if (literals > block.Length - ip || op + literals > declared)
            {
                return false;
            }
            ip += (int)literals;
            op += literals;
            if (ip == block.Length)
            {
                return op == declared; // the last sequence: literals only
            }
            if (block.Length - ip < 2)
            {
                return false;
            }
            var offset = block[ip] | (block[ip + 1] << 8);
            ip += 2;
            if (offset == 0 || offset > op)
            {
                return false;
            }
            long match = (token & 15) + 4L;
            if ((token & 15) == 15 && !ReadLength(block, ref ip, ref match))
            {
                return false;
            }
            if (op + match > declared)
            {
                return false;
            }
            op += match;
        }
        return false; // empty, or ended on a match: a block ends with literals

        static bool ReadLength(ReadOnlySpan<byte> block, ref int ip, ref long length)
        {
            byte more;
            do
            {
                if (ip >= block.Length)
                {
                    return false;
                }
                more = block[ip++];
                length += more;
            }
            while (more == 255);
            return true;
        }
    }

    /// <summary>
    /// One Zstandard decode into exactly <paramref name="target"/>: its length, or -1 for data that does not fit or is
    /// corrupt. The target is cleared first: should the decoder ever leave a byte unwritten, it holds zero, never what an
    /// earlier user of the pooled buffer left in it.
    /// </summary>
    private static int DecodeZstd(ReadOnlySpan<byte> body, Span<byte> target)
    {
        target.Clear();
        var decompressor = ZstdDecompressors.Rent();
        try
        {
            return decompressor.TryUnwrap(body, target, out var written) ? written : -1;
        }
        catch (ZstdException)
        {
            return -1;
        }
        finally
        {
            ZstdDecompressors.Return(decompressor);
        }
    }

    /// <summary>
    /// Zstandard contexts are costly to make (a few hundred KiB of tables) and not thread-safe: a few are kept per level
    /// and lent to one frame at a time; more than <see cref="Kept"/> idle ones are disposed.
    /// </summary>
    private static class ZstdCompressors
    {
        private static readonly int Kept = Math.Max(2, Environment.ProcessorCount);
        private static readonly ConcurrentDictionary<int, ConcurrentBag<Compressor>> Idle = new();

        public static Compressor Rent(int level) =>
            Idle.GetOrAdd(level, static _ => []).TryTake(out var compressor) ? compressor : new Compressor(level);

        public static void Return(int level, Compressor compressor)
        {
            var bag = Idle.GetOrAdd(level, static _ => []);
            if (bag.Count < Kept)
            {
                bag.Add(compressor);
            }
            else
            {
                compressor.Dispose();
            }
        }
    }

    private static class ZstdDecompressors
    {
        private static readonly int Kept = Math.Max(2, Environment.ProcessorCount);
        private static readonly ConcurrentBag<Decompressor> Idle = [];

        public static Decompressor Rent()
        {
            if (Idle.TryTake(out var decompressor))
            {
                return decompressor;
            }
            decompressor = new Decompressor();
            decompressor.SetParameter(ZstdSharp.Unsafe.ZSTD_dParameter.ZSTD_d_windowLogMax, MaxWindowLog);
            return decompressor;
        }

        public static void Return(Decompressor decompressor)
        {
            if (Idle.Count < Kept)
            {
                Idle.Add(decompressor);
            }
            else
            {
                decompressor.Dispose();
            }
        }
    }
}

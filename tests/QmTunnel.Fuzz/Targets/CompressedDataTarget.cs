using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// A compressed Data payload as a link's reader takes it (<see cref="FrameCompression.DeclaredLength"/>, then
/// <see cref="FrameCompression.Decompress"/>): byte 0 picks the algorithm (even LZ4, odd Zstandard), byte 1 the receiver's
/// MaxPayload (16 KiB, 256 KiB or 1 MiB), the rest is the payload (u32 uncompressed length, then the data), read in
/// segments. Refusals are <see cref="ProtocolException"/> only; a payload accepted decodes to exactly the length it
/// declared, the same way twice, and when the compressor makes a smaller payload of that data it decodes back to it.
/// Allocation budget: the output and a joined copy of the data (each at most twice what the pool rounds to), counted only
/// for a declared length within the limit, so a parser that allocates a hostile length before checking it fails.
/// </summary>
public sealed class CompressedDataTarget : FuzzTarget
{
    private static readonly int[] Limits = [16 * 1024, 256 * 1024, FrameCodec.HardMaxPayload];

    public override string Name => "compressed-data";

    private static CompressionAlgorithm AlgorithmOf(byte b) => (b & 1) == 0 ? CompressionAlgorithm.Lz4 : CompressionAlgorithm.Zstd;

    public override byte[] Generate(Random random)
    {
        var algorithm = (byte)random.Next(2);
        var data = new byte[random.Next(FrameCompression.MinPayload, 64 * 1024)];
        // Compressible: runs and repeated words, with some noise.
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = random.Next(8) == 0 ? (byte)random.Next(256) : (byte)"qmtunnel compress "[i % 18];
        }
        var compression = LinkCompression.DefaultFor(AlgorithmOf(algorithm));
        var packed = new byte[data.Length];
        var written = FrameCompression.TryCompress(compression, data, packed);
        return written == 0 ? [algorithm, 1, .. Prefix((uint)data.Length), 0] : [algorithm, (byte)random.Next(3), .. packed.AsSpan(0, written)];
    }

    public override IEnumerable<byte[]> Seeds()
    {
        yield return [];
        yield return [0];
        yield return [1, 0];
        foreach (var algorithm in new byte[] { 0, 1 })
        {
            // Declared lengths at and past every limit, with one byte of data (the bomb: nothing may be allocated for them).
            foreach (var declared in new uint[] { 0, 1, 2, 16 * 1024, 16 * 1024 + 1, 256 * 1024, 256 * 1024 + 1, 1024 * 1024, 1024 * 1024 + 1, 0x7fff_ffff, 0xffff_ffff })
            {
                yield return [algorithm, 2, .. Prefix(declared), 0];
            }
            // No data at all, and compressed data as long as what it declares.
            yield return [algorithm, 2, .. Prefix(4)];
            yield return [algorithm, 2, .. Prefix(4), 1, 2, 3, 4];
            // Real data of 64 KiB of zeros, declaring its length, one less, one more, and 1 MiB.
            var zeros = Compressed(AlgorithmOf(algorithm), new byte[64 * 1024]);
            yield return [algorithm, 2, .. zeros];
            yield return [algorithm, 2, .. WithDeclared(zeros, 64 * 1024 - 1)];
            yield return [algorithm, 2, .. WithDeclared(zeros, 64 * 1024 + 1)];
            yield return [algorithm, 2, .. WithDeclared(zeros, 1024 * 1024)];
            yield return [algorithm, 0, .. zeros]; // over a 16 KiB limit
        }
        // LZ4: a match whose offset points before the start of the output; a literal run longer than the data.
        yield return [0, 2, .. Prefix(1000), 0x0F, 0xFF, 0xFF, 0x40, 0x00, 0xFF, 0xFF];
        yield return [0, 2, .. Prefix(1000), 0xF0, 0xFF, 0xFF, 0xFF, 0x01];
        // Zstandard: a frame header whose content size says 2^40 bytes; a skippable frame; a frame asking a 2^31 window.
        yield return [1, 2, .. Prefix(1000), 0x28, 0xB5, 0x2F, 0xFD, 0xC0, 0, 0, 0, 0, 0, 1, 0, 0, 0x01, 0, 0];
        yield return [1, 2, .. Prefix(1000), 0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        yield return [1, 2, .. Prefix(1000), 0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xF8, 0x01, 0, 0];
    }

    private static byte[] Prefix(uint declared)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, declared);
        return bytes;
    }

    private static byte[] Compressed(CompressionAlgorithm algorithm, byte[] data)
    {
        var packed = new byte[data.Length];
        var written = FrameCompression.TryCompress(LinkCompression.DefaultFor(algorithm), data, packed);
        return packed.AsSpan(0, written).ToArray();
    }

    private static byte[] WithDeclared(byte[] payload, uint declared)
    {
        var copy = payload.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(copy, declared);
        return copy;
    }

    public override void Execute(byte[] input)
    {
        if (input.Length < 2)
        {
            Outcome("too short");
            return;
        }
        var algorithm = AlgorithmOf(input[0]);
        var limit = Limits[input[1] % Limits.Length];
        var payload = Targets.Generate.Segmented(input[2..]);
        var declaredWithinLimit = input.Length >= 6 && BinaryPrimitives.ReadUInt32BigEndian(input.AsSpan(2)) is var d && d <= (uint)limit ? (long)d : 0;
        var budget = AllocationSlack + 2 * (RoundUp(declaredWithinLimit) + RoundUp(input.Length));
        byte[]? output = null;
        int declared;
        var before = AllocatedBytes();
        try
        {
            declared = FrameCompression.DeclaredLength(payload, limit);
            output = FrameCompression.Decompress(algorithm, payload, declared);
        }
        catch (ProtocolException)
        {
            CheckAllocation(before, budget, "FrameCompression (refused)", input.Length);
            Outcome("refused");
            return;
        }
        CheckAllocation(before, budget, "FrameCompression", input.Length);
        try
        {
            Outcome("decoded");
            var data = output.AsSpan(0, declared).ToArray();
            if (declared > limit)
            {
                throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"{declared} bytes decoded past the limit of {limit}");
            }
            var again = FrameCompression.Decompress(algorithm, payload, declared);
            var same = again.AsSpan(0, declared).SequenceEqual(data);
            ArrayPool<byte>.Shared.Return(again);
            if (!same)
            {
                throw new FuzzFailure(FuzzFailureKind.RoundTrip, "the same payload decoded to different bytes");
            }
            var packed = new byte[declared];
            var written = FrameCompression.TryCompress(LinkCompression.DefaultFor(algorithm), data, packed);
            if (written > 0)
            {
                if (written >= declared)
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the compressor kept a payload of {written} bytes for {declared} bytes of data");
                }
                var sequence = new ReadOnlySequence<byte>(packed, 0, written);
                var back = FrameCompression.Decompress(algorithm, sequence, FrameCompression.DeclaredLength(sequence, limit));
                var equal = back.AsSpan(0, declared).SequenceEqual(data);
                ArrayPool<byte>.Shared.Return(back);
                if (!equal)
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, "compressing the decoded data again does not decode back to it");
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    private static long RoundUp(long n) => n <= 16 ? 16 : (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)n);
}

using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// One Data payload compressed and decoded (<see cref="FrameCompression"/>): the 512-byte threshold, only smaller results
/// kept, every level of both algorithms round-tripping, and the checks a hostile payload meets before and during the
/// decode — among them the LZ4 block walk that keeps K4os' decoder from reading outside its output (a match offset of 0,
/// found by the compressed-data fuzz target).
/// </summary>
public sealed class FrameCompressionTests
{
    private static byte[] Payload(int declared, params byte[] data)
    {
        var bytes = new byte[FrameCompression.PrefixSize + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, declared);
        data.CopyTo(bytes, FrameCompression.PrefixSize);
        return bytes;
    }

    private static byte[] Decode(CompressionAlgorithm algorithm, byte[] payload, int limit = 256 * 1024)
    {
        var sequence = new ReadOnlySequence<byte>(payload);
        var declared = FrameCompression.DeclaredLength(sequence, limit);
        var output = FrameCompression.Decompress(algorithm, sequence, declared);
        var data = output.AsSpan(0, declared).ToArray();
        ArrayPool<byte>.Shared.Return(output);
        return data;
    }

    public static TheoryData<CompressionAlgorithm, int> EveryLevel()
    {
        var data = new TheoryData<CompressionAlgorithm, int>();
        foreach (var algorithm in new[] { CompressionAlgorithm.Lz4, CompressionAlgorithm.Zstd })
        {
            var (min, max) = LinkCompression.LevelRange(algorithm);
            for (var level = min; level <= max; level++)
            {
                data.Add(algorithm, level);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(EveryLevel))]
    public void Every_level_of_both_algorithms_round_trips_and_passes_the_checks_of_the_receiver(CompressionAlgorithm algorithm, int level)
    {
        var data = CompressionSessionTests.Compressible(100_000);
        var packed = new byte[data.Length];
        var written = FrameCompression.TryCompress(new LinkCompression(algorithm, level), data, packed);
        Assert.InRange(written, FrameCompression.PrefixSize + 1, data.Length / 4);
        Assert.Equal(data, Decode(algorithm, packed[..written]));
        if (algorithm == CompressionAlgorithm.Lz4)
        {
            Assert.True(FrameCompression.Lz4BlockIsSound(packed.AsSpan(FrameCompression.PrefixSize, written - FrameCompression.PrefixSize), data.Length));
        }
    }

    [Fact]
    public void Honest_LZ4_blocks_of_any_data_pass_the_block_walk()
    {
        var random = new Random(42);
        for (var i = 0; i < 300; i++)
        {
            var data = new byte[random.Next(512, 70_000)];
            for (var j = 0; j < data.Length; j++)
            {
                // runs, repeats at every distance, some noise: matches of every length and offset
                data[j] = random.Next(4) == 0 ? (byte)random.Next(256) : j > 300 ? data[j - random.Next(1, 300)] : (byte)(j % 7);
            }
            var packed = new byte[data.Length];
            var written = FrameCompression.TryCompress(new LinkCompression(CompressionAlgorithm.Lz4, i % 13), data, packed);
            if (written == 0)
            {
                continue;
            }
            Assert.True(FrameCompression.Lz4BlockIsSound(packed.AsSpan(FrameCompression.PrefixSize, written - FrameCompression.PrefixSize), data.Length), $"case {i}");
            Assert.Equal(data, Decode(CompressionAlgorithm.Lz4, packed[..written], 1024 * 1024));
        }
    }

    [Theory]
    [InlineData(511, false)]
    [InlineData(512, true)]
    public void Only_payloads_of_512_bytes_or_more_are_compressed(int length, bool compressed)
    {
        var packed = new byte[length];
        Assert.Equal(compressed, FrameCompression.TryCompress(LinkCompression.Lz4, new byte[length], packed) > 0);
        Assert.Equal(compressed, FrameCompression.TryCompress(LinkCompression.Zstd, new byte[length], packed) > 0);
        Assert.Equal(0, FrameCompression.TryCompress(LinkCompression.None, new byte[length], packed));
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4)]
    [InlineData(CompressionAlgorithm.Zstd)]
    public void Data_that_does_not_get_smaller_is_not_compressed(CompressionAlgorithm algorithm)
    {
        var noise = new byte[64 * 1024];
        new Random(1).NextBytes(noise);
        Assert.Equal(0, FrameCompression.TryCompress(LinkCompression.DefaultFor(algorithm), noise, new byte[noise.Length]));
    }

    public static TheoryData<string, byte[], string> HostileLz4Blocks() => new()
    {
        // 1 literal 'A', then a match of 8 at offset 0, then 5 literals: K4os 1.3.8 decodes it "successfully", copying
        // bytes from outside the output.
        { "a match at offset 0", Payload(14, 0x14, 0x41, 0x00, 0x00, 0x50, 0x42, 0x42, 0x42, 0x42, 0x42), "not valid lz4 data" },
        { "a match further back than the output", Payload(14, 0x14, 0x41, 0x02, 0x00, 0x50, 0x42, 0x42, 0x42, 0x42, 0x42), "not valid lz4 data" },
        { "a literal run past the data", Payload(1000, 0xF0, 0xFF, 0x10, 0x41), "not valid lz4 data" },
        { "a block that ends on a match", Payload(9, 0x14, 0x41, 0x01, 0x00), "not valid lz4 data" },
        { "a match past the length declared", Payload(7, 0x14, 0x41, 0x01, 0x00, 0x10, 0x42), "not valid lz4 data" },
    };

    [Theory]
    [MemberData(nameof(HostileLz4Blocks))]
    public void A_hostile_LZ4_block_is_refused_before_the_decoder_sees_it(string what, byte[] payload, string message)
    {
        var e = Assert.Throws<ProtocolException>(() => Decode(CompressionAlgorithm.Lz4, payload));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e.Code);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(what));
    }

    [Fact]
    public void The_same_LZ4_block_with_a_sound_offset_decodes()
    {
        Assert.Equal("AAAAAAAAABBBBB"u8.ToArray(), Decode(CompressionAlgorithm.Lz4, Payload(14, 0x14, 0x41, 0x01, 0x00, 0x50, 0x42, 0x42, 0x42, 0x42, 0x42)));
    }

    [Theory]
    [InlineData(0u, "declares 0 uncompressed bytes")]
    [InlineData(256u * 1024 + 1, "declares 262145 uncompressed bytes; the limit is 262144")]
    [InlineData(uint.MaxValue, "declares 4294967295 uncompressed bytes; the limit is 262144")]
    public void A_declared_length_out_of_bounds_is_refused_from_the_prefix_alone(uint declared, string message)
    {
        var payload = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(payload, declared);
        var e = Assert.Throws<ProtocolException>(() => FrameCompression.DeclaredLength(new ReadOnlySequence<byte>(payload), 256 * 1024));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_compressed_payload_split_across_segments_decodes_like_one_in_one_piece()
    {
        var data = CompressionSessionTests.Compressible(50_000);
        foreach (var algorithm in new[] { CompressionAlgorithm.Lz4, CompressionAlgorithm.Zstd })
        {
            var packed = new byte[data.Length];
            var written = FrameCompression.TryCompress(LinkCompression.DefaultFor(algorithm), data, packed);
            var sequence = QmTunnel.Engine.Tests.Protocol.TestSequences.Bytewise(packed[..written]);
            var declared = FrameCompression.DeclaredLength(sequence, 256 * 1024);
            var output = FrameCompression.Decompress(algorithm, sequence, declared);
            Assert.Equal(data, output.AsSpan(0, declared).ToArray());
            ArrayPool<byte>.Shared.Return(output);
        }
    }
}

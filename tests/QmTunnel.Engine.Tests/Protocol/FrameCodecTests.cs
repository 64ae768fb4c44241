using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Protocol;
using Xunit;

namespace QmTunnel.Engine.Tests.Protocol;

public sealed class FrameCodecTests
{
    private const int Max = 64 * 1024;

    private static readonly FrameType[] LinkTypes = [FrameType.Hello, FrameType.GoAway, FrameType.Ping, FrameType.Pong, FrameType.Ack];
    private static readonly FrameType[] StreamTypes = [FrameType.Open, FrameType.OpenAck, FrameType.Data, FrameType.WindowUpdate, FrameType.Reset];

    public static TheoryData<FrameHeader> ValidHeaders() => new()
    {
        new FrameHeader(FrameType.Hello, FrameFlags.None, 0, 0),
        new FrameHeader(FrameType.Hello, FrameFlags.None, 0, 123),
        new FrameHeader(FrameType.GoAway, FrameFlags.None, 0, 40),
        new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8),
        new FrameHeader(FrameType.Pong, FrameFlags.None, 0, 8),
        new FrameHeader(FrameType.Ack, FrameFlags.None, 0, 8),
        new FrameHeader(FrameType.Open, FrameFlags.None, 1, 77),
        new FrameHeader(FrameType.OpenAck, FrameFlags.None, 2, 0),
        new FrameHeader(FrameType.Data, FrameFlags.None, 3, 0),
        new FrameHeader(FrameType.Data, FrameFlags.Fin, 3, 0),
        new FrameHeader(FrameType.Data, FrameFlags.Fin, 0xFFFF_FFFF, Max),
        new FrameHeader(FrameType.Data, FrameFlags.None, 0x8000_0001, 1),
        new FrameHeader(FrameType.WindowUpdate, FrameFlags.None, 7, 4),
        new FrameHeader(FrameType.Reset, FrameFlags.None, 0x0102_0304, 9),
    };

    [Theory]
    [MemberData(nameof(ValidHeaders))]
    public void Header_write_then_parse_round_trips(FrameHeader header)
    {
        var raw = new byte[FrameHeader.Size];
        header.Write(raw);

        Assert.Equal(header, FrameCodec.ParseHeader(raw, Max));
    }

    [Fact]
    public void Header_write_uses_the_documented_big_endian_layout()
    {
        var raw = new byte[FrameHeader.Size];
        raw.AsSpan().Fill(0xEE);
        new FrameHeader(FrameType.Data, FrameFlags.Fin, 0x0102_0304, 0x0A0B_0C0D).Write(raw);

        Assert.Equal(new byte[] { 0x12, 0x01, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D }, raw);
    }

    [Fact]
    public void Preamble_is_QMTL()
    {
        Assert.Equal("QMTL"u8.ToArray(), FrameCodec.Preamble.ToArray());
    }

    [Theory]
    [MemberData(nameof(ValidHeaders))]
    public void TryReadFrame_takes_one_whole_frame_and_advances_the_buffer(FrameHeader header)
    {
        var payloadBytes = Enumerable.Range(0, header.Length).Select(i => (byte)(i * 7)).ToArray();
        var trailer = new byte[] { 0xAA, 0xBB, 0xCC };
        var bytes = Concat(Encode(header, payloadBytes), trailer);
        var buffer = new ReadOnlySequence<byte>(bytes);

        Assert.True(FrameCodec.TryReadFrame(ref buffer, Max, out var parsed, out var payload));

        Assert.Equal(header, parsed);
        Assert.Equal(payloadBytes, payload.ToArray());
        Assert.Equal(trailer, buffer.ToArray());
    }

    [Fact]
    public void TryReadFrame_reads_consecutive_frames()
    {
        var bytes = Concat(
            Encode(new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8), [1, 2, 3, 4, 5, 6, 7, 8]),
            Encode(new FrameHeader(FrameType.Data, FrameFlags.None, 5, 3), [9, 9, 9]),
            Encode(new FrameHeader(FrameType.Data, FrameFlags.Fin, 5, 0), []));
        var buffer = new ReadOnlySequence<byte>(bytes);

        Assert.True(FrameCodec.TryReadFrame(ref buffer, Max, out var h1, out var p1));
        Assert.True(FrameCodec.TryReadFrame(ref buffer, Max, out var h2, out var p2));
        Assert.True(FrameCodec.TryReadFrame(ref buffer, Max, out var h3, out var p3));
        Assert.False(FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));

        Assert.Equal(FrameType.Ping, h1.Type);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, p1.ToArray());
        Assert.Equal(new FrameHeader(FrameType.Data, FrameFlags.None, 5, 3), h2);
        Assert.Equal(new byte[] { 9, 9, 9 }, p2.ToArray());
        Assert.Equal(new FrameHeader(FrameType.Data, FrameFlags.Fin, 5, 0), h3);
        Assert.True(p3.IsEmpty);
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Truncated_header_returns_false_and_leaves_the_buffer_untouched()
    {
        var bytes = Encode(new FrameHeader(FrameType.Data, FrameFlags.None, 1, 4), [1, 2, 3, 4]);
        for (var length = 0; length < FrameHeader.Size; length++)
        {
            var original = new ReadOnlySequence<byte>(bytes, 0, length);
            var buffer = original;

            Assert.False(FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));

            Assert.Equal(original.Start, buffer.Start);
            Assert.Equal(original.End, buffer.End);
        }
    }

    [Fact]
    public void Truncated_header_with_garbage_returns_false_rather_than_throwing()
    {
        // Fewer than 12 bytes of an invalid header: nothing can be judged yet, so the codec waits.
        var original = new ReadOnlySequence<byte>(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF });
        var buffer = original;

        Assert.False(FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
        Assert.Equal(original.Start, buffer.Start);
    }

    [Fact]
    public void Truncated_payload_returns_false_and_leaves_the_buffer_untouched()
    {
        var payloadBytes = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        var bytes = Encode(new FrameHeader(FrameType.Data, FrameFlags.None, 1, payloadBytes.Length), payloadBytes);
        for (var length = FrameHeader.Size; length < bytes.Length; length++)
        {
            var original = new ReadOnlySequence<byte>(bytes, 0, length);
            var buffer = original;

            Assert.False(FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));

            Assert.Equal(original.Start, buffer.Start);
            Assert.Equal(original.End, buffer.End);
        }
    }

    [Theory]
    [InlineData(Max + 1)]
    [InlineData(FrameCodec.HardMaxPayload)]
    [InlineData(int.MaxValue)]
    public void Oversize_length_is_rejected_from_the_header_alone(int length)
    {
        var buffer = new ReadOnlySequence<byte>(Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, length)));

        var e = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, e.Code);
    }

    [Fact]
    public void Length_equal_to_the_limit_is_accepted()
    {
        var buffer = new ReadOnlySequence<byte>(Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, Max)));

        // Header alone: valid, waits for the payload.
        Assert.False(FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
        Assert.Equal(Max, FrameCodec.ParseHeader(Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, Max)), Max).Length);
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(FrameCodec.HardMaxPayload * 4)]
    public void Hard_limit_applies_whatever_the_announced_maximum(int maxPayload)
    {
        Assert.Equal(FrameCodec.HardMaxPayload,
            FrameCodec.ParseHeader(Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, FrameCodec.HardMaxPayload)), maxPayload).Length);

        var buffer = new ReadOnlySequence<byte>(Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, FrameCodec.HardMaxPayload + 1)));
        var e = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, maxPayload, out _, out _));
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, e.Code);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(-8)]
    [InlineData(int.MinValue)]
    public void Negative_length_is_rejected_as_too_large(int length)
    {
        foreach (var type in new[] { FrameType.Data, FrameType.Hello, FrameType.Ping })
        {
            var streamId = LinkTypes.Contains(type) ? 0u : 1u;
            var buffer = new ReadOnlySequence<byte>(Header(new FrameHeader(type, FrameFlags.None, streamId, length)));

            var e = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
            Assert.Equal(ProtocolErrorCode.FrameTooLarge, e.Code);
        }
    }

    [Fact]
    public void Every_unknown_frame_type_is_rejected()
    {
        var known = Enum.GetValues<FrameType>().Select(t => (byte)t).ToHashSet();
        for (var value = 0; value <= 255; value++)
        {
            if (known.Contains((byte)value))
            {
                continue;
            }
            var raw = Header(new FrameHeader((FrameType)value, FrameFlags.None, 0, 0));
            var e = Assert.Throws<ProtocolException>(() => FrameCodec.ParseHeader(raw, Max));
            Assert.Equal(ProtocolErrorCode.UnknownFrameType, e.Code);
        }
    }

    [Theory]
    [InlineData(0x0001)]
    [InlineData(0x0100)]
    [InlineData(0x8000)]
    [InlineData(0xFFFF)]
    public void Reserved_bits_are_rejected(int reserved)
    {
        var raw = Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, 0));
        BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(2), (ushort)reserved);

        AssertMalformed(raw);
    }

    [Fact]
    public void Flags_are_rejected_on_every_frame_but_data()
    {
        foreach (var type in Enum.GetValues<FrameType>().Where(t => t != FrameType.Data))
        {
            foreach (var flags in new[] { FrameFlags.Fin, FrameFlags.Compressed, (FrameFlags)0x80 })
            {
                AssertMalformed(Header(new FrameHeader(type, flags, LinkTypes.Contains(type) ? 0u : 1u, FixedLength(type))));
            }
        }
    }

    [Theory]
    [InlineData(0x02)] // Compressed: reserved in version 1
    [InlineData(0x03)]
    [InlineData(0x04)]
    [InlineData(0x80)]
    [InlineData(0xFF)]
    public void Unknown_flags_are_rejected_on_data(int flags)
    {
        AssertMalformed(Header(new FrameHeader(FrameType.Data, (FrameFlags)flags, 1, 0)));
    }

    [Fact]
    public void Link_frames_on_a_stream_are_rejected()
    {
        foreach (var type in LinkTypes)
        {
            foreach (var streamId in new[] { 1u, 2u, 0xFFFF_FFFFu })
            {
                AssertMalformed(Header(new FrameHeader(type, FrameFlags.None, streamId, FixedLength(type))));
            }
        }
    }

    [Fact]
    public void Stream_frames_on_stream_zero_are_rejected()
    {
        foreach (var type in StreamTypes)
        {
            AssertMalformed(Header(new FrameHeader(type, FrameFlags.None, 0, FixedLength(type))));
        }
    }

    [Theory]
    [InlineData(FrameType.Ping, 0u, 8)]
    [InlineData(FrameType.Pong, 0u, 8)]
    [InlineData(FrameType.Ack, 0u, 8)]
    [InlineData(FrameType.WindowUpdate, 1u, 4)]
    [InlineData(FrameType.OpenAck, 1u, 0)]
    public void Fixed_length_frames_must_have_exactly_their_length(FrameType type, uint streamId, int length)
    {
        Assert.Equal(length, FrameCodec.ParseHeader(Header(new FrameHeader(type, FrameFlags.None, streamId, length)), Max).Length);

        foreach (var wrong in new[] { length - 1, length + 1, length + 8, 1000 }.Where(l => l >= 0))
        {
            AssertMalformed(Header(new FrameHeader(type, FrameFlags.None, streamId, wrong)));
        }
    }

    [Fact]
    public void Bad_header_is_rejected_by_TryReadFrame_before_the_payload_arrives()
    {
        var buffer = new ReadOnlySequence<byte>(Header(new FrameHeader(FrameType.Open, FrameFlags.None, 0, 100)));

        var e = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e.Code);
    }

    [Fact]
    public void Multi_segment_input_parses_identically_at_every_split()
    {
        var bytes = Concat(
            Encode(new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8), [1, 2, 3, 4, 5, 6, 7, 8]),
            Encode(new FrameHeader(FrameType.Open, FrameFlags.None, 1, 5), [10, 11, 12, 13, 14]),
            Encode(new FrameHeader(FrameType.WindowUpdate, FrameFlags.None, 1, 4), [0, 1, 0, 0]),
            Encode(new FrameHeader(FrameType.Data, FrameFlags.Fin, 1, 3), [7, 7, 7]),
            [0x12, 0x00]); // the start of a next frame
        var expected = ReadAll(new ReadOnlySequence<byte>(bytes));
        Assert.Equal(4, expected.Frames.Count);

        for (var split = 0; split <= bytes.Length; split++)
        {
            Assert.Equal(expected, ReadAll(TestSequences.Split(bytes, split)));
        }
        for (var first = 0; first <= bytes.Length; first++)
        {
            for (var second = first; second <= bytes.Length; second++)
            {
                Assert.Equal(expected, ReadAll(TestSequences.Split(bytes, first, second)));
            }
        }
        Assert.Equal(expected, ReadAll(TestSequences.Bytewise(bytes)));
    }

    [Fact]
    public void Multi_segment_bad_header_is_rejected_at_every_split()
    {
        var bytes = Header(new FrameHeader(FrameType.Data, FrameFlags.None, 1, Max + 1));
        for (var split = 0; split <= bytes.Length; split++)
        {
            var buffer = TestSequences.Split(bytes, split);
            var e = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
            Assert.Equal(ProtocolErrorCode.FrameTooLarge, e.Code);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Random_input_parses_or_throws_ProtocolException_only(int seed)
    {
        var random = new Random(seed);
        var types = Enum.GetValues<FrameType>();
        for (var i = 0; i < 10_000; i++)
        {
            var bytes = new byte[random.Next(0, 48)];
            random.NextBytes(bytes);
            if (bytes.Length >= FrameHeader.Size && random.Next(2) == 0)
            {
                // Bias half the inputs towards plausible headers so the later checks are reached too.
                bytes[0] = (byte)types[random.Next(types.Length)];
                bytes[1] = (byte)random.Next(0, 3);
                bytes[2] = random.Next(4) == 0 ? (byte)1 : (byte)0;
                bytes[3] = 0;
                BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)random.Next(0, 3));
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), random.Next(-2, 40));
            }
            var split = random.Next(0, bytes.Length + 1);
            var maxPayload = random.Next(0, 3) switch { 0 => 16, 1 => Max, _ => int.MaxValue };
            var buffer = TestSequences.Split(bytes, split);

            var e = Record.Exception(() =>
            {
                while (FrameCodec.TryReadFrame(ref buffer, maxPayload, out var header, out var payload))
                {
                    Assert.Equal(header.Length, payload.Length);
                }
            });
            if (e is not null)
            {
                Assert.IsType<ProtocolException>(e);
            }
            if (bytes.Length >= FrameHeader.Size)
            {
                var e2 = Record.Exception(() => FrameCodec.ParseHeader(bytes.AsSpan(0, FrameHeader.Size), maxPayload));
                if (e2 is not null)
                {
                    Assert.IsType<ProtocolException>(e2);
                }
            }
        }
    }

    private static void AssertMalformed(byte[] raw)
    {
        var e = Assert.Throws<ProtocolException>(() => FrameCodec.ParseHeader(raw, Max));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e.Code);

        var buffer = new ReadOnlySequence<byte>(raw);
        var e2 = Assert.Throws<ProtocolException>(() => FrameCodec.TryReadFrame(ref buffer, Max, out _, out _));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e2.Code);
    }

    private static int FixedLength(FrameType type) => type switch
    {
        FrameType.Ping or FrameType.Pong or FrameType.Ack => 8,
        FrameType.WindowUpdate => 4,
        _ => 0,
    };

    private static byte[] Header(FrameHeader header)
    {
        var raw = new byte[FrameHeader.Size];
        header.Write(raw);
        return raw;
    }

    private static byte[] Encode(FrameHeader header, byte[] payload) => Concat(Header(header), payload);

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static ParsedFrames ReadAll(ReadOnlySequence<byte> buffer)
    {
        var frames = new List<(FrameHeader, string)>();
        while (FrameCodec.TryReadFrame(ref buffer, Max, out var header, out var payload))
        {
            frames.Add((header, Convert.ToHexString(payload.ToArray())));
        }
        return new ParsedFrames(frames, Convert.ToHexString(buffer.ToArray()));
    }

    private sealed record ParsedFrames(List<(FrameHeader Header, string Payload)> Frames, string Rest)
    {
        public bool Equals(ParsedFrames? other) =>
            other is not null && Rest == other.Rest && Frames.SequenceEqual(other.Frames);

        public override int GetHashCode() => Rest.GetHashCode(StringComparison.Ordinal);
    }
}

/// <summary>Builds multi-segment <see cref="ReadOnlySequence{T}"/>s to test parsing across segment boundaries.</summary>
internal static class TestSequences
{
    /// <summary>Splits <paramref name="bytes"/> at the given offsets (empty segments included where offsets repeat).</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, params int[] offsets)
    {
        var bounds = new List<int> { 0 };
        bounds.AddRange(offsets);
        bounds.Add(bytes.Length);
        var parts = new List<byte[]>();
        for (var i = 0; i + 1 < bounds.Count; i++)
        {
            parts.Add(bytes[bounds[i]..bounds[i + 1]]);
        }
        return FromParts(parts);
    }

    /// <summary>One segment per byte.</summary>
    public static ReadOnlySequence<byte> Bytewise(byte[] bytes) =>
        bytes.Length == 0 ? ReadOnlySequence<byte>.Empty : FromParts(bytes.Select(b => new[] { b }).ToList());

    private static ReadOnlySequence<byte> FromParts(IReadOnlyList<byte[]> parts)
    {
        var first = new Segment(parts[0], 0);
        var last = first;
        for (var i = 1; i < parts.Count; i++)
        {
            last = last.Append(parts[i]);
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

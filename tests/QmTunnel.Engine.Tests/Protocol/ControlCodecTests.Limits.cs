using System.Buffers;
using System.Text;
using QmTunnel.Engine.Protocol;
using Xunit;

namespace QmTunnel.Engine.Tests.Protocol;

/// <summary>The codec's limits: UTF-8, string and list lengths, unknown values, sizes — refused before anything is kept.</summary>
public sealed partial class ControlCodecTests
{
    public static TheoryData<byte[]> InvalidUtf8() => new()
    {
        new byte[] { 0xFF },
        new byte[] { 0xC3 },                   // lead byte without continuation
        new byte[] { 0x80 },                   // lone continuation byte
        new byte[] { 0xC0, 0x80 },             // overlong NUL
        new byte[] { 0xE0, 0x80, 0xAF },       // overlong '/'
        new byte[] { 0xED, 0xA0, 0x80 },       // UTF-16 surrogate D800
        new byte[] { 0xF4, 0x90, 0x80, 0x80 }, // beyond U+10FFFF
        new byte[] { (byte)'o', (byte)'k', 0xE2, 0x82 }, // truncated '€' at the end
    };

    [Theory]
    [MemberData(nameof(InvalidUtf8))]
    public void Invalid_utf8_is_rejected(byte[] invalid)
    {
        var bytes = Reset(ProtocolErrorCode.Shutdown, invalid);

        AssertMalformed(FrameType.Reset, bytes);
        for (var split = 0; split <= bytes.Length; split++)
        {
            var e = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Reset, TestSequences.Split(bytes, split)));
            Assert.Equal(ProtocolErrorCode.MalformedFrame, e.Code);
        }
        var e2 = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Reset, TestSequences.Bytewise(bytes)));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e2.Code);
    }

    [Fact]
    public void Invalid_utf8_is_rejected_in_every_string_field()
    {
        var bad = new byte[] { 0xFF, 0xFE };
        var ok = "x"u8.ToArray();
        var w = new Builder();

        AssertMalformed(FrameType.Hello, w.Reset().U16(1).U16(1).Str(bad).Str(ok).I32(1).I32(1).Bytes);
        AssertMalformed(FrameType.Hello, w.Reset().U16(1).U16(1).Str(ok).Str(bad).I32(1).I32(1).Bytes);
        AssertMalformed(FrameType.GoAway, w.Reset().U32(7).Str(bad).Bytes);
        AssertMalformed(FrameType.Open, OpenBytes(w, tunnel: bad));
        AssertMalformed(FrameType.Open, OpenBytes(w, target: bad));
        AssertMalformed(FrameType.Open, OpenBytes(w, hop: bad));
        AssertMalformed(FrameType.Open, OpenBytes(w, client: bad));
    }

    [Fact]
    public void String_of_exactly_4096_bytes_is_accepted()
    {
        var text = new string('a', ControlCodec.MaxStringBytes);
        var bytes = Reset(ProtocolErrorCode.Shutdown, Encoding.UTF8.GetBytes(text));

        var message = Assert.IsType<ResetMessage>(ControlCodec.Read(FrameType.Reset, new ReadOnlySequence<byte>(bytes)));
        Assert.Equal(text, message.Reason);
    }

    [Theory]
    [InlineData(ControlCodec.MaxStringBytes + 1)]
    [InlineData(ushort.MaxValue)]
    public void String_longer_than_4096_bytes_is_rejected(int length)
    {
        var bytes = Reset(ProtocolErrorCode.Shutdown, Enumerable.Repeat((byte)'a', length).ToArray());

        AssertMalformed(FrameType.Reset, bytes);
    }

    [Fact]
    public void String_length_prefix_over_4096_is_rejected_without_the_bytes()
    {
        // Only the prefix: the codec must not wait for or look at 60,000 bytes it will refuse anyway.
        var bytes = new Builder().U32(7).U16(60_000).Bytes;

        AssertMalformed(FrameType.Reset, bytes);
        // Refused for the length it announces, not as a payload cut short (which any reader would find here).
        var e = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Reset, new ReadOnlySequence<byte>(bytes)));
        Assert.Contains("60000", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Writing_a_string_longer_than_4096_bytes_throws_ArgumentException()
    {
        Assert.Throws<ArgumentException>(() => ControlCodec.ToArray(new GoAwayMessage(ProtocolErrorCode.Shutdown, new string('a', 4097))));
        Assert.Throws<ArgumentException>(() => ControlCodec.ToArray(new GoAwayMessage(ProtocolErrorCode.Shutdown, LongestString + "é")));
    }

    [Fact]
    public void Route_of_65_servers_is_rejected()
    {
        var hops = Enumerable.Range(0, ControlCodec.MaxListItems + 1).Select(i => "h").ToArray();
        var w = new Builder().U8(1).Str("t"u8).Str("x"u8).U16((ushort)hops.Length);
        foreach (var hop in hops)
        {
            w.Str(Encoding.UTF8.GetBytes(hop));
        }
        var bytes = w.I32(1000).U8(0).Str("c"u8).Bytes;

        AssertMalformed(FrameType.Open, bytes);
    }

    [Theory]
    [InlineData(65)]
    [InlineData(ushort.MaxValue)]
    public void Route_count_over_64_is_rejected_without_the_items(int count)
    {
        var bytes = new Builder().U8(1).Str("t"u8).Str("x"u8).U16((ushort)count).Bytes;

        AssertMalformed(FrameType.Open, bytes);
        // Refused for the count it announces, not as a payload cut short (which any reader would find here).
        var e = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Open, new ReadOnlySequence<byte>(bytes)));
        Assert.Contains(count.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Writing_a_route_of_65_servers_throws_ArgumentException()
    {
        var hops = Enumerable.Range(0, ControlCodec.MaxListItems + 1).Select(i => "h").ToArray();

        Assert.Throws<ArgumentException>(() => ControlCodec.ToArray(new OpenMessage(StreamProtocol.Tcp, "t", "x", hops, 1, OpenOptions.None, "c")));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    [InlineData(255)]
    public void Open_with_an_unknown_stream_protocol_is_rejected(int protocol)
    {
        var bytes = ControlCodec.ToArray(new OpenMessage(StreamProtocol.Tcp, "t", "x", [], 1, OpenOptions.None, "c"));
        bytes[0] = (byte)protocol;

        AssertMalformed(FrameType.Open, bytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void Open_with_a_connect_timeout_that_is_not_positive_is_rejected(int timeout)
    {
        AssertMalformed(FrameType.Open, OpenBytes(new Builder(), timeout: timeout));
    }

    [Theory]
    [InlineData(FrameType.Ping)]
    [InlineData(FrameType.Pong)]
    [InlineData(FrameType.Ack)]
    [InlineData(FrameType.OpenAck)]
    [InlineData(FrameType.Data)]
    [InlineData(FrameType.WindowUpdate)]
    [InlineData((FrameType)0x77)]
    public void Frames_without_a_control_message_are_rejected(FrameType type)
    {
        AssertMalformed(type, new byte[8]);
    }

    [Fact]
    public void Payload_larger_than_the_hard_limit_is_rejected()
    {
        var bytes = new byte[FrameCodec.HardMaxPayload + 1];

        var e = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.GoAway, new ReadOnlySequence<byte>(bytes)));
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, e.Code);
    }

    [Fact]
    public void Writing_a_frame_type_that_is_not_a_control_message_throws_ArgumentException()
    {
        Assert.Throws<ArgumentException>(() => ControlCodec.ToArray(new NotAControlMessage()));
    }
}

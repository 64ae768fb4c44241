using System.Buffers;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Protocol;

/// <summary>
/// Regressions found by the control-write fuzz target: the writer refuses, before writing a byte, what the reader would
/// refuse or could not read back equal (docs/protocol.md: "The writer refuses ... any message the reader would refuse").
/// </summary>
public sealed class ControlCodecWriterTests
{
    public static TheoryData<ControlMessage> LoneSurrogates() => new()
    {
        new AuthStartMessage(AuthMethod.Password, "\uDC00", new byte[24]),
        new GoAwayMessage(ProtocolErrorCode.Shutdown, "bye \uD800"),
        new HelloMessage(2, 2, "id", "name\uD83D", 1 << 20, 1 << 20),
        new OpenMessage(StreamProtocol.Tcp, "web", "tcp://t:1", ["qmt://b:9200\uDFFF"], 1000, OpenOptions.None, ""),
        new AuthOkMessage("u", "\uD800\uD800", []),
    };

    [Theory]
    [MemberData(nameof(LoneSurrogates))]
    public void A_string_with_a_lone_surrogate_is_refused_instead_of_being_written_as_another_string(ControlMessage message)
    {
        var output = new ArrayBufferWriter<byte>();

        var refused = Assert.Throws<ArgumentException>(() => ControlCodec.Write(message, output));

        Assert.Contains("lone surrogate", refused.Message);
        Assert.Equal(0, output.WrittenCount);
    }

    [Fact]
    public void A_surrogate_pair_is_written_and_read_back_unchanged()
    {
        var message = new GoAwayMessage(ProtocolErrorCode.Shutdown, "🚇 \uD83D\uDE87");

        var read = (GoAwayMessage)ControlCodec.Read(FrameType.GoAway, new ReadOnlySequence<byte>(ControlCodec.ToArray(message)));

        Assert.Equal(message.Reason, read.Reason);
    }

    [Fact]
    public void A_login_method_the_reader_refuses_is_refused_by_the_writer()
    {
        var output = new ArrayBufferWriter<byte>();

        var refused = Assert.Throws<ArgumentException>(() => ControlCodec.Write(new AuthStartMessage((AuthMethod)137, "u", []), output));

        Assert.Contains("Method 137", refused.Message);
        Assert.Equal(0, output.WrittenCount);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(228)]
    public void A_stream_protocol_the_reader_refuses_is_refused_by_the_writer(byte protocol)
    {
        var output = new ArrayBufferWriter<byte>();
        var open = new OpenMessage((StreamProtocol)protocol, "t", "tcp://t:1", [], 1000, OpenOptions.None, "");

        var refused = Assert.Throws<ArgumentException>(() => ControlCodec.Write(open, output));

        Assert.Contains($"Protocol {protocol}", refused.Message);
        Assert.Equal(0, output.WrittenCount);
    }
}

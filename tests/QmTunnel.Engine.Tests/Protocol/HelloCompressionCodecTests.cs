using System.Buffers;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Protocol;

/// <summary>The compression bytes of a version 4 Hello (docs/protocol.md, "Compression"), and a Hello without them.</summary>
public sealed class HelloCompressionCodecTests
{
    [Fact]
    public void A_hello_without_the_compression_bytes_is_read_as_a_version_3_hello_and_written_back_as_it_was()
    {
        // What a version 3 peer sends: read (so the version check refuses it as UnsupportedVersion), not MalformedFrame.
        var v3 = new byte[] { 0, 3, 0, 3, 0, 2, (byte)'a', (byte)'b', 0, 1, (byte)'n', 0, 1, 0, 0, 0, 1, 0, 0 };
        var hello = Assert.IsType<HelloMessage>(ControlCodec.Read(FrameType.Hello, new ReadOnlySequence<byte>(v3)));
        Assert.Null(hello.Compression);
        Assert.Equal(v3, ControlCodec.ToArray(hello));
        // One compression byte without the level is short.
        var e = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Hello, new ReadOnlySequence<byte>([.. v3, 1])));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, e.Code);
    }

    [Fact]
    public void Any_compression_bytes_are_read_and_written_back_as_they_are()
    {
        foreach (var (algorithm, level) in new (byte, byte)[] { (0, 0), (1, 12), (2, 19), (7, 0), (255, 255) })
        {
            var hello = new HelloMessage(4, 4, "id", "n", 65536, 65536) { Compression = new CompressionOffer(algorithm, level) };
            var bytes = ControlCodec.ToArray(hello);
            Assert.Equal(hello, ControlCodec.Read(FrameType.Hello, new ReadOnlySequence<byte>(bytes)));
            Assert.Equal([algorithm, level], bytes[^2..]);
        }
    }
}

using System.Buffers;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Protocol;

/// <summary>The Open fields of reverse tunnels (docs/protocol.md, "Reverse tunnels"): what reads back, and what each side refuses.</summary>
public sealed class ReverseCodecTests
{
    private static OpenMessage Bind(uint max = 10, OpenOptions options = OpenOptions.RemoteToLocal) =>
        new(StreamProtocol.Bind, "web", "tcp://127.0.0.1:80", ["qmt://gw2:9200"], 5000, options, "bind")
        {
            Listen = "0.0.0.0:8080",
            Servers = ["gw1:9200", "gw2:9200"],
            MaxConnections = max,
        };

    private static OpenMessage Reverse(uint bindId = 5, IReadOnlyList<string>? route = null) =>
        new(StreamProtocol.Reverse, "web", "tcp://127.0.0.1:80", route ?? [], 5000, OpenOptions.RemoteToLocal | OpenOptions.NoDelay, "203.0.113.7:51000")
        {
            Listen = "0.0.0.0:8080",
            BindStreamId = bindId,
        };

    private static OpenMessage RoundTrip(OpenMessage open) =>
        (OpenMessage)ControlCodec.Read(FrameType.Open, new ReadOnlySequence<byte>(ControlCodec.ToArray(open)));

    [Fact]
    public void Bind_and_Reverse_opens_read_back_equal()
    {
        var bind = RoundTrip(Bind());
        Assert.Equal(StreamProtocol.Bind, bind.Protocol);
        Assert.Equal(10u, bind.MaxConnections);
        Assert.Equal(0u, bind.BindStreamId);
        Assert.Equal(OpenOptions.RemoteToLocal, bind.Options);
        var reverse = RoundTrip(Reverse(uint.MaxValue));
        Assert.Equal(uint.MaxValue, reverse.BindStreamId);
        Assert.Equal("203.0.113.7:51000", reverse.Client);
    }

    public static TheoryData<string, OpenMessage> Malformed => new()
    {
        { "a Bind of a LocalToRemote tunnel", Bind(options: OpenOptions.None) },
        { "a Bind allowing no connection", Bind(max: 0) },
        { "a Bind allowing more than 100000", Bind(max: ControlCodec.MaxReverseConnections + 1) },
        { "a Reverse naming no Bind", Reverse(bindId: 0) },
        { "a Reverse with a route", Reverse(route: ["qmt://gw:9200"]) },
        { "a Tcp stream naming a Bind", Reverse() with { Protocol = StreamProtocol.Tcp } },
        { "a Hold with MaxConnections", Bind() with { Protocol = StreamProtocol.Hold } },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_reverse_open_is_refused_by_the_writer_and_by_the_reader(string what, OpenMessage open)
    {
        var output = new ArrayBufferWriter<byte>();
        Assert.Throws<ArgumentException>(() => ControlCodec.Write(open, output));
        Assert.Equal(0, output.WrittenCount);

        // Written by hand (a peer's bytes): the reader refuses it as malformed.
        var bytes = Patch(open);
        var error = Assert.Throws<ProtocolException>(() => ControlCodec.Read(FrameType.Open, new ReadOnlySequence<byte>(bytes)));
        Assert.True(error.Code == ProtocolErrorCode.MalformedFrame, what);
    }

    /// <summary>The bytes of <paramref name="open"/> as a peer could write them: a writer without the check (the field layout of docs/protocol.md).</summary>
    private static byte[] Patch(OpenMessage open)
    {
        // Build from a valid message of the same shape, then overwrite the fields the check refuses: protocol (first
        // byte), options, the route and the two trailing u32s.
        var shape = open with
        {
            Protocol = open.Route.Count > 0 || open.Protocol != StreamProtocol.Reverse ? StreamProtocol.Bind : StreamProtocol.Reverse,
            Options = OpenOptions.RemoteToLocal,
            MaxConnections = open.Route.Count > 0 || open.Protocol != StreamProtocol.Reverse ? 1u : 0u,
            BindStreamId = open.Route.Count > 0 || open.Protocol != StreamProtocol.Reverse ? 0u : 1u,
        };
        var bytes = ControlCodec.ToArray(shape);
        bytes[0] = (byte)open.Protocol;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(bytes.Length - 8), open.BindStreamId);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(bytes.Length - 4), open.MaxConnections);
        var optionsAt = OptionsOffset(shape);
        bytes[optionsAt] = (byte)open.Options;
        return bytes;
    }

    private static int OptionsOffset(OpenMessage o)
    {
        static int Str(string s) => 2 + System.Text.Encoding.UTF8.GetByteCount(s);
        return 1 + Str(o.Tunnel) + Str(o.Target) + 2 + o.Route.Sum(Str) + 4;
    }
}

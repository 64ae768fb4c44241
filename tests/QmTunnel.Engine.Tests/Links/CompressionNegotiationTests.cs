using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Compression agreed in the Hellos (docs/protocol.md, "Compression") and what it does to data, on real links over
/// loopback TCP: the dialer asks, the acceptor agrees or answers None (a server that does not compress, an algorithm or
/// level it does not know), a server answering what was not asked fails the dial; on an agreed link compressible data
/// shrinks, random data goes as it is (never larger), and a payload under 512 bytes is never compressed.
/// </summary>
public sealed class CompressionNegotiationTests
{
    private static async Task<(Socket Client, Socket Server)> ConnectedPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var connecting = client.ConnectAsync(listener.LocalEndPoint!);
        var server = await listener.AcceptAsync();
        await connecting;
        return (client, server);
    }

    /// <summary>A dialer asking for <paramref name="asked"/> and an acceptor with <paramref name="acceptor"/> options, started, with an echo on the acceptor.</summary>
    private static async Task<(Link Dialer, Link Acceptor)> LinkAsync(LinkCompression asked, LinkOptions? acceptor = null)
    {
        var (client, server) = await ConnectedPairAsync();
        var accepting = Link.HandshakeAsAcceptorAsync(server, acceptor ?? new LinkOptions(), NullLogger.Instance, default);
        var dialer = await Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default, session: LinkSessionSettings.None with { Compression = asked });
        var accepted = await accepting;
        accepted.StreamOpened = EchoAsync;
        dialer.Start();
        accepted.Start();
        return (dialer, accepted);
    }

    private static async Task EchoAsync(MuxStream stream, OpenMessage open)
    {
        stream.SendOpenAck();
        try
        {
            while (true)
            {
                var result = await stream.Input.ReadAsync();
                foreach (var segment in result.Buffer)
                {
                    await stream.SendAsync(segment, default);
                }
                stream.Consumed((int)result.Buffer.Length);
                stream.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    stream.SendFin();
                    return;
                }
            }
        }
        catch (StreamResetException)
        {
        }
    }

    /// <summary>Sends <paramref name="payload"/> in frames of at most <paramref name="chunk"/> bytes and reads back the echo.</summary>
    private static async Task<byte[]> EchoThroughAsync(Link dialer, byte[] payload, int chunk)
    {
        var stream = dialer.OpenStream(new OpenMessage(StreamProtocol.Tcp, "t", "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "c"), new TrafficCounters(), 1024 * 1024);
        var reading = ReadAllAsync(stream);
        for (var sent = 0; sent < payload.Length;)
        {
            var credit = await stream.WaitForCreditAsync(Math.Min(chunk, payload.Length - sent), default);
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
            payload.AsSpan(sent, credit).CopyTo(buffer.AsSpan(FrameHeader.Size));
            stream.SendData(buffer, credit);
            sent += credit;
        }
        stream.SendFin();
        return await reading.WaitAsync(TimeSpan.FromSeconds(30));
    }

    private static async Task<byte[]> ReadAllAsync(MuxStream stream)
    {
        var all = new List<byte>();
        while (true)
        {
            var result = await stream.Input.ReadAsync();
            all.AddRange(result.Buffer.ToArray());
            stream.Consumed((int)result.Buffer.Length);
            stream.Input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return [.. all];
            }
        }
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4, 0)]
    [InlineData(CompressionAlgorithm.Lz4, 9)]
    [InlineData(CompressionAlgorithm.Zstd, 3)]
    [InlineData(CompressionAlgorithm.Zstd, 19)]
    public async Task Asked_and_agreed_compressible_data_shrinks_both_ways_and_arrives_intact(CompressionAlgorithm algorithm, int level)
    {
        var (dialer, acceptor) = await LinkAsync(new LinkCompression(algorithm, level));
        await using var _ = dialer;
        await using var __ = acceptor;
        Assert.Equal(new LinkCompression(algorithm, level), dialer.Compression);
        Assert.Equal(new LinkCompression(algorithm, level), acceptor.Compression); // the acceptor compresses at the level asked

        var payload = CompressionSessionTests.Compressible(1024 * 1024);
        var echoed = await EchoThroughAsync(dialer, payload, 64 * 1024);

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));
        Assert.Equal(payload.Length, dialer.DataBytesSent);
        Assert.Equal(payload.Length, acceptor.DataBytesSent);
        Assert.True(dialer.DataWireBytesSent < payload.Length / 4, $"dialer: {dialer.DataWireBytesSent} bytes on the wire for {payload.Length}");
        Assert.True(acceptor.DataWireBytesSent < payload.Length / 4, $"acceptor: {acceptor.DataWireBytesSent} bytes on the wire for {payload.Length}");
        Assert.Equal(dialer.DataWireBytesSent, acceptor.DataWireBytesReceived);
        Assert.Equal(payload.Length, acceptor.DataBytesReceived);
        // The link's own byte counters (what Get-QmTunnelStats shows as LinkBytesSent) saw the small form too.
        Assert.True(dialer.BytesSent < payload.Length / 4, $"{dialer.BytesSent} link bytes for {payload.Length}");
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4)]
    [InlineData(CompressionAlgorithm.Zstd)]
    public async Task Random_data_goes_as_it_is_never_larger(CompressionAlgorithm algorithm)
    {
        var (dialer, acceptor) = await LinkAsync(LinkCompression.DefaultFor(algorithm));
        await using var _ = dialer;
        await using var __ = acceptor;
        var payload = RandomNumberGenerator.GetBytes(1024 * 1024);

        var echoed = await EchoThroughAsync(dialer, payload, 64 * 1024);

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));
        Assert.Equal(payload.Length, dialer.DataWireBytesSent);
        Assert.Equal(payload.Length, acceptor.DataWireBytesSent);
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4)]
    [InlineData(CompressionAlgorithm.Zstd)]
    public async Task A_payload_under_512_bytes_is_never_compressed_and_one_of_512_is(CompressionAlgorithm algorithm)
    {
        var (dialer, acceptor) = await LinkAsync(LinkCompression.DefaultFor(algorithm));
        await using var _ = dialer;
        await using var __ = acceptor;

        // 100 frames of 511 zero bytes (as compressible as data gets): each goes as it is.
        var small = await EchoThroughAsync(dialer, new byte[511 * 100], 511);
        Assert.Equal(511 * 100, small.Length);
        Assert.Equal(511 * 100, dialer.DataWireBytesSent);

        // Frames of 512: each compressed.
        var wire = dialer.DataWireBytesSent;
        var exact = await EchoThroughAsync(dialer, new byte[512 * 100], 512);
        Assert.Equal(512 * 100, exact.Length);
        Assert.True(dialer.DataWireBytesSent - wire < 512 * 100 / 4, $"{dialer.DataWireBytesSent - wire} bytes on the wire for 100 frames of 512");
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4)]
    [InlineData(CompressionAlgorithm.Zstd)]
    public async Task A_stream_whose_data_turns_compressible_after_random_data_is_compressed_again_within_16_frames(CompressionAlgorithm algorithm)
    {
        var (dialer, acceptor) = await LinkAsync(LinkCompression.DefaultFor(algorithm));
        await using var _ = dialer;
        await using var __ = acceptor;
        const int frame = 16 * 1024;
        var noise = RandomNumberGenerator.GetBytes(40 * frame);
        var text = CompressionSessionTests.Compressible(40 * frame);

        // One stream: 40 frames of random data (each tried or skipped, none compressed), then 40 of text.
        var echoed = await EchoThroughAsync(dialer, [.. noise, .. text], frame);

        Assert.Equal(SHA256.HashData([.. noise, .. text]), SHA256.HashData(echoed));
        var textWire = dialer.DataWireBytesSent - noise.Length;
        // At most 15 frames of the text go as they are (the back-off after the random data), the other 25 compressed.
        Assert.True(textWire <= (Link.MaxCompressSkip + 2) * frame, $"the text took {textWire} bytes on the wire");
        Assert.True(textWire < text.Length / 2, $"the text took {textWire} of {text.Length} bytes on the wire");
    }

    [Fact]
    public async Task An_acceptor_that_does_not_compress_answers_None_and_both_sides_send_uncompressed()
    {
        var (dialer, acceptor) = await LinkAsync(LinkCompression.Zstd, new LinkOptions { Limits = new LinkLimits { AcceptCompression = false } });
        await using var _ = dialer;
        await using var __ = acceptor;
        Assert.Equal(LinkCompression.None, dialer.Compression);
        Assert.Equal(LinkCompression.None, acceptor.Compression);

        var payload = CompressionSessionTests.Compressible(256 * 1024);
        var echoed = await EchoThroughAsync(dialer, payload, 64 * 1024);
        Assert.Equal(payload, echoed);
        Assert.Equal(payload.Length, dialer.DataWireBytesSent);
        Assert.Equal(payload.Length, acceptor.DataWireBytesSent);
    }

    [Theory]
    [InlineData(7, 0, "compression 7 is not one qmTunnel knows")]
    [InlineData(1, 13, "level 13 is not a lz4 level")]
    [InlineData(2, 0, "level 0 is not a zstd level")]
    [InlineData(2, 22, "level 22 is not a zstd level")]
    public async Task An_algorithm_or_level_the_acceptor_does_not_know_is_answered_None(byte algorithm, byte level, string logged)
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        var logs = new Diagnostics.CapturingLoggerFactory();
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions(), logs.CreateLogger("test"), default);
        var hello = new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, "raw", "raw", 65536, 65536) { Compression = new CompressionOffer(algorithm, level) };
        await client.SendAsync((byte[])[.. FrameCodec.Preamble, .. Frame(hello)], SocketFlags.None);

        await using var link = await accepting;
        var answer = await ReadHelloAsync(client);
        Assert.Equal(CompressionOffer.None, answer.Compression);
        Assert.Equal(LinkCompression.None, link.Compression);
        Assert.Contains(logs.Event(QmTunnel.Engine.Diagnostics.EventIds.LinkCompressionRefused), e => e.Message.Contains(logged, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_server_answering_an_algorithm_the_dialer_did_not_ask_for_fails_the_dial()
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = server;
        var dialing = Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default, session: LinkSessionSettings.None with { Compression = LinkCompression.Lz4 });
        var reader = PipeReader.Create(new NetworkStream(server));
        var asked = await ReadFirstHelloAsync(reader);
        Assert.Equal(new CompressionOffer(1, 0), asked.Compression);
        var answer = new HelloMessage(LinkOptions.MaxVersion, LinkOptions.MaxVersion, "raw", "raw", 65536, 65536) { Compression = new CompressionOffer(2, 3) };
        await server.SendAsync(Frame(answer), SocketFlags.None);

        var e = await Assert.ThrowsAsync<ProtocolException>(() => dialing);
        Assert.Equal(ProtocolErrorCode.HandshakeFailed, e.Code);
        Assert.Contains("agreed to compression 2, and this side asked for lz4", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_version_3_hello_without_compression_bytes_is_refused_as_an_unsupported_version()
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions(), NullLogger.Instance, default);
        var hello = new HelloMessage(3, 3, "raw", "raw", 65536, 65536) { Compression = null };
        await client.SendAsync((byte[])[.. FrameCodec.Preamble, .. Frame(hello)], SocketFlags.None);

        var e = await Assert.ThrowsAsync<ProtocolException>(() => accepting);
        Assert.Equal(ProtocolErrorCode.UnsupportedVersion, e.Code);
    }

    private static byte[] Frame(ControlMessage message)
    {
        var payload = ControlCodec.ToArray(message);
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(message.FrameType, FrameFlags.None, 0, payload.Length).Write(bytes);
        payload.CopyTo(bytes, FrameHeader.Size);
        return bytes;
    }

    private static async Task<HelloMessage> ReadHelloAsync(Socket socket)
    {
        var reader = PipeReader.Create(new NetworkStream(socket));
        return await ReadFrameAsync(reader);
    }

    private static async Task<HelloMessage> ReadFirstHelloAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            if (result.Buffer.Length >= 4)
            {
                reader.AdvanceTo(result.Buffer.GetPosition(4));
                return await ReadFrameAsync(reader);
            }
            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static async Task<HelloMessage> ReadFrameAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            if (FrameCodec.TryReadFrame(ref buffer, 16 * 1024, out var header, out var payload))
            {
                var message = ControlCodec.Read(header.Type, payload);
                reader.AdvanceTo(buffer.Start);
                return Assert.IsType<HelloMessage>(message);
            }
            Assert.False(result.IsCompleted, "the connection ended before a Hello");
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Compression on a link session (docs/protocol.md, "Compression"), over a <see cref="MemoryLinkPair"/> whose session
/// agreed it: credit counts uncompressed bytes, compressed frames kept for a resume are resent as they are and arrive
/// intact, and every hostile compressed frame (a decompression bomb, a length that lies, garbage, a frame on a link that
/// agreed no compression) ends the session with a protocol error naming it.
/// </summary>
public sealed class CompressionSessionTests : IAsyncLifetime
{
    private const int Window = 64 * 1024;
    private readonly FakeTimeProvider _clock = new();
    private readonly List<MemoryLinkPair> _pairs = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var pair in _pairs)
        {
            await pair.DisposeAsync();
        }
    }

    private MemoryLinkPair Start(LinkCompression compression, Func<MuxStream, OpenMessage, Task>? acceptorStreams = null)
    {
        var pair = MemoryLinkPair.Start(LinkSessionSettings.Default with { Compression = compression }, new LinkOptions { Time = _clock, InitialWindow = Window },
            acceptorStreams: acceptorStreams ?? EchoAsync);
        _pairs.Add(pair);
        return pair;
    }

    private static OpenMessage Open(string name) => new(StreamProtocol.Tcp, name, "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test");

    /// <summary>OpenAck, then everything read is sent back, then Fin.</summary>
    private static async Task EchoAsync(MuxStream stream, OpenMessage open)
    {
        stream.SendOpenAck();
        try
        {
            while (true)
            {
                var result = await stream.Input.ReadAsync();
                var bytes = result.Buffer.ToArray();
                stream.Input.AdvanceTo(result.Buffer.End);
                stream.Consumed(bytes.Length);
                if (bytes.Length > 0)
                {
                    await stream.SendAsync(bytes, default);
                }
                if (result.IsCompleted)
                {
                    stream.SendFin();
                    return;
                }
            }
        }
        catch (StreamResetException)
        {
            // the session ended under it
        }
    }

    /// <summary>Text-like data that compresses well (about 1:10 with LZ4).</summary>
    public static byte[] Compressible(int length)
    {
        var bytes = new byte[length];
        var words = "qmTunnel carries application data between servers; "u8;
        for (var i = 0; i < length; i++)
        {
            bytes[i] = words[i % words.Length];
        }
        return bytes;
    }

    private static async Task<byte[]> ReadAsync(MuxStream stream, int count)
    {
        var received = new List<byte>(count);
        while (received.Count < count)
        {
            var result = await stream.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            var take = (int)Math.Min(result.Buffer.Length, count - received.Count);
            received.AddRange(result.Buffer.Slice(0, take).ToArray());
            stream.Input.AdvanceTo(result.Buffer.GetPosition(take));
            stream.Consumed(take);
            Assert.False(result.IsCompleted && take == 0, $"the stream ended after {received.Count} of {count} bytes");
        }
        return [.. received];
    }

    private static byte[] DataFrame(uint stream, FrameFlags flags, byte[] payload)
    {
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(FrameType.Data, flags, stream, payload.Length).Write(bytes);
        payload.CopyTo(bytes, FrameHeader.Size);
        return bytes;
    }

    private static byte[] CompressedPayload(CompressionAlgorithm algorithm, byte[] data)
    {
        var packed = new byte[data.Length];
        var written = FrameCompression.TryCompress(LinkCompression.DefaultFor(algorithm), data, packed);
        Assert.True(written > 0);
        return packed[..written];
    }

    private static byte[] WithDeclared(byte[] payload, uint declared)
    {
        var copy = payload.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(copy, declared);
        return copy;
    }

    [Fact]
    public async Task Credit_counts_uncompressed_bytes_so_a_window_of_compressible_data_is_not_overrun()
    {
        // Nobody reads the far end: the sender may put exactly one window of *uncompressed* bytes in flight, although
        // on the wire it took a small part of that.
        var pair = Start(LinkCompression.Lz4, acceptorStreams: (_, _) => Task.Delay(Timeout.Infinite));
        var stream = pair.Dialer.OpenStream(Open("credit"), new TrafficCounters(), 0);
        await stream.SendAsync(Compressible(Window), default);
        Assert.Equal(0, stream.SendCredit);
        await TunnelTests.WaitUntil(() => pair.Acceptor.DataBytesReceived == Window);
        Assert.True(pair.Dialer.DataWireBytesSent < Window / 4, $"{pair.Dialer.DataWireBytesSent} bytes on the wire for {Window}");

        // One byte more waits for credit instead of overrunning the far end's window. A Ping queued behind it comes back
        // only after the far end read every frame queued before it: had the byte gone, it would have arrived by then (or
        // closed the link as an overrun).
        var more = stream.SendAsync(new byte[1], default);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await pair.Dialer.PingAsync(timeout.Token);
        Assert.False(more.IsCompleted);
        Assert.Equal(Window, pair.Acceptor.DataBytesReceived);
        Assert.False(pair.Acceptor.IsClosed);
        Assert.False(pair.Dialer.IsClosed);
    }

    [Theory]
    [InlineData(CompressionAlgorithm.Lz4)]
    [InlineData(CompressionAlgorithm.Zstd)]
    public async Task Compressed_frames_kept_over_a_cut_are_resent_as_they_are_and_arrive_intact(CompressionAlgorithm algorithm)
    {
        var pair = Start(LinkCompression.DefaultFor(algorithm));
        var stream = pair.Dialer.OpenStream(Open("resume"), new TrafficCounters(), 4 * Window);
        Assert.Equal([1, 2, 3], await SendAndEchoAsync(stream, [1, 2, 3]));

        // The connection swallows what is written from now on: the frames stay kept, unacknowledged.
        pair.DialerEnd.BlackHole();
        var payload = Compressible(3 * Window / 4); // within the window: all of it is written (into the black hole)
        var sending = stream.SendAsync(payload, default);
        await TunnelTests.WaitUntil(() => pair.Dialer.DataBytesSent == 3 + payload.Length);
        Assert.True(pair.Dialer.RetainedFrames > 0);
        var wireSent = pair.Dialer.DataWireBytesSent - 3;
        Assert.True(wireSent < payload.Length / 4, $"{wireSent} bytes on the wire for {payload.Length}");

        pair.DialerEnd.Cut();
        await TunnelTests.WaitUntil(() => pair.Dialer.State == LinkState.Resuming && pair.Acceptor.State == LinkState.Resuming);
        await pair.ResumeAsync();
        await sending;

        var echoed = await ReadAsync(stream, payload.Length);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));
        // What the new connection carried from the dialer: the kept frames, compressed as they were (no re-compression
        // and no raw resend: far less than the data).
        Assert.True(pair.DialerEnd.BytesWritten < payload.Length / 4, $"the resend took {pair.DialerEnd.BytesWritten} bytes for {payload.Length}");
        Assert.Equal(1, pair.Dialer.Resumes);
    }

    private static async Task<byte[]> SendAndEchoAsync(MuxStream stream, byte[] bytes)
    {
        await stream.SendAsync(bytes, default);
        return await ReadAsync(stream, bytes.Length);
    }

    public static TheoryData<string, CompressionAlgorithm, byte[], ProtocolErrorCode, string> HostileFrames()
    {
        var lz4 = CompressedPayload(CompressionAlgorithm.Lz4, new byte[16 * 1024]);
        var zstd = CompressedPayload(CompressionAlgorithm.Zstd, new byte[16 * 1024]);
        return new TheoryData<string, CompressionAlgorithm, byte[], ProtocolErrorCode, string>
        {
            { "a bomb: 2 GiB declared", CompressionAlgorithm.Lz4, WithDeclared(lz4, 0x7fff_ffff), ProtocolErrorCode.FrameTooLarge, "declares 2147483647 uncompressed bytes; the limit is 262144 (decompression bomb refused)" },
            { "a bomb: one past the limit", CompressionAlgorithm.Zstd, WithDeclared(zstd, 256 * 1024 + 1), ProtocolErrorCode.FrameTooLarge, "the limit is 262144" },
            { "a bomb: the data decodes past the length declared", CompressionAlgorithm.Lz4, WithDeclared(lz4, 1000), ProtocolErrorCode.MalformedFrame, "not valid lz4 data for the 1000 bytes it declares" },
            { "zstd decoding past the length declared", CompressionAlgorithm.Zstd, WithDeclared(zstd, 1000), ProtocolErrorCode.MalformedFrame, "not valid zstd data for the 1000 bytes it declares" },
            { "a length longer than the data", CompressionAlgorithm.Lz4, WithDeclared(lz4, 16 * 1024 + 1), ProtocolErrorCode.MalformedFrame, "not valid lz4 data for the 16385 bytes it declares" },
            { "zstd: a length longer than the data", CompressionAlgorithm.Zstd, WithDeclared(zstd, 16 * 1024 + 1), ProtocolErrorCode.MalformedFrame, "declares 16385 bytes and decodes to 16384" },
            { "garbage", CompressionAlgorithm.Zstd, [0, 0, 0x10, 0, .. RandomNumberGenerator.GetBytes(100)], ProtocolErrorCode.MalformedFrame, "not valid zstd data" },
            { "no smaller than what it declares", CompressionAlgorithm.Lz4, [0, 0, 0, 8, .. new byte[8]], ProtocolErrorCode.MalformedFrame, "compressed data must be smaller than what it carries" },
            { "zero declared", CompressionAlgorithm.Lz4, [0, 0, 0, 0, 1], ProtocolErrorCode.MalformedFrame, "declares 0 uncompressed bytes" },
        };
    }

    [Theory]
    [MemberData(nameof(HostileFrames))]
    public async Task A_hostile_compressed_frame_ends_the_session_with_a_protocol_error_that_names_it(string what, CompressionAlgorithm algorithm, byte[] payload,
        ProtocolErrorCode code, string reason)
    {
        var pair = Start(LinkCompression.DefaultFor(algorithm));
        ProtocolException? seen = null;
        pair.Dialer.ProtocolError += ex => seen = ex;
        var stream = pair.Dialer.OpenStream(Open(what), new TrafficCounters(), 0);
        Assert.Equal([7], await SendAndEchoAsync(stream, [7]));

        var frame = DataFrame(stream.Id, FrameFlags.Compressed, payload);
        await pair.AcceptorEnd.WriteAsync([new ArraySegment<byte>(frame)], frame.Length);

        await pair.Dialer.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(code, seen?.Code);
        Assert.Contains(reason, pair.Dialer.CloseReason, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<Exception>(() => ReadAsync(stream, 1)); // the stream is reset with the link
    }

    [Fact]
    public async Task A_compressed_frame_on_a_link_that_agreed_no_compression_ends_it()
    {
        var pair = Start(LinkCompression.None);
        ProtocolException? seen = null;
        pair.Dialer.ProtocolError += ex => seen = ex;
        var stream = pair.Dialer.OpenStream(Open("none"), new TrafficCounters(), 0);
        Assert.Equal([7], await SendAndEchoAsync(stream, [7]));

        var frame = DataFrame(stream.Id, FrameFlags.Compressed, CompressedPayload(CompressionAlgorithm.Lz4, new byte[4096]));
        await pair.AcceptorEnd.WriteAsync([new ArraySegment<byte>(frame)], frame.Length);

        await pair.Dialer.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, seen?.Code);
        Assert.Contains("this link agreed no compression", pair.Dialer.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_compressed_payload_beyond_the_window_is_refused_before_it_is_decoded()
    {
        // 1 MiB declared would pass MaxPayload on a link announcing 1 MiB; the stream's window (64 KiB) refuses it.
        var pair = MemoryLinkPair.Start(LinkSessionSettings.Default with { Compression = LinkCompression.Lz4 },
            new LinkOptions { Time = _clock, InitialWindow = Window, MaxPayload = 1024 * 1024 }, acceptorStreams: EchoAsync);
        _pairs.Add(pair);
        ProtocolException? seen = null;
        pair.Dialer.ProtocolError += ex => seen = ex;
        var stream = pair.Dialer.OpenStream(Open("window"), new TrafficCounters(), 0);
        Assert.Equal([7], await SendAndEchoAsync(stream, [7]));

        var frame = DataFrame(stream.Id, FrameFlags.Compressed, CompressedPayload(CompressionAlgorithm.Lz4, new byte[Window + 1]));
        await pair.AcceptorEnd.WriteAsync([new ArraySegment<byte>(frame)], frame.Length);

        await pair.Dialer.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ProtocolErrorCode.FlowControlViolation, seen?.Code);
        Assert.Contains($"received a compressed payload of {Window + 1} bytes beyond the window", pair.Dialer.CloseReason, StringComparison.Ordinal);
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// A connection that has not logged in holds no large buffer: the handshake reader reads small and waits with a
/// zero-byte read, the coalescing stream under TLS passes everything through until the login, and only a logged-in
/// link reads big. (Before: 256 KiB reader + 64 KiB read buffer + 256 KiB write buffer per waiting TLS connection.)
/// </summary>
public sealed class PreLoginBufferTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _engines.DisposeAsync();

    /// <summary>Passes everything to the inner stream and notes the size of every read asked for.</summary>
    private sealed class RecordingStream(Stream inner) : Stream
    {
        public List<int> Reads { get; } = [];
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public List<int> Writes { get; } = [];

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            lock (Reads)
            {
                Reads.Add(buffer.Length);
            }
            return inner.ReadAsync(buffer, cancellationToken);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            lock (Writes)
            {
                Writes.Add(buffer.Length);
            }
            return inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override void Flush() => inner.Flush();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [Fact]
    public async Task The_coalescing_stream_passes_everything_through_until_it_is_told_to_coalesce()
    {
        var inner = new RecordingStream(new MemoryStream(new byte[100_000]));
        var stream = new CoalescingStream(inner);
        Assert.Equal(5, await stream.ReadAsync(new byte[5]));
        Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty));
        await stream.WriteAsync(new byte[100]);
        Assert.Equal([5, 0], inner.Reads);
        Assert.Equal([100], inner.Writes); // written at once, not gathered
        Assert.False(stream.HoldsBuffers);

        stream.Coalesce = true;
        Assert.Equal(5, await stream.ReadAsync(new byte[5]));
        Assert.Equal(64 * 1024, inner.Reads[^1]); // from now on one big socket read serves many small ones
        Assert.True(stream.HoldsBuffers);
    }

    [Fact]
    public async Task The_acceptor_reads_small_before_the_login_waits_without_a_buffer_and_reads_big_after()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync();
        var recording = new RecordingStream(new NetworkStream(server, ownsSocket: false));
        var handshake = Link.HandshakeAsAcceptorAsync(server, new LinkOptions(), NullLogger.Instance, CancellationToken.None, recording);
        // The peer is silent a while: the reader waits with a zero-byte read, holding no buffer.
        await TunnelTests.WaitUntil(() => { lock (recording.Reads) { return recording.Reads.Count > 0; } });
        lock (recording.Reads)
        {
            Assert.Equal(0, recording.Reads[0]);
        }
        await client.SendAsync((byte[])[.. FrameCodec.Preamble, .. RawFrames.Hello()], SocketFlags.None);
        await using var link = await handshake.WaitAsync(TimeSpan.FromSeconds(10));
        int[] before;
        lock (recording.Reads)
        {
            before = [.. recording.Reads];
        }
        Assert.All(before, size => Assert.True(size <= 4096, $"a read of {size} bytes before the link was up"));

        link.Start();
        await TunnelTests.WaitUntil(() => { lock (recording.Reads) { return recording.Reads.Count > before.Length; } });
        lock (recording.Reads)
        {
            Assert.True(recording.Reads[before.Length] >= 64 * 1024, $"the link's reader asked for {recording.Reads[before.Length]} bytes");
        }
    }

    [Fact]
    public async Task A_TLS_connection_waiting_for_its_login_holds_no_coalescing_buffer()
    {
        var server = await _engines.StartAsync();
        var clients = new List<(Socket Socket, SslStream Tls)>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, server.Port);
                var tls = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false, (_, _, _, _) => true);
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" });
                await tls.WriteAsync((byte[])[.. FrameCodec.Preamble, .. RawFrames.Hello()]);
                // The server's Hello came back through TLS: it wrote, and waits for the login.
                var header = new byte[FrameHeader.Size];
                await tls.ReadExactlyAsync(header);
                Assert.Equal(FrameType.Hello, FrameCodec.ParseHeader(header, 1 << 20).Type);
                clients.Add((socket, tls));
            }
            var pending = server.Acceptor!.PendingSnapshot();
            Assert.Equal(5, pending.Length);
            Assert.All(pending, p => Assert.False(p.Transport!.HoldsBuffers, $"{p.Peer} holds a coalescing buffer before its login"));
        }
        finally
        {
            foreach (var (socket, tls) in clients)
            {
                tls.Dispose();
                socket.Dispose();
            }
        }
    }
}

using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// The bound of a link's send queue over real loopback links: a peer that sends without reading is throttled (the
/// reader stops), senders of Data wait for room, two honest peers never deadlock, and nothing stays queued after close.
/// </summary>
public sealed class SendQueueTests
{
    /// <summary>What one queued Pong costs: header, 8 bytes, overhead.</summary>
    private const int PongCost = FrameHeader.Size + 8 + Link.FrameOverhead;

    /// <summary>A connected pair of loopback sockets with small kernel buffers, so a peer that does not read is felt soon.</summary>
    internal static async Task<(Socket Client, Socket Server)> ConnectedPairAsync(int bufferSize = 64 * 1024)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = bufferSize, SendBufferSize = bufferSize };
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = bufferSize, SendBufferSize = bufferSize, NoDelay = true };
        var connecting = client.ConnectAsync(listener.LocalEndPoint!);
        var server = await listener.AcceptAsync();
        await connecting;
        server.NoDelay = true;
        return (client, server);
    }

    /// <summary><paramref name="count"/> Ping frames back to back, as a flooding peer writes them.</summary>
    internal static byte[] Pings(int count)
    {
        var bytes = new byte[count * (FrameHeader.Size + 8)];
        for (var i = 0; i < count; i++)
        {
            new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8).Write(bytes.AsSpan(i * (FrameHeader.Size + 8)));
        }
        return bytes;
    }

    internal static OpenMessage Open(string name) => new(StreamProtocol.Tcp, name, "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test");

    [Fact]
    public async Task A_peer_that_sends_pings_without_reading_the_pongs_is_throttled_and_the_queue_stays_bounded()
    {
        var (client, server) = await ConnectedPairAsync();
        var options = new LinkOptions { MaxQueuedBytes = 64 * 1024, QueueSlackBytes = 32 * 1024 };
        var accepting = Link.HandshakeAsAcceptorAsync(server, options, NullLogger.Instance, default);
        // The flooder: a real handshake, then raw Pings on its socket, and never a read.
        _ = await Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default);
        var acceptor = await accepting;
        acceptor.Start();
        var batch = Pings(4096);
        long sent = 0;
        using var stop = new CancellationTokenSource();
        var flooding = Task.Run(async () =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    await client.SendAsync(batch, SocketFlags.None, stop.Token);
                    Interlocked.Add(ref sent, batch.Length);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        var bound = options.MaxQueuedBytes + options.QueueSlackBytes + PongCost;
        await TunnelTests.WaitUntil(() => acceptor.ReadPauses > 0, 30_000);
        Assert.InRange(acceptor.QueuedBytesPeak, options.MaxQueuedBytes + options.QueueSlackBytes, bound);
        Assert.False(acceptor.IsClosed);

        // The flooder now reads slowly: the acceptor reads again, pauses again, and the bound holds throughout.
        var pausesBefore = acceptor.ReadPauses;
        var sentBefore = Interlocked.Read(ref sent);
        var draining = Task.Run(async () =>
        {
            var sink = new byte[4096];
            try
            {
                while (await client.ReceiveAsync(sink, SocketFlags.None, stop.Token) > 0)
                {
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        await TunnelTests.WaitUntil(() => Interlocked.Read(ref sent) > sentBefore + 4 * 1024 * 1024 && acceptor.ReadPauses > pausesBefore, 60_000);
        Assert.InRange(acceptor.QueuedBytesPeak, 0, bound);
        Assert.False(acceptor.IsClosed);

        // Closed: nothing stays queued (every buffer went back to the pool).
        stop.Cancel();
        client.Dispose();
        await acceptor.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.WhenAll(flooding, draining);
        await TunnelTests.WaitUntil(() => acceptor.QueuedBytes == 0); // the writer gave every queued buffer back
    }

    [Fact]
    public async Task Senders_of_data_wait_for_room_while_the_peer_does_not_read_then_everything_arrives()
    {
        const int streams = 8, perStream = 2 * 1024 * 1024, chunk = 16 * 1024;
        var (client, server) = await ConnectedPairAsync();
        var senderOptions = new LinkOptions { MaxQueuedBytes = 256 * 1024 };
        // The receiver grants windows larger than everything sent: only the queue bound can hold the senders back.
        var receiverOptions = new LinkOptions { InitialWindow = 8 * perStream };
        var accepting = Link.HandshakeAsAcceptorAsync(server, receiverOptions, NullLogger.Instance, default);
        await using var sender = await Link.HandshakeAsDialerAsync(client, senderOptions, NullLogger.Instance, default);
        await using var receiver = await accepting;
        var received = new List<Task<bool>>();
        receiver.StreamOpened = (stream, open) =>
        {
            lock (received)
            {
                received.Add(ReceiveAllAsync(stream, (byte)int.Parse(open.Tunnel, System.Globalization.CultureInfo.InvariantCulture), perStream));
            }
            return Task.CompletedTask;
        };
        sender.Start(); // the receiver is not started yet: nobody reads its socket
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var sending = Enumerable.Range(1, streams).Select(i =>
        {
            var stream = sender.OpenStream(Open(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), new TrafficCounters(), 64 * 1024);
            return Task.Run(() => SendAllAsync(stream, (byte)i, perStream, chunk, timeout.Token));
        }).ToList();

        await TunnelTests.WaitUntil(() => sender.QueuedBytes >= senderOptions.MaxQueuedBytes - 2 * (chunk + PongCost), 30_000);
        // Control frames (the Opens, a Ping) may pass the bound; Data never does.
        var bound = senderOptions.MaxQueuedBytes + 4 * 1024;
        Assert.InRange(sender.QueuedBytesPeak, 0, bound);
        Assert.DoesNotContain(sending, t => t.IsCompleted);

        receiver.Start();
        await Task.WhenAll(sending).WaitAsync(timeout.Token);
        await TunnelTests.WaitUntil(() => { lock (received) { return received.Count == streams; } });
        Task<bool>[] checks;
        lock (received)
        {
            checks = [.. received];
        }
        Assert.All(await Task.WhenAll(checks).WaitAsync(timeout.Token), Assert.True);
        Assert.InRange(sender.QueuedBytesPeak, 0, bound);
        await TunnelTests.WaitUntil(() => sender.QueuedBytes == 0);
    }

    [Fact]
    public async Task Two_honest_peers_sending_heavily_both_ways_never_deadlock_and_never_pause()
    {
        const int streams = 16, perDirection = 2 * 1024 * 1024;
        var (client, server) = await ConnectedPairAsync();
        // A small bound, so that it bites all the time; the default slack for control frames.
        var options = new LinkOptions { MaxQueuedBytes = 64 * 1024, InitialWindow = 256 * 1024 };
        var accepting = Link.HandshakeAsAcceptorAsync(server, options, NullLogger.Instance, default);
        await using var dialer = await Link.HandshakeAsDialerAsync(client, options, NullLogger.Instance, default);
        await using var acceptor = await accepting;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var work = new List<Task<bool>>();
        acceptor.StreamOpened = (stream, open) =>
        {
            var fill = (byte)(0x80 + int.Parse(open.Tunnel, System.Globalization.CultureInfo.InvariantCulture));
            lock (work)
            {
                work.Add(EchoBothWaysAsync(stream, fill, (byte)(fill - 0x80), perDirection, timeout.Token));
            }
            return Task.CompletedTask;
        };
        dialer.Start();
        acceptor.Start();
        for (var i = 0; i < streams; i++)
        {
            var stream = dialer.OpenStream(Open(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), new TrafficCounters(), options.InitialWindow);
            lock (work)
            {
                work.Add(EchoBothWaysAsync(stream, (byte)i, (byte)(0x80 + i), perDirection, timeout.Token));
            }
        }
        var pinging = Task.Run(async () =>
        {
            for (var i = 0; i < 20; i++)
            {
                await dialer.PingAsync(timeout.Token);
                await acceptor.PingAsync(timeout.Token);
            }
        });
        await TunnelTests.WaitUntil(() => { lock (work) { return work.Count == 2 * streams; } }, 30_000);
        Task<bool>[] all;
        lock (work)
        {
            all = [.. work];
        }
        Assert.All(await Task.WhenAll(all).WaitAsync(timeout.Token), Assert.True);
        await pinging.WaitAsync(timeout.Token);
        Assert.False(dialer.IsClosed || acceptor.IsClosed);
        Assert.Equal(0, dialer.ReadPauses);
        Assert.Equal(0, acceptor.ReadPauses);
        Assert.InRange(dialer.QueuedBytesPeak, 0, options.MaxQueuedBytes + options.QueueSlackBytes);
    }

    [Fact]
    public async Task Opens_over_the_stream_limit_are_reset_with_StreamLimit_and_the_link_goes_on()
    {
        var (client, server) = await ConnectedPairAsync();
        var limits = new LinkLimits { MaxStreams = 8 };
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions { Limits = limits }, NullLogger.Instance, default);
        await using var dialer = await Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default);
        await using var acceptor = await accepting;
        var accepted = new List<MuxStream>();
        acceptor.StreamOpened = (stream, _) =>
        {
            lock (accepted)
            {
                accepted.Add(stream);
            }
            stream.SendOpenAck();
            return Task.CompletedTask;
        };
        dialer.Start();
        acceptor.Start();
        var opened = Enumerable.Range(0, 12).Select(i => dialer.OpenStream(Open($"s{i}"), new TrafficCounters(), 64 * 1024)).ToList();
        var results = await Task.WhenAll(opened.Select(s => s.Opened)).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(8, results.Count(r => r));
        var refused = opened.Where(s => s.IsReset).ToList();
        Assert.Equal(4, refused.Count);
        Assert.All(refused, s =>
        {
            Assert.Equal(ProtocolErrorCode.StreamLimit, s.ResetCode);
            Assert.Contains("MaxStreamsPerLink", s.ResetReason);
        });
        Assert.Equal(4, acceptor.StreamsRefused);
        Assert.Equal(8, acceptor.StreamCount);

        // Data a refused stream had sent before the Reset reached it is dropped; the link goes on.
        opened[0].Reset(ProtocolErrorCode.ConnectionReset, "done");
        await TunnelTests.WaitUntil(() => acceptor.StreamCount == 7);
        var again = dialer.OpenStream(Open("again"), new TrafficCounters(), 64 * 1024);
        Assert.True(await again.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(acceptor.IsClosed || dialer.IsClosed);
    }

    [Fact]
    public async Task A_stream_whose_handler_ended_after_its_fin_is_forgotten_without_the_peers_fin_and_holds_no_data()
    {
        var (client, server) = await ConnectedPairAsync();
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions(), NullLogger.Instance, default);
        await using var dialer = await Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default);
        await using var acceptor = await accepting;
        var handled = new TaskCompletionSource();
        acceptor.StreamOpened = (stream, _) =>
        {
            stream.SendOpenAck();
            stream.SendFin();
            handled.TrySetResult();
            return Task.CompletedTask;
        };
        dialer.Start();
        acceptor.Start();
        var local = dialer.OpenStream(Open("answered"), new TrafficCounters(), 64 * 1024);
        Assert.True(await local.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
        await handled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await TunnelTests.WaitUntil(() => acceptor.StreamCount == 0);

        // The peer goes on sending a whole window on it and never sends its Fin: nothing is kept, nothing breaks.
        var window = acceptor.Options.InitialWindow;
        var sent = 0;
        while (sent < window)
        {
            var credit = await local.WaitForCreditAsync(Math.Min(64 * 1024, window - sent), CancellationToken.None);
            local.SendData(ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit), credit);
            sent += credit;
        }
        await dialer.PingAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)); // the Pong comes after all of it was read
        Assert.Equal(0, acceptor.StreamCount);
        Assert.False(acceptor.IsClosed || dialer.IsClosed);
    }

    internal static async Task<bool> SendAllAsync(MuxStream stream, byte fill, int count, int chunk, CancellationToken cancellationToken)
    {
        var sent = 0;
        while (sent < count)
        {
            var credit = await stream.WaitForCreditAsync(Math.Min(chunk, count - sent), cancellationToken);
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
            buffer.AsSpan(FrameHeader.Size, credit).Fill(fill);
            stream.SendData(buffer, credit);
            sent += credit;
        }
        stream.SendFin();
        return true;
    }

    internal static async Task<bool> ReceiveAllAsync(MuxStream stream, byte fill, int count)
    {
        long total = 0;
        var intact = true;
        while (true)
        {
            var result = await stream.Input.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                intact &= !segment.Span.ContainsAnyExcept(fill);
            }
            total += result.Buffer.Length;
            stream.Input.AdvanceTo(result.Buffer.End);
            if (result.Buffer.Length > 0)
            {
                stream.Consumed((int)result.Buffer.Length);
            }
            if (result.IsCompleted)
            {
                stream.SendFin();
                return intact && total == count;
            }
        }
    }

    private static async Task<bool> EchoBothWaysAsync(MuxStream stream, byte sendFill, byte receiveFill, int count, CancellationToken cancellationToken)
    {
        var receiving = Task.Run(async () =>
        {
            long total = 0;
            var intact = true;
            while (true)
            {
                var result = await stream.Input.ReadAsync(cancellationToken);
                foreach (var segment in result.Buffer)
                {
                    intact &= !segment.Span.ContainsAnyExcept(receiveFill);
                }
                total += result.Buffer.Length;
                stream.Input.AdvanceTo(result.Buffer.End);
                if (result.Buffer.Length > 0)
                {
                    stream.Consumed((int)result.Buffer.Length);
                }
                if (result.IsCompleted)
                {
                    return intact && total == count;
                }
            }
        }, cancellationToken);
        var sent = await Task.Run(() => SendAllAsync(stream, sendFill, count, 32 * 1024, cancellationToken), cancellationToken);
        return sent && await receiving;
    }
}

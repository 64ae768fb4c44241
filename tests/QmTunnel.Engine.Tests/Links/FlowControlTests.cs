using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>Two ends of a real link over loopback TCP, without engines: streams, credit, half-close, reset.</summary>
public sealed class FlowControlTests : IAsyncLifetime
{
    private const int Window = 64 * 1024;
    private Link _dialer = null!;
    private Link _acceptor = null!;
    private readonly List<(MuxStream Stream, OpenMessage Open)> _accepted = [];
    private readonly SemaphoreSlim _acceptedSignal = new(0);

    public async Task InitializeAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var connecting = client.ConnectAsync(listener.LocalEndPoint!);
        var server = await listener.AcceptAsync();
        await connecting;
        // 1,280 streams stay open in the ordering test: above the default cap of streams per link.
        var options = new LinkOptions { InitialWindow = Window, Limits = new LinkLimits { MaxStreams = 4096 } };
        var acceptorTask = Link.HandshakeAsAcceptorAsync(server, options, NullLogger.Instance, default);
        _dialer = await Link.HandshakeAsDialerAsync(client, options, NullLogger.Instance, default);
        _acceptor = await acceptorTask;
        _acceptor.StreamOpened = (stream, open) =>
        {
            lock (_accepted)
            {
                _accepted.Add((stream, open));
            }
            _acceptedSignal.Release();
            return Task.CompletedTask;
        };
        _dialer.Start();
        _acceptor.Start();
    }

    public async Task DisposeAsync()
    {
        await _dialer.DisposeAsync();
        await _acceptor.DisposeAsync();
    }

    private async Task<(MuxStream Local, MuxStream Remote)> OpenAsync(string name)
    {
        var local = _dialer.OpenStream(new OpenMessage(StreamProtocol.Tcp, name, "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test"), new TrafficCounters(), Window);
        Assert.True(await _acceptedSignal.WaitAsync(TimeSpan.FromSeconds(5)));
        lock (_accepted)
        {
            var remote = _accepted.Single(a => a.Open.Tunnel == name).Stream;
            return (local, remote);
        }
    }

    private static async Task<int> SendAsync(MuxStream stream, byte fill, int count, CancellationToken ct)
    {
        var sent = 0;
        while (sent < count)
        {
            var credit = await stream.WaitForCreditAsync(Math.Min(16 * 1024, count - sent), ct);
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
            buffer.AsSpan(FrameHeader.Size, credit).Fill(fill);
            stream.SendData(buffer, credit);
            sent += credit;
        }
        return sent;
    }

    private static async Task<byte[]> ReadAsync(MuxStream stream, int count)
    {
        var received = new List<byte>();
        while (received.Count < count)
        {
            var result = await stream.Input.ReadAsync();
            var take = (int)Math.Min(result.Buffer.Length, count - received.Count);
            received.AddRange(result.Buffer.Slice(0, take).ToArray());
            stream.Input.AdvanceTo(result.Buffer.GetPosition(take));
            stream.Consumed(take);
            if (result.IsCompleted && take == 0)
            {
                break;
            }
        }
        return [.. received];
    }

    [Fact]
    public async Task A_stalled_stream_does_not_stall_another_stream_on_the_same_link()
    {
        var (slowLocal, _) = await OpenAsync("slow");
        var (fastLocal, fastRemote) = await OpenAsync("fast");

        // Nobody reads the slow stream: the sender may put exactly one window in flight, then must wait.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var slowSending = SendAsync(slowLocal, 0xAA, Window * 4, cts.Token);
        await Task.Delay(300);
        Assert.False(slowSending.IsCompleted);

        // Meanwhile 4 MiB go through the fast stream, many windows' worth.
        const int fastBytes = 4 * 1024 * 1024;
        var fastSending = SendAsync(fastLocal, 0x55, fastBytes, cts.Token);
        var fastReceived = await ReadAsync(fastRemote, fastBytes).WaitAsync(TimeSpan.FromSeconds(30));
        await fastSending;
        Assert.Equal(fastBytes, fastReceived.Length);
        Assert.All(fastReceived, b => Assert.Equal(0x55, b));
        Assert.False(slowSending.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => slowSending);
    }

    [Fact]
    public async Task The_sender_gets_exactly_the_window_and_credit_returns_as_the_reader_consumes()
    {
        var (local, remote) = await OpenAsync("window");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var sent = await SendAsync(local, 1, Window, cts.Token);
        Assert.Equal(Window, sent);
        // Credit is used up: a wait does not complete.
        var waiting = local.WaitForCreditAsync(1024, cts.Token).AsTask();
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        // The receiver has the whole window buffered, and consuming a quarter of it returns that much credit.
        var quarter = await ReadAsync(remote, Window / 4);
        Assert.Equal(Window / 4, quarter.Length);
        var credit = await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(1024, credit);
        Assert.Equal(Window / 4, await local.WaitForCreditAsync(int.MaxValue, cts.Token));
    }

    [Fact]
    public async Task Half_close_each_way_is_separate()
    {
        var (local, remote) = await OpenAsync("half");
        local.SendFin();
        var end = await remote.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(end.IsCompleted);
        remote.Input.AdvanceTo(end.Buffer.End);
        // The other direction still works after the FIN.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var sending = SendAsync(remote, 9, 100_000, cts.Token);
        var data = await ReadAsync(local, 100_000);
        await sending;
        remote.SendFin();
        Assert.Equal(100_000, data.Length);
        var last = await local.Input.ReadAsync();
        Assert.True(last.IsCompleted);
    }

    [Fact]
    public async Task A_reset_reaches_the_peer_with_its_code_and_reason()
    {
        var (local, remote) = await OpenAsync("reset");
        remote.Reset(ProtocolErrorCode.TargetConnectFailed, "refused by 127.0.0.1:1");
        var ex = await Assert.ThrowsAsync<StreamResetException>(async () => await local.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(ProtocolErrorCode.TargetConnectFailed, ex.Code);
        Assert.Equal("refused by 127.0.0.1:1", ex.Message);
        Assert.False(await local.Opened);
    }

    [Fact]
    public async Task Streams_opened_from_many_threads_at_once_reach_the_peer_in_order()
    {
        for (var round = 0; round < 20; round++)
        {
            Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
                _dialer.OpenStream(new OpenMessage(StreamProtocol.Tcp, $"p{round}-{i}", "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test"), new TrafficCounters(), Window));
        }
        var deadline = Environment.TickCount64 + 10_000;
        while (true)
        {
            lock (_accepted)
            {
                if (_accepted.Count == 20 * 64)
                {
                    break;
                }
            }
            Assert.False(_acceptor.IsClosed, _acceptor.CloseReason);
            Assert.True(Environment.TickCount64 < deadline, "not every stream arrived");
            await Task.Delay(10);
        }
        Assert.False(_acceptor.IsClosed);
    }

    [Fact]
    public async Task Ping_measures_a_round_trip()
    {
        var rtt = await _dialer.PingAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(rtt > TimeSpan.Zero && rtt < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Streams_are_forgotten_once_both_sides_finished()
    {
        var (local, remote) = await OpenAsync("forget");
        local.SendFin();
        remote.SendFin();
        await FunctionalWait(() => _dialer.StreamCount == 0 && _acceptor.StreamCount == 0);
    }

    [Fact]
    public async Task A_peer_that_sends_beyond_its_credit_is_closed_with_FlowControlViolation()
    {
        // A raw peer dials a Link whose stream handler never reads: the window it granted must hold.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync();
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions { InitialWindow = Window }, NullLogger.Instance, default);
        var hello = ControlCodec.ToArray(new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, "raw", "raw", 65536, 65536));
        await raw.SendAsync(Concat(FrameCodec.Preamble.ToArray(), Frame(FrameType.Hello, 0, hello)), SocketFlags.None);
        await using var link = await accepting;
        link.StreamOpened = (_, _) => Task.CompletedTask;
        ProtocolException? seen = null;
        link.ProtocolError += ex => seen = ex;
        link.Start();
        var open = ControlCodec.ToArray(new OpenMessage(StreamProtocol.Tcp, "t", "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "c"));
        await raw.SendAsync(Frame(FrameType.Open, 1, open), SocketFlags.None);
        await raw.SendAsync(Frame(FrameType.Data, 1, new byte[Window]), SocketFlags.None);  // exactly the window: fine
        await Task.Delay(100);
        Assert.False(link.IsClosed);
        await raw.SendAsync(Frame(FrameType.Data, 1, new byte[1]), SocketFlags.None);       // one byte more: violation
        await link.Completion.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ProtocolErrorCode.FlowControlViolation, seen?.Code);
        Assert.Contains("FlowControlViolation", link.CloseReason);
    }

    private static byte[] Frame(FrameType type, uint stream, byte[] payload)
    {
        var frame = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(type, FrameFlags.None, stream, payload.Length).Write(frame);
        payload.CopyTo(frame, FrameHeader.Size);
        return frame;
    }

    private static byte[] Concat(byte[] a, byte[] b) => [.. a, .. b];

    private static async Task FunctionalWait(Func<bool> condition)
    {
        var deadline = Environment.TickCount64 + 5000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tunnels;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// The datagram relay over a real link (loopback TCP, no engines): hostile frames, drops without credit that stall no
/// other association, and the idle timer counted on traffic either way.
/// </summary>
public sealed class DatagramRelayTests : IAsyncLifetime
{
    private const int Window = 64 * 1024;
    private Link _dialer = null!;
    private Link _acceptor = null!;
    private readonly List<MuxStream> _accepted = [];
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
        var options = new LinkOptions { InitialWindow = Window };
        var acceptorTask = Link.HandshakeAsAcceptorAsync(server, options, NullLogger.Instance, default);
        _dialer = await Link.HandshakeAsDialerAsync(client, options, NullLogger.Instance, default);
        _acceptor = await acceptorTask;
        _acceptor.StreamOpened = (stream, open) =>
        {
            lock (_accepted)
            {
                _accepted.Add(stream);
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

    private async Task<(MuxStream Local, MuxStream Remote)> OpenAsync()
    {
        var local = _dialer.OpenStream(new OpenMessage(StreamProtocol.Udp, "udp", "udp://127.0.0.1:9", [], 1000, OpenOptions.None, "test"), new TrafficCounters(), Window);
        Assert.True(await _acceptedSignal.WaitAsync(TimeSpan.FromSeconds(5)));
        lock (_accepted)
        {
            return (local, _accepted[^1]);
        }
    }

    public static TheoryData<byte[], bool> HostileFrames => new()
    {
        { [0x00, 0x00], false },                // length 0
        { [0xFF, 0xE4, 1, 2, 3], false },       // 65,508: one over the IPv4 maximum
        { [0xFF, 0xFF], false },                // 65,535
        { [0x00, 0x10, 1, 2, 3], true },        // 16 announced, 3 sent, then Fin: cut off
    };

    [Theory]
    [MemberData(nameof(HostileFrames))]
    public async Task A_hostile_frame_resets_that_stream_and_nothing_else(byte[] bytes, bool thenFin)
    {
        using var sink = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        sink.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var (connection, failure) = await new UdpAppEndpoint().ConnectAsync(new EndpointUri(EndpointScheme.Udp, "127.0.0.1", ((IPEndPoint)sink.LocalEndPoint!).Port),
            OpenOptions.None, TimeSpan.FromSeconds(5), default);
        Assert.Null(failure);
        var (local, remote) = await OpenAsync();
        var counters = new DatagramCounters();
        var relay = DatagramRelay.RunAsync(connection!, remote, counters, TimeProvider.System, idleTimeout: null, default);

        await local.SendAsync(bytes, default);
        if (thenFin)
        {
            local.SendFin();
        }
        var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.False(result.Clean);
        Assert.Equal(ProtocolErrorCode.MalformedFrame, result.ResetCode);
        Assert.Contains("protocol error in a Udp stream", result.Error);
        Assert.Equal(0, counters.DatagramsOut); // nothing of it reached the target
        await AssertResetAsync(local, ProtocolErrorCode.MalformedFrame);

        // the link is fine: another stream still carries a datagram
        var (local2, remote2) = await OpenAsync();
        var (connection2, _) = await new UdpAppEndpoint().ConnectAsync(new EndpointUri(EndpointScheme.Udp, "127.0.0.1", ((IPEndPoint)sink.LocalEndPoint!).Port),
            OpenOptions.None, TimeSpan.FromSeconds(5), default);
        _ = DatagramRelay.RunAsync(connection2!, remote2, new DatagramCounters(), TimeProvider.System, idleTimeout: null, default);
        await local2.SendAsync(Frame("ok"u8.ToArray()), default);
        var buffer = new byte[100];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var n = await sink.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
        Assert.Equal("ok"u8.ToArray(), buffer[..n]);
    }

    private static async Task AssertResetAsync(MuxStream stream, ProtocolErrorCode code)
    {
        Assert.True(await Poll.UntilAsync(() => stream.IsReset, 10_000), "the sender's stream is reset");
        Assert.Equal(code, stream.ResetCode);
    }

    private static byte[] Frame(byte[] datagram)
    {
        var frame = new byte[2 + datagram.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)datagram.Length);
        datagram.CopyTo(frame, 2);
        return frame;
    }

    [Fact]
    public async Task Without_credit_a_datagram_is_dropped_and_counted_and_other_associations_go_on()
    {
        using var listener = await new UdpAppEndpoint().ListenAsync(new EndpointUri(EndpointScheme.Udp, "127.0.0.1", 0), new AppListenOptions("test", "", ""), default);
        using var slow = new UdpClientSocket(listener.Bound.ToString());
        using var quick = new UdpClientSocket(listener.Bound.ToString());

        // the slow association: its far end never reads, so its stream's credit (64 KiB) runs out
        slow.Send(new byte[1000]);
        var slowAssociation = (UdpAssociation)await listener.AcceptAsync(default).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        var (slowLocal, _) = await OpenAsync();
        _ = DatagramRelay.RunAsync(slowAssociation, slowLocal, slowAssociation.Counters, TimeProvider.System, idleTimeout: null, default);
        for (var i = 1; i < 300; i++)
        {
            slow.Send(new byte[1000]);
        }

        quick.Send("q0"u8);
        var quickAssociation = (UdpAssociation)await listener.AcceptAsync(default).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        var (quickLocal, quickRemote) = await OpenAsync();
        _ = DatagramRelay.RunAsync(quickAssociation, quickLocal, quickAssociation.Counters, TimeProvider.System, idleTimeout: null, default);
        for (var i = 1; i < 10; i++)
        {
            quick.Send(System.Text.Encoding.ASCII.GetBytes("q" + i));
        }

        // every datagram of the quick association arrives, framed, in order
        var received = new List<string>();
        while (received.Count < 10)
        {
            var result = await quickRemote.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            while (DatagramFrame.TryRead(ref buffer, out var datagram))
            {
                received.Add(System.Text.Encoding.ASCII.GetString(datagram.ToArray()));
            }
            quickRemote.Input.AdvanceTo(buffer.Start, result.Buffer.End);
        }
        Assert.Equal(Enumerable.Range(0, 10).Select(i => "q" + i), received);
        Assert.Equal(0, quickAssociation.Counters.Dropped);

        // the slow one: what fit in its window went, the rest was dropped and counted; none waited
        await Poll.UntilAsync(() => slowAssociation.Counters.DatagramsIn + slowAssociation.Counters.Dropped >= 300, 10_000);
        Assert.Equal(300, slowAssociation.Counters.DatagramsIn + slowAssociation.Counters.Dropped);
        Assert.Equal(Window / 1002, slowAssociation.Counters.DatagramsIn); // 65 frames of 2 + 1,000 bytes fit in 64 KiB
        Assert.Equal(300 - Window / 1002, slowAssociation.Counters.Dropped);
    }

    /// <summary>Data frames a stream sent for <paramref name="datagrams"/> (each framed: 2 + its bytes), from its link counters.</summary>
    private static long DataFrames(long linkBytesSent, IEnumerable<byte[]> datagrams) =>
        (linkBytesSent - datagrams.Sum(d => 2 + d.Length)) / FrameHeader.Size;

    [Fact]
    public async Task Datagrams_queued_together_at_the_listener_go_in_one_data_frame_each_still_whole()
    {
        using var listener = await new UdpAppEndpoint().ListenAsync(new EndpointUri(EndpointScheme.Udp, "127.0.0.1", 0), new AppListenOptions("test", "", ""), default);
        using var client = new UdpClientSocket(listener.Bound.ToString());
        var datagrams = Enumerable.Range(1, 10).Select(i => Enumerable.Repeat((byte)i, i * 100).ToArray()).ToList();
        foreach (var datagram in datagrams)
        {
            client.Send(datagram);
        }
        var association = (UdpAssociation)await listener.AcceptAsync(default).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        await Poll.UntilAsync(() => association.QueuedCount >= datagrams.Count, 10_000); // the listener has queued them all (no relay runs yet)
        Assert.Equal(datagrams.Count, association.QueuedCount);
        var (local, remote) = await OpenAsync();
        _ = DatagramRelay.RunAsync(association, local, association.Counters, TimeProvider.System, idleTimeout: null, default);

        Assert.Equal(datagrams, await ReadDatagramsAsync(remote, datagrams.Count));
        Assert.Equal(1, DataFrames(local.Counters.LinkBytesSent, datagrams));
        Assert.Equal(datagrams.Count, association.Counters.DatagramsIn);
        Assert.Equal(datagrams.Sum(d => d.Length), association.Counters.BytesIn);
    }

    [Fact]
    public async Task Datagrams_waiting_at_the_last_servers_socket_go_in_one_data_frame_each_still_whole()
    {
        using var target = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        target.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var (connection, failure) = await new UdpAppEndpoint().ConnectAsync(new EndpointUri(EndpointScheme.Udp, "127.0.0.1", ((IPEndPoint)target.LocalEndPoint!).Port),
            OpenOptions.None, TimeSpan.FromSeconds(5), default);
        Assert.Null(failure);
        var dialed = (UdpDialedConnection)connection!;
        var datagrams = Enumerable.Range(1, 10).Select(i => Enumerable.Repeat((byte)i, i * 100).ToArray()).ToList();
        foreach (var datagram in datagrams)
        {
            target.SendTo(datagram, new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)dialed.Socket.LocalEndPoint!).Port));
        }
        await Poll.UntilAsync(() => dialed.Socket.Available > 0, 10_000);
        var (local, remote) = await OpenAsync(); // the relay runs at the accepting end, as at a last server
        var counters = new DatagramCounters();
        _ = DatagramRelay.RunAsync(dialed, remote, counters, TimeProvider.System, idleTimeout: null, default);

        Assert.Equal(datagrams, await ReadDatagramsAsync(local, datagrams.Count));
        // loopback delivers a datagram within its send: all ten wait before the relay starts (one frame; two at worst
        // if the kernel delivered one late), where one frame per datagram made ten
        Assert.InRange(DataFrames(remote.Counters.LinkBytesSent, datagrams), 1, 2);
        Assert.Equal(datagrams.Count, counters.DatagramsIn);
    }

    private static async Task<List<byte[]>> ReadDatagramsAsync(MuxStream stream, int count)
    {
        var received = new List<byte[]>();
        while (received.Count < count)
        {
            var result = await stream.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = result.Buffer;
            while (DatagramFrame.TryRead(ref buffer, out var datagram))
            {
                received.Add(datagram.ToArray());
            }
            stream.Input.AdvanceTo(buffer.Start, result.Buffer.End);
        }
        return received;
    }

    [Fact]
    public void The_idle_timer_counts_every_touch_and_expires_only_after_a_whole_quiet_timeout()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var expired = 0;
        using var timer = new DatagramIdleTimer(clock, TimeSpan.FromSeconds(60), () => expired++);
        for (var i = 0; i < 10; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(30));
            timer.Touch();
        }
        Assert.Equal(0, expired); // 300 s with a datagram every 30 s
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(0, expired);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, expired);
        clock.Advance(TimeSpan.FromSeconds(600));
        Assert.Equal(1, expired); // once
    }
}

using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// The udp:// listener's receive thread (one per listener socket, not awaited receives): it ends with the listener and
/// gives its port back, it keeps every association apart under a flood, and it sends answers without waiting.
/// </summary>
public sealed class UdpListenerThreadTests
{
    private static readonly AppListenOptions Options = new("the test", "use another port", "check the address");

    private static async Task<UdpAssociationListener> ListenAsync(int backlog = 1024) =>
        (UdpAssociationListener)await UdpAppEndpoint.Instance.ListenAsync(EndpointUri.ParseApplication("udp://127.0.0.1:0", "-Listen"), Options with { Backlog = backlog }, default);

    private static async Task<bool> PollAsync(Func<bool> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < deadline)
        {
            if (condition())
            {
                return true;
            }
            await Task.Delay(20);
        }
        return condition();
    }

    private static bool CanBind(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Disposing_the_listener_ends_its_receive_thread_and_its_associations_and_frees_the_port()
    {
        var listener = await ListenAsync();
        var port = listener.Bound.Port;
        Assert.True(listener.ReceiveThread.IsAlive);
        Assert.False(CanBind(port));
        using var client = new UdpClientSocket(listener.Bound.ToString());
        client.Send("hello"u8);
        using var accept = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var association = await listener.AcceptAsync(accept.Token);
        var buffer = new byte[65_536];
        Assert.Equal(5, await association.ReceiveAsync(buffer, accept.Token));

        listener.Dispose();

        // The thread waits in a poll of the socket: Dispose must end it, not leave it parked there for good.
        Assert.True(listener.ReceiveThread.Join(TimeSpan.FromSeconds(10)), "the receive thread ended");
        await listener.Stopped.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await association.ReceiveAsync(buffer, accept.Token)); // its relay reads the end
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await listener.AcceptAsync(accept.Token));
        Assert.True(CanBind(port), "the port is free again");
    }

    [Fact]
    public async Task An_association_nobody_reads_loses_only_its_own_datagrams_while_a_flood_of_new_sources_is_dropped_and_counted()
    {
        var listener = await ListenAsync(backlog: 2);
        try
        {
            using var stuck = new UdpClientSocket(listener.Bound.ToString());
            using var live = new UdpClientSocket(listener.Bound.ToString());
            using var accept = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            stuck.Send("first"u8);
            var stuckAssociation = (UdpAssociation)await listener.AcceptAsync(accept.Token);
            live.Send("first"u8);
            var liveAssociation = await listener.AcceptAsync(accept.Token);
            var buffer = new byte[65_536];
            Assert.Equal(5, await liveAssociation.ReceiveAsync(buffer, accept.Token));

            // One association whose relay never takes anything, and sources nobody accepts beyond the backlog of 2.
            var extra = UdpAssociationListener.MaxQueuedPerAssociation + 50;
            for (var i = 0; i < extra; i++)
            {
                stuck.Send("stuck"u8);
            }
            var flood = Enumerable.Range(0, 40).Select(_ => new UdpClientSocket(listener.Bound.ToString())).ToList();
            try
            {
                flood.ForEach(c => c.Send("new"u8));
                for (var i = 0; i < 100; i++)
                {
                    live.Send(BitConverter.GetBytes(i));
                    Assert.Equal(4, await liveAssociation.ReceiveAsync(buffer, accept.Token));
                    Assert.Equal(i, BitConverter.ToInt32(buffer)); // every one, in order, none held up behind the others
                }
                Assert.True(await PollAsync(() => stuckAssociation.Counters.Dropped == extra + 1 - UdpAssociationListener.MaxQueuedPerAssociation),
                    $"the stuck association's datagrams over its queue are dropped and counted ({stuckAssociation.Counters.Dropped})");
                Assert.Equal(UdpAssociationListener.MaxQueuedPerAssociation, stuckAssociation.QueuedCount);
                Assert.True(await PollAsync(() => listener.Dropped == 38), $"the sources over the backlog are dropped and counted ({listener.Dropped})");
            }
            finally
            {
                flood.ForEach(c => c.Dispose());
            }
        }
        finally
        {
            listener.Dispose();
        }
    }

    [Fact]
    public async Task An_answer_to_a_client_is_sent_at_once_from_the_callers_thread()
    {
        var listener = await ListenAsync();
        try
        {
            using var client = new UdpClientSocket(listener.Bound.ToString());
            client.Send("ping"u8);
            using var accept = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var association = await listener.AcceptAsync(accept.Token);
            var send = association.SendAsync(new System.Buffers.ReadOnlySequence<byte>("pong"u8.ToArray()), accept.Token);
            Assert.True(send.IsCompletedSuccessfully, "a send never waits (a full socket buffer would drop the datagram, not hold the link's reader)");
            Assert.Equal("pong"u8.ToArray(), await client.ReceiveAsync());
            Assert.False(listener.Socket.Blocking);
        }
        finally
        {
            listener.Dispose();
        }
    }
}

/// <summary>A udp:// tunnel's listener thread through a real engine: stopping the tunnel ends the thread and frees the port.</summary>
public sealed class UdpTunnelStopTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly UdpEchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task Stopping_a_udp_tunnel_ends_its_receive_thread_and_frees_its_port()
    {
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "stop", Listen = "udp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri, ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        var listen = (await _a.StartTunnelAsync("stop")).BoundListen!;
        var port = new Uri(listen).Port;
        var thread = $"qmt-udp {port}";
        using (var client = new UdpClientSocket(listen))
        {
            Assert.Equal("x"u8.ToArray(), await client.RoundTripAsync("x"u8.ToArray()));
        }
        Assert.Equal(1, ThreadsNamed(thread));

        await _a.StopTunnelAsync("stop");

        var deadline = Environment.TickCount64 + 10_000;
        while (ThreadsNamed(thread) > 0 && Environment.TickCount64 < deadline)
        {
            await Task.Delay(20);
        }
        Assert.Equal(0, ThreadsNamed(thread));
        using var rebind = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        rebind.Bind(new IPEndPoint(IPAddress.Loopback, port)); // throws AddressAlreadyInUse while the tunnel still holds it
    }

    /// <summary>The OS threads of this process named <paramref name="name"/> (/proc/self/task/*/comm: a thread's name as the kernel knows it).</summary>
    private static int ThreadsNamed(string name) =>
        Directory.GetDirectories("/proc/self/task").Count(task =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n') == name;
            }
            catch (IOException)
            {
                return false; // the thread ended while we looked
            }
        });
}

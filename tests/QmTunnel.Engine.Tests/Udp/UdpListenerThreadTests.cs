using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// The udp:// listener's two ways of reading its socket (a receive thread of its own without inline socket completions,
/// as in pwsh and this test process; awaited receives with them, as in the daemon): either ends with the listener and
/// gives its port back and keeps every association apart under a flood; answers are sent without waiting.
/// </summary>
public sealed class UdpListenerThreadTests
{
    private static readonly AppListenOptions Options = new("the test", "use another port", "check the address");

    private static async Task<UdpAssociationListener> ListenAsync(int backlog = 1024) =>
        (UdpAssociationListener)await UdpAppEndpoint.Instance.ListenAsync(EndpointUri.ParseApplication("udp://127.0.0.1:0", "-Listen"), Options with { Backlog = backlog }, default);

    /// <summary>A listener reading its socket the way <paramref name="receiveThread"/> says, whatever this process's completions.</summary>
    private static UdpAssociationListener Listen(bool receiveThread, int backlog = 1024)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return new UdpAssociationListener(socket, new EndpointUri(EndpointScheme.Udp, "127.0.0.1", port), backlog, receiveThread);
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
    public async Task Without_inline_completions_a_listener_reads_on_a_thread_of_its_own()
    {
        Assert.False(QmTunnel.Engine.Diagnostics.SocketTuning.InlineCompletionsOn); // the test process, like pwsh
        using var listener = await ListenAsync();
        Assert.True(listener.ReceiveThread?.IsAlive);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Disposing_the_listener_ends_its_receive_loop_and_its_associations_and_frees_the_port(bool receiveThread)
    {
        var listener = Listen(receiveThread);
        var port = listener.Bound.Port;
        Assert.Equal(receiveThread, listener.ReceiveThread?.IsAlive == true);
        Assert.False(CanBind(port));
        using var client = new UdpClientSocket(listener.Bound.ToString());
        client.Send("hello"u8);
        using var accept = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var association = await listener.AcceptAsync(accept.Token);
        var buffer = new byte[65_536];
        Assert.Equal(5, await association.ReceiveAsync(buffer, accept.Token));

        listener.Dispose();

        // The thread waits in a poll of the socket (the loop in a receive): Dispose must end it, not leave it parked.
        Assert.True(listener.ReceiveThread?.Join(TimeSpan.FromSeconds(10)) ?? true, "the receive thread ended");
        await listener.Stopped.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await association.ReceiveAsync(buffer, accept.Token)); // its relay reads the end
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await listener.AcceptAsync(accept.Token));
        Assert.True(CanBind(port), "the port is free again");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_association_nobody_reads_loses_only_its_own_datagrams_while_a_flood_of_new_sources_is_dropped_and_counted(bool receiveThread)
    {
        var listener = Listen(receiveThread, backlog: 2);
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
            // Sent 50 at a time, each batch taken before the next: a socket buffer that overflowed would make the kernel
            // drop datagrams where the listener should (and count them).
            var extra = UdpAssociationListener.MaxQueuedPerAssociation + 50;
            for (var i = 0; i < extra; i++)
            {
                stuck.Send("stuck"u8);
                if (i % 50 == 49 || i == extra - 1)
                {
                    var sent = i + 2; // with "first"
                    Assert.True(await Poll.UntilAsync(() => stuckAssociation.QueuedCount + stuckAssociation.Counters.Dropped >= sent),
                        $"the listener took the stuck client's datagrams ({sent} sent)");
                }
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
                Assert.True(await Poll.UntilAsync(() => stuckAssociation.Counters.Dropped == extra + 1 - UdpAssociationListener.MaxQueuedPerAssociation),
                    $"the stuck association's datagrams over its queue are dropped and counted ({stuckAssociation.Counters.Dropped})");
                Assert.Equal(UdpAssociationListener.MaxQueuedPerAssociation, stuckAssociation.QueuedCount);
                Assert.True(await Poll.UntilAsync(() => listener.Dropped == 38), $"the sources over the backlog are dropped and counted ({listener.Dropped})");
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

        await Poll.UntilAsync(() => ThreadsNamed(thread) == 0, 10_000);
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

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// Hosts made of network namespaces joined by veth pairs, on real kernels: a socat echo in one reached from a socket of
/// its neighbour, silent cuts that TCP survives, nftables drops, a daemon in a namespace, and the cleanup.
/// </summary>
public sealed class NetNsTests
{
    private const int EchoPort = 7000;

    /// <summary>Two hosts A and B on 198.51.100.0/30 (A .1, B .2) with a socat echo on B port 7000.</summary>
    private static (NetNs A, NetNs B, VethLink Link) EchoHosts()
    {
        var a = NetNs.Create("a");
        var b = NetNs.Create("b");
        try
        {
            var link = NetNs.Link(a, b, "198.51.100.0/30");
            b.Exec("socat", [$"TCP-LISTEN:{EchoPort},fork,reuseaddr", "EXEC:cat"]);
            return (a, b, link);
        }
        catch
        {
            a.Dispose();
            b.Dispose();
            throw;
        }
    }

    /// <summary>Connects a socket of <paramref name="from"/> to <paramref name="to"/>, retrying while nothing listens yet (10 s).</summary>
    private static async Task<Socket> ConnectAsync(NetNs from, IPEndPoint to)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (true)
        {
            var socket = from.NewTcpSocket();
            try
            {
                await socket.ConnectAsync(to).WaitAsync(TimeSpan.FromSeconds(5));
                return socket;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused && Environment.TickCount64 < deadline)
            {
                socket.Dispose();
                await Task.Delay(50); // the listener in the other process is not up yet: nothing to wait on but time
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>A connect that must not succeed: returns how it ended (timed out after 1 s = "TimedOut").</summary>
    private static async Task<string> FailedConnectAsync(NetNs from, IPEndPoint to)
    {
        using var socket = from.NewTcpSocket();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await socket.ConnectAsync(to, timeout.Token);
            return "Connected";
        }
        catch (OperationCanceledException)
        {
            return "TimedOut";
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode.ToString();
        }
    }

    private static async Task EchoesAsync(Socket socket, int bytes)
    {
        var data = RandomNumberGenerator.GetBytes(bytes);
        var sending = socket.SendAllAsync(data);
        var back = new byte[bytes];
        var read = 0;
        while (read < bytes)
        {
            var n = await socket.ReceiveAsync(back.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.True(n > 0, "the echo ended");
            read += n;
        }
        await sending;
        Assert.Equal(data, back);
    }

    [NetNsFact]
    public async Task A_socat_echo_in_one_host_answers_a_socket_of_its_neighbour_across_the_veth_pair()
    {
        var (a, b, link) = EchoHosts();
        using (a)
        using (b)
        {
            Assert.Equal(IPAddress.Parse("198.51.100.1"), link.A.Address);
            Assert.Equal(IPAddress.Parse("198.51.100.2"), link.B.Address);
            using var socket = await ConnectAsync(a, new IPEndPoint(link.B.Address, EchoPort));

            await EchoesAsync(socket, 1024 * 1024);
            Assert.Equal(link.A.Address, ((IPEndPoint)socket.LocalEndPoint!).Address); // it left A over the veth
        }
    }

    [NetNsFact]
    public async Task While_a_link_is_down_connects_time_out_and_an_open_connection_stalls_without_a_reset_then_carries_on_when_it_is_up()
    {
        var (a, b, link) = EchoHosts();
        using (a)
        using (b)
        {
            var echo = new IPEndPoint(link.B.Address, EchoPort);
            using var socket = await ConnectAsync(a, echo);
            await EchoesAsync(socket, 1000);

            b.SetLinkDown(link.B.Interface);
            var data = RandomNumberGenerator.GetBytes(50_000);
            await socket.SendAllAsync(data); // into A's send buffer: nothing reaches B
            Assert.False(socket.Poll(TimeSpan.FromSeconds(1), SelectMode.SelectRead)); // no echo, no FIN, no RST
            Assert.Equal("TimedOut", await FailedConnectAsync(a, echo)); // the SYNs vanish

            b.SetLinkUp(link.B.Interface);
            // TCP retransmits (its back-off after ~2 s of loss: the next try within a few seconds) and the echo comes.
            var back = new byte[data.Length];
            var read = 0;
            while (read < back.Length)
            {
                var n = await socket.ReceiveAsync(back.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
                Assert.True(n > 0, "the connection ended");
                read += n;
            }
            Assert.Equal(data, back);
            await EchoesAsync(socket, 1000);
        }
    }

    [NetNsFact(Nft = true)]
    public async Task A_host_that_drops_new_inbound_connections_lets_them_time_out_while_open_ones_go_on()
    {
        var (a, b, link) = EchoHosts();
        using (a)
        using (b)
        {
            var echo = new IPEndPoint(link.B.Address, EchoPort);
            using var open = await ConnectAsync(a, echo);

            b.DropNewInbound();
            Assert.Equal("TimedOut", await FailedConnectAsync(a, echo));
            await EchoesAsync(open, 100_000);
            Assert.True(b.DroppedPackets() >= 1);

            b.DropNewInbound(false);
            using var later = await ConnectAsync(a, echo);
            await EchoesAsync(later, 1000);
        }
    }

    [NetNsFact(Nft = true)]
    public async Task With_a_share_of_the_packets_dropped_a_transfer_still_arrives_whole_and_the_drops_are_counted()
    {
        var (a, b, link) = EchoHosts();
        using (a)
        using (b)
        {
            using var socket = await ConnectAsync(a, new IPEndPoint(link.B.Address, EchoPort));
            b.DropPercent(10);

            // Echo until some packets were dropped (with segmentation offload a transfer is few, large packets).
            for (var round = 0; round < 200 && b.DroppedPackets() < 3; round++)
            {
                await EchoesAsync(socket, 64 * 1024);
            }

            Assert.True(b.DroppedPackets() >= 3, "hardly any packet was dropped");
            b.DropPercent(0);
            Assert.Equal(0, b.DroppedPackets());
        }
    }

    [NetNsFact]
    public async Task A_daemon_in_one_host_accepts_a_link_and_a_management_session_from_its_neighbour_and_nothing_from_this_host()
    {
        using var a = NetNs.Create("a");
        using var b = NetNs.Create("b");
        var link = NetNs.Link(a, b, "203.0.113.8/29");
        await using var daemon = await DaemonProcess.StartAsync(["--listen", "0.0.0.0", "--allow-plain-links", "true"], netns: b.Name);

        using var socket = await ConnectAsync(a, new IPEndPoint(link.B.Address, daemon.Port));
        await using var dialed = await Link.HandshakeAsDialerAsync(socket, new LinkOptions(), NullLogger.Instance, default,
            login: new PasswordLogin("admin", EngineFixture.AdminPassword));

        Assert.Equal("admin", dialed.User);

        await using var session = await daemon.ConnectAsync(a, link.B.Address); // TLS, pinned, a management session
        var info = await session.GetServerInfoAsync(default);
        Assert.Equal(daemon.Port, info.Port);
        Assert.Equal(2, info.Links); // the link above and the session's, both from A
        using var here = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(async () => await here.ConnectAsync(IPAddress.Loopback, daemon.Port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode); // its port is in B's namespace only
    }

    [NetNsFact]
    public void Hosts_are_named_with_the_prefix_and_this_process_and_are_deleted_with_what_runs_in_them()
    {
        var ns = NetNs.Create("named");
        var sleeper = ns.Exec("sleep", ["600"]);
        Assert.StartsWith($"{NetNs.Prefix}{Environment.ProcessId}-named-", ns.Name);
        Assert.Contains(ns.Name, Namespaces());

        ns.Dispose();

        Assert.DoesNotContain(ns.Name, Namespaces());
        Assert.True(sleeper.HasExited);
    }

    [NetNsFact]
    public void Leftovers_of_a_run_that_died_are_deleted_and_those_of_running_processes_are_kept()
    {
        var dead = $"{NetNs.Prefix}4194305-crashed-1"; // above any pid_max: no such process
        NetNs.Ip("netns", "add", dead);
        using var mine = NetNs.Create("kept");

        Assert.True(NetNs.CleanLeftovers() >= 1);

        Assert.DoesNotContain(dead, Namespaces());
        Assert.Contains(mine.Name, Namespaces());
    }

    [NetNsFact]
    public void Forwarding_is_off_in_a_new_host_and_on_once_asked()
    {
        using var router = NetNs.Create("router");
        string Forwarding() => NetNs.Run("ip", ["netns", "exec", router.Name, "cat", "/proc/sys/net/ipv4/ip_forward"]).Trim();

        Assert.Equal("0", Forwarding());
        router.EnableForwarding();
        Assert.Equal("1", Forwarding());
    }

    [Theory]
    [InlineData("192.0.2.0/30")]
    [InlineData("10.0.0.0/30")]
    [InlineData("198.51.100.2/30")]
    [InlineData("198.51.100.0/31")]
    [InlineData("fd00::/64")]
    public void Subnets_outside_the_documentation_ranges_or_off_their_boundary_are_refused(string subnet)
    {
        var refused = Assert.Throws<ArgumentException>(() => NetNs.ParseSubnet(subnet));
        Assert.Contains(subnet, refused.Message);
    }

    [Fact]
    public void A_subnet_of_a_documentation_range_gives_its_network_and_length()
    {
        Assert.Equal((IPAddress.Parse("203.0.113.8"), 29), NetNs.ParseSubnet("203.0.113.8/29"));
    }

    private static string[] Namespaces() =>
        [.. NetNs.Ip("netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0])];
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// Reverse tunnels between daemons on hosts of their own (network namespaces joined by veth pairs), where the owner
/// accepts no inbound connection at all (nftables drops every new one): it only dials out, and its service is reached.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class ReverseMultiHostTests
{
    private const int ServicePort = 7000;

    private static HopLogin[] Admin => [new HopLogin("admin", EngineFixture.AdminPassword)];

    /// <summary>A management session to a daemon from its own host (loopback: allowed while new inbound connections are dropped).</summary>
    private static Task<QmTunnelSession> OwnSessionAsync(DaemonProcess daemon, NetNs host) => daemon.ConnectAsync(host, IPAddress.Loopback);

    private static TunnelProfile Reverse(string name, string listen, string via, string target) => new()
    {
        Name = name,
        Direction = TunnelDirection.RemoteToLocal,
        Mode = TunnelMode.Permanent,
        Listen = listen,
        Via = [via],
        Target = target,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    private static async Task WaitEstablishedAsync(QmTunnelSession session, string name)
    {
        Assert.True(await Poll.UntilAsync(async () => (await session.GetTunnelAsync(name, CancellationToken.None)).State == TunnelState.Established, 30_000),
            $"tunnel {name} not Established: {(await session.GetTunnelAsync(name, CancellationToken.None)).LastError}");
    }

    /// <summary>From a socket of <paramref name="from"/>: <paramref name="size"/> random bytes to <paramref name="to"/>, echoed back whole (SHA-256).</summary>
    private static async Task EchoThroughAsync(NetNs from, IPEndPoint to, int size)
    {
        using var socket = from.NewTcpSocket();
        await socket.ConnectAsync(to).WaitAsync(TimeSpan.FromSeconds(10));
        var payload = RandomNumberGenerator.GetBytes(size);
        var reading = socket.ReadToEndAsync();
        await socket.SendAllAsync(payload);
        socket.Shutdown(SocketShutdown.Send);
        var back = await reading.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back));
    }

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

    [NetNsFact(Nft = true)]
    public async Task A_reverse_tunnel_from_a_host_that_accepts_no_inbound_connection_brings_As_clients_to_Bs_service()
    {
        using var a = NetNs.Create("a");
        using var b = NetNs.Create("b");
        var link = NetNs.Link(a, b, "198.51.100.0/30");
        b.Exec("socat", [$"TCP-LISTEN:{ServicePort},bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"]);
        await using var server = await DaemonProcess.StartAsync(["--listen", "0.0.0.0"], netns: a.Name);
        await using var owner = await DaemonProcess.StartAsync(netns: b.Name);
        b.DropNewInbound();
        Assert.Equal("TimedOut", await FailedConnectAsync(a, new IPEndPoint(link.B.Address, owner.Port)));

        await using var session = await OwnSessionAsync(owner, b);
        await session.NewTunnelAsync(Reverse("service", "tcp://0.0.0.0:8080", $"qmt://{link.A.Address}:{server.Port}", $"tcp://127.0.0.1:{ServicePort}"), Admin, CancellationToken.None);
        await session.StartTunnelAsync("service", CancellationToken.None);
        await WaitEstablishedAsync(session, "service");
        Assert.Equal("tcp://0.0.0.0:8080", (await session.GetTunnelAsync("service", CancellationToken.None)).BoundListen);

        await EchoThroughAsync(a, new IPEndPoint(link.A.Address, 8080), 4 * 1024 * 1024);
        await EchoThroughAsync(a, new IPEndPoint(IPAddress.Loopback, 8080), 100_000);
        var stats = await session.GetTunnelStatsAsync("service", CancellationToken.None);
        Assert.Equal(2, stats.ConnectionsTotal);
        Assert.Equal(4L * 1024 * 1024 + 100_000, stats.BytesFromClients);
        Assert.Equal("TimedOut", await FailedConnectAsync(a, new IPEndPoint(link.B.Address, owner.Port)));
    }

    [NetNsFact(Nft = true)]
    public async Task Figure_4_through_a_third_host_A_and_B_accept_nothing_and_meet_at_C()
    {
        using var a = NetNs.Create("a");
        using var c = NetNs.Create("c");
        using var b = NetNs.Create("b");
        var ac = NetNs.Link(a, c, "198.51.100.0/30");  // a .1, c .2
        var cb = NetNs.Link(c, b, "203.0.113.0/30");   // c .1, b .2
        b.Exec("socat", [$"TCP-LISTEN:{ServicePort},bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"]);
        await using var meeting = await DaemonProcess.StartAsync(["--listen", "0.0.0.0"], netns: c.Name);
        await using var ownerA = await DaemonProcess.StartAsync(netns: a.Name);
        await using var ownerB = await DaemonProcess.StartAsync(netns: b.Name);
        a.DropNewInbound();
        b.DropNewInbound();

        // B: a reverse tunnel listening on C's loopback, to B's service.
        await using var atB = await OwnSessionAsync(ownerB, b);
        await atB.NewTunnelAsync(Reverse("service", "tcp://127.0.0.1:9000", $"qmt://{cb.A.Address}:{meeting.Port}", $"tcp://127.0.0.1:{ServicePort}"), Admin, CancellationToken.None);
        await atB.StartTunnelAsync("service", CancellationToken.None);
        await WaitEstablishedAsync(atB, "service");

        // A: a local tunnel through C to that listener.
        await using var atA = await OwnSessionAsync(ownerA, a);
        await atA.NewTunnelAsync(new TunnelProfile
        {
            Name = "client",
            Listen = "tcp://127.0.0.1:8000",
            Via = [$"qmt://{ac.B.Address}:{meeting.Port}"],
            Target = "tcp://127.0.0.1:9000",
        }, Admin, CancellationToken.None);
        await atA.StartTunnelAsync("client", CancellationToken.None);

        await EchoThroughAsync(a, new IPEndPoint(IPAddress.Loopback, 8000), 4 * 1024 * 1024);
        Assert.Equal(1, (await atA.GetTunnelStatsAsync("client", CancellationToken.None)).ConnectionsTotal);
        Assert.Equal(1, (await atB.GetTunnelStatsAsync("service", CancellationToken.None)).ConnectionsTotal);
        Assert.Equal("TimedOut", await FailedConnectAsync(c, new IPEndPoint(cb.B.Address, ownerB.Port)));
        Assert.Equal("TimedOut", await FailedConnectAsync(c, new IPEndPoint(ac.A.Address, ownerA.Port)));
    }
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Outages the kernel sees, between two hosts (network namespaces joined by a veth pair, each running a daemon): the
/// far end of the link is taken down for longer than the hop's receive timeout, so packets vanish with no RST and no
/// FIN. The tunnel's daemon must find the silence, redial until the link is back, resume, and the application's
/// connection must carry every byte, in order.
/// </summary>
public sealed class KernelCutTests
{
    private const int EchoPort = 7000;

    [NetNsFact]
    public async Task A_transfer_goes_on_across_two_silent_cuts_of_the_hosts_link_longer_than_the_receive_timeout()
    {
        using var a = NetNs.Create("a");
        using var b = NetNs.Create("b");
        var link = NetNs.Link(a, b, "198.51.100.0/30");
        b.Exec("socat", [$"TCP-LISTEN:{EchoPort},fork,reuseaddr", "EXEC:cat"]);
        await using var serverB = await DaemonProcess.StartAsync(["--listen", "0.0.0.0", "--allow-plain-links", "true"], netns: b.Name);
        await using var serverA = await DaemonProcess.StartAsync(["--listen", "127.0.0.1"], netns: a.Name);
        await using var session = await serverA.ConnectAsync(a, IPAddress.Loopback);

        // A short heartbeat and receive timeout on the hop: the cut is found in 3 s.
        var hop = $"qmt+plain://{link.B.Address}:{serverB.Port}?heartbeat=1s&receive-timeout=3s&connect-timeout=1s";
        await session.NewTunnelAsync(new TunnelProfile { Name = "cut", Listen = "tcp://127.0.0.1:0", Via = [hop], Target = $"tcp://127.0.0.1:{EchoPort}" },
            [EngineFixture.AdminLogin], CancellationToken.None);
        var listen = (await session.StartTunnelAsync("cut", CancellationToken.None)).BoundListen!;
        var port = new Uri(listen).Port;

        using var client = a.NewTcpSocket();
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)).WaitAsync(TimeSpan.FromSeconds(10));
        var payload = RandomNumberGenerator.GetBytes(32 * 1024 * 1024);
        var back = new byte[payload.Length];
        var read = 0;
        var reading = Task.Run(async () =>
        {
            while (read < back.Length)
            {
                var n = await client.ReceiveAsync(back.AsMemory(read), SocketFlags.None);
                Assert.True(n > 0, $"the connection through the tunnel ended after {read} bytes");
                Volatile.Write(ref read, read + n);
            }
        });
        var sending = Task.Run(async () =>
        {
            for (var offset = 0; offset < payload.Length; offset += 64 * 1024)
            {
                await client.SendAsync(payload.AsMemory(offset, 64 * 1024), SocketFlags.None);
                while (offset - Volatile.Read(ref read) > 2 * 1024 * 1024)
                {
                    await Task.Delay(1);
                }
            }
        });
        foreach (var at in new[] { payload.Length / 3, payload.Length / 3 * 2 })
        {
            await TunnelTests.WaitUntil(() => Volatile.Read(ref read) >= at || reading.IsFaulted, 120_000);
            Assert.False(reading.IsFaulted, $"{reading.Exception}");
            // B's end down: A's packets vanish (A keeps its route), B's own sends fail.
            b.SetLinkDown(link.B.Interface);
            await Task.Delay(TimeSpan.FromSeconds(5));
            b.SetLinkUp(link.B.Interface);
        }
        await sending.WaitAsync(TimeSpan.FromMinutes(2));
        await reading.WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back));
        // A finds each cut by the silence (receive timeout) or, once the neighbour entry of B fails, by a send error.
        Assert.True(System.Text.RegularExpressions.Regex.Matches(serverA.Log(), @"connection lost \((nothing received for 3 s|sending failed|the connection failed)").Count >= 2, serverA.Log());
        Assert.True(System.Text.RegularExpressions.Regex.Matches(serverA.Log(), "session resumed").Count >= 2, serverA.Log());
        Assert.Null((await session.GetConnectionsAsync("cut", CancellationToken.None)).Single().Error);
    }
}

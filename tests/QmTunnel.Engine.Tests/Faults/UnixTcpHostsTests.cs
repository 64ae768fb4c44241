using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// Unix socket ↔ TCP across two hosts (network namespaces A and B joined by a veth pair, a qmtunnel-server daemon in
/// each): a unix listener on A reaching a TCP service only B can reach, and a TCP listener on A reaching a unix socket
/// service dialed by B's daemon; data checked by SHA-256. The hosts share the file system (only the network is
/// separate), so this process connects to A's socket file directly and serves B's. Then A's daemon is killed: its
/// socket file stays, stale, and is replaced when the daemon starts again with the same data; stopped, it removes it.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class UnixTcpHostsTests : IDisposable
{
    private const int EchoPort = 7000;
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-hosts-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<byte[]> EchoOverAsync(Socket socket, byte[] payload)
    {
        var reading = socket.ReadToEndAsync();
        await socket.SendAllAsync(payload);
        socket.Shutdown(SocketShutdown.Send);
        return await reading.WaitAsync(TimeSpan.FromSeconds(60));
    }

    private static async Task<byte[]> EchoThroughUnixAsync(string path, byte[] payload)
    {
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return await EchoOverAsync(client, payload);
    }

    /// <summary>A unix-socket echo served by this process (it echoes until the client's end, then closes).</summary>
    private static Socket UnixEcho(string path)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(16);
        _ = Task.Run(async () =>
        {
            while (true)
            {
                Socket s;
                try
                {
                    s = await listener.AcceptAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        await s.SendAllAsync(await s.ReadToEndAsync());
                        s.Shutdown(SocketShutdown.Send);
                    }
                });
            }
        });
        return listener;
    }

    [NetNsFact]
    public async Task Unix_socket_and_tcp_both_ways_across_two_hosts_and_a_killed_daemons_stale_socket_is_replaced()
    {
        using var a = NetNs.Create("ua");
        using var b = NetNs.Create("ub");
        var link = NetNs.Link(a, b, "198.51.100.0/30");
        b.Exec("socat", [$"TCP-LISTEN:{EchoPort},bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"]); // reachable inside B only
        string[] arguments = ["--listen", "0.0.0.0", "--allow-plain-links", "true"];
        await using var daemonB = await DaemonProcess.StartAsync(arguments, netns: b.Name);
        var daemonA = await DaemonProcess.StartAsync(arguments, netns: a.Name);
        daemonA.KeepDataPath = true;
        var hop = $"qmt+plain://{link.B.Address}:{daemonB.Port}";
        var listen = Path.Combine(_dir, "a-in.sock");
        var service = Path.Combine(_dir, "b-service.sock");
        using var unixService = UnixEcho(service);
        try
        {
            await using (var session = await daemonA.ConnectAsync(b, link.A.Address))
            {
                // unix listener on A -> B -> TCP service on B's loopback
                await session.NewTunnelAsync(new TunnelProfile { Name = "unix-to-tcp", Listen = $"unix://{listen}?mode=0600", Via = [hop], Target = $"tcp://127.0.0.1:{EchoPort}" },
                    [EngineFixture.AdminLogin], default);
                await session.StartTunnelAsync("unix-to-tcp", default);
                var payload = RandomNumberGenerator.GetBytes(8 * 1024 * 1024 + 17);
                Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await EchoThroughUnixAsync(listen, payload)));

                // TCP listener on A -> B -> unix socket service dialed by B's daemon
                await session.NewTunnelAsync(new TunnelProfile { Name = "tcp-to-unix", Listen = "tcp://127.0.0.1:0", Via = [hop], Target = "unix://" + service },
                    [EngineFixture.AdminLogin], default);
                var bound = (await session.StartTunnelAsync("tcp-to-unix", default)).BoundListen!;
                using var client = a.NewTcpSocket(); // A's loopback: the listener is in A's namespace
                await client.ConnectAsync(IPEndPoint.Parse(bound["tcp://".Length..]));
                payload = RandomNumberGenerator.GetBytes(8 * 1024 * 1024 + 5);
                Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await EchoOverAsync(client, payload)));

                var connections = await session.GetConnectionsAsync("tcp-to-unix", default);
                Assert.Equal("unix://" + service, Assert.Single(connections).Target);
                connections = await session.GetConnectionsAsync("unix-to-tcp", default);
                Assert.Matches(@$"^unix://{System.Text.RegularExpressions.Regex.Escape(listen)}\?mode=0600 \(pid {Environment.ProcessId}, uid 0\)$", Assert.Single(connections).Client);
            }

            // kill -9: nothing removes the socket file; nothing answers on it any more
            await daemonA.KillAsync();
            Assert.True(QmTunnel.Engine.Storage.UnixFileStatus.Get(listen).IsSocket);
            using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                var refused = await Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync(new UnixDomainSocketEndPoint(listen)));
                Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
            }

            // the same data again: the started tunnel starts again and replaces the stale file
            await using var again = await DaemonProcess.StartAsync(arguments, netns: a.Name, dataPath: daemonA.DataPath);
            var restarted = RandomNumberGenerator.GetBytes(1024 * 1024);
            byte[]? echoed = null;
            await TunnelTests.WaitUntil(() =>
            {
                try
                {
                    echoed = EchoThroughUnixAsync(listen, restarted).GetAwaiter().GetResult();
                    return true;
                }
                catch (SocketException)
                {
                    return false; // still the stale file: the tunnel is not up yet
                }
            }, 30_000);
            Assert.Equal(SHA256.HashData(restarted), SHA256.HashData(echoed!));
            Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(listen)); // 0600 again

            // a server that stops (SIGTERM) removes its socket files
            Assert.Equal(0, await again.StopAsync());
            Assert.False(File.Exists(listen));
        }
        finally
        {
            await daemonA.DisposeAsync();
        }
    }
}

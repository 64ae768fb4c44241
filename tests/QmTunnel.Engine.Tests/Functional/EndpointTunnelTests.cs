using System.IO.Pipes;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>Tunnels whose ends are Unix sockets and named pipes, mixed with TCP, through two engines on loopback.</summary>
public sealed class EndpointTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-ends-").FullName;
    private QmTunnelEngine _a = null!;
    private QmTunnelEngine _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<string> StartTunnelAsync(string name, string listen, string target)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = listen, Via = [EngineFixture.Hop(_b)], Target = target, ConnectTimeout = TimeSpan.FromSeconds(5) });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    /// <summary>A Unix-socket echo server (echoes until the client's end, then closes).</summary>
    private Socket UnixEcho(string path)
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
                        var data = await s.ReadToEndAsync();
                        await s.SendAllAsync(data);
                        s.Shutdown(SocketShutdown.Send);
                    }
                });
            }
        });
        return listener;
    }

    [Fact]
    public async Task A_unix_socket_listener_reaches_a_tcp_target_and_the_connection_shows_the_path()
    {
        var path = Path.Combine(_dir, "in.sock");
        var bound = await StartTunnelAsync("unix-in", "unix://" + path, _echo.Uri);
        Assert.Equal("unix://" + path, bound);

        var payload = RandomNumberGenerator.GetBytes(2 * 1024 * 1024 + 7);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await reading.WaitAsync(TimeSpan.FromSeconds(30))));

        var connection = Assert.Single(_a.GetConnections("unix-in"));
        Assert.StartsWith("unix://" + path, connection.Client);
        Assert.Equal(_echo.Uri, connection.Target);

        await _a.StopTunnelAsync("unix-in");
        Assert.False(File.Exists(path)); // the listener's socket file goes with it
    }

    [Fact]
    public async Task A_tcp_listener_reaches_a_unix_socket_target_with_half_close_end_to_end()
    {
        var path = Path.Combine(_dir, "target.sock");
        using var echo = UnixEcho(path);
        var listen = await StartTunnelAsync("unix-out", "tcp://127.0.0.1:0", "unix://" + path);

        var payload = RandomNumberGenerator.GetBytes(1024 * 1024 + 3);
        var echoed = await SocketTestExtensions.EchoAsync(listen, payload); // the target answers only after the client's FIN

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));
        Assert.Equal("unix://" + path, Assert.Single(_a.GetConnections("unix-out")).Target);
    }

    [Fact]
    public async Task A_named_pipe_listener_reaches_a_tcp_target()
    {
        var name = "qmt-test-" + Guid.NewGuid().ToString("N")[..12];
        _echo.OnConnection = async s =>
        {
            var buffer = new byte[65536];
            int n;
            while ((n = await s.ReceiveAsync(buffer, SocketFlags.None)) > 0)
            {
                await s.SendAllAsync(buffer.AsMemory(0, n));
            }
            s.Shutdown(SocketShutdown.Send);
        };
        await StartTunnelAsync("pipe-in", "pipe://" + name, _echo.Uri);

        await using var client = new NamedPipeClientStream(".", name, PipeDirection.InOut, PipeOptions.Asynchronous);
        await client.ConnectAsync(5000);
        var payload = RandomNumberGenerator.GetBytes(512 * 1024);
        var back = new byte[payload.Length];
        var reading = client.ReadExactlyAsync(back).AsTask();
        await client.WriteAsync(payload);
        await reading.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(payload, back);
        Assert.Equal("pipe://" + name, Assert.Single(_a.GetConnections("pipe-in")).Client);
    }

    [Fact]
    public async Task A_tcp_listener_reaches_a_named_pipe_target()
    {
        var name = "qmt-test-" + Guid.NewGuid().ToString("N")[..12];
        using var stop = new CancellationTokenSource();
        var server = Task.Run(async () =>
        {
            await using var pipe = new NamedPipeServerStream(name, PipeDirection.InOut, 1, PipeTransmissionMode.Byte, PipeOptions.Asynchronous);
            await pipe.WaitForConnectionAsync(stop.Token);
            var request = new byte[5];
            await pipe.ReadExactlyAsync(request, stop.Token);
            await pipe.WriteAsync("pong:"u8.ToArray().Concat(request).ToArray(), stop.Token);
        });
        var listen = await StartTunnelAsync("pipe-out", "tcp://127.0.0.1:0", "pipe://" + name);

        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync("hello"u8.ToArray());
        var answer = await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30)); // the pipe server closes: the client reads its end

        Assert.Equal("pong:hello", System.Text.Encoding.ASCII.GetString(answer));
        await server;
    }

    [Fact]
    public async Task Ends_that_carry_datagrams_and_bytes_cannot_be_mixed()
    {
        var e = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "mixed", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = "udp://127.0.0.1:53",
        }, [EngineFixture.AdminLogin]));

        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains("carry different traffic", e.Message);
    }
}

using System.IO.Pipes;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// pipe:// ends through two engines: on Unix a pipe is .NET's Unix socket at Path.GetTempPath()/CoreFxPipe_name, so a
/// plain Unix-socket program meets it there; and the relay over a pipe (a stream, no half-close) ends as documented.
/// </summary>
public sealed class PipeTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _tcp = new();
    private readonly string _name = "qmt-pipe-" + Guid.NewGuid().ToString("N")[..12];
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
        await _tcp.DisposeAsync();
    }

    private async Task<string> StartTunnelAsync(string name, string listen, string target)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = listen, Via = [EngineFixture.Hop(_b)], Target = target, ConnectTimeout = TimeSpan.FromSeconds(5) });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    private static async Task<ConnectionInfo> EndedAsync(QmTunnelEngine engine, string tunnel)
    {
        await Poll.UntilAsync(() => Assert.Single(engine.GetConnections(tunnel)).DisconnectedAt is not null);
        return Assert.Single(engine.GetConnections(tunnel));
    }

    [Fact]
    public async Task The_socket_of_a_pipe_listener_is_at_the_documented_path_and_a_plain_unix_client_gets_through()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // \\.\pipe\name there: no socket path
        }
        await StartTunnelAsync("pipe-in", "pipe://" + _name, _tcp.Uri);
        var path = Path.Combine(Path.GetTempPath(), "CoreFxPipe_" + _name);
        Assert.Equal(path, PipeAppEndpoint.UnixSocketPath(_name));
        Assert.True(QmTunnel.Engine.Storage.UnixFileStatus.Get(path).IsSocket);

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var payload = RandomNumberGenerator.GetBytes(300 * 1024 + 1);
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send); // read as the pipe's end: the tunnel sends its FIN, the echo answers and closes
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await reading.WaitAsync(TimeSpan.FromSeconds(30))));

        await _a.StopTunnelAsync("pipe-in");
        Assert.False(File.Exists(path)); // the pipe's socket goes with the listener
    }

    [Fact]
    public async Task A_pipe_target_is_reached_at_the_documented_path_by_a_plain_unix_socket_server()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        using var server = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(PipeAppEndpoint.UnixSocketPath(_name)));
        server.Listen(4);
        var serving = Task.Run(async () =>
        {
            using var s = await server.AcceptAsync();
            var request = new byte[5];
            await new NetworkStream(s).ReadExactlyAsync(request);
            await s.SendAllAsync("pong:"u8.ToArray().Concat(request).ToArray());
            s.Shutdown(SocketShutdown.Send);
        });
        var listen = await StartTunnelAsync("pipe-out", "tcp://127.0.0.1:0", "pipe://" + _name);

        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync("hello"u8.ToArray());
        Assert.Equal("pong:hello"u8.ToArray(), await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        await serving;
    }

    [Fact]
    public async Task A_fin_from_the_tunnel_closes_the_pipe_after_the_data_before_it()
    {
        var payload = RandomNumberGenerator.GetBytes(1024 * 1024 + 5);
        _tcp.OnConnection = async s =>
        {
            await s.SendAllAsync(payload); // the target speaks first, then closes its sending side
            s.Shutdown(SocketShutdown.Send);
            await s.ReadToEndAsync();
        };
        await StartTunnelAsync("pipe-fin", "pipe://" + _name, _tcp.Uri);

        await using var client = new NamedPipeClientStream(".", _name, PipeDirection.InOut, PipeOptions.Asynchronous);
        await client.ConnectAsync(5000);
        var received = new MemoryStream();
        await client.CopyToAsync(received).WaitAsync(TimeSpan.FromSeconds(30)); // ends: the pipe is closed after the data

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(received.ToArray()));
        var connection = await EndedAsync(_a, "pipe-fin");
        Assert.NotNull(connection.DisconnectedAt);
        Assert.Equal(payload.Length, connection.BytesToClient);
    }

    [Fact]
    public async Task A_pipe_clients_close_ends_the_stream_cleanly_after_its_data()
    {
        var seen = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _tcp.OnConnection = async s =>
        {
            seen.TrySetResult(await s.ReadToEndAsync()); // the target reads to a FIN: a reset would throw here
        };
        await StartTunnelAsync("pipe-close", "pipe://" + _name, _tcp.Uri);

        var payload = RandomNumberGenerator.GetBytes(700 * 1024 + 3);
        await using (var client = new NamedPipeClientStream(".", _name, PipeDirection.InOut, PipeOptions.Asynchronous))
        {
            await client.ConnectAsync(5000);
            await client.WriteAsync(payload);
        }

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await seen.Task.WaitAsync(TimeSpan.FromSeconds(30))));
        var connection = await EndedAsync(_a, "pipe-close");
        Assert.NotNull(connection.DisconnectedAt);
        Assert.Null(connection.Error);
        Assert.Equal(ConnectionState.Closed, connection.State);
        Assert.Equal(payload.Length, connection.BytesFromClient);
    }
}

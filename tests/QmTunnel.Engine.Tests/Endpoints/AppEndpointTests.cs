using System.Buffers;
using System.IO.Pipes;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Endpoints;

/// <summary>The application endpoints by scheme, on real sockets and pipes: listeners, dialers, connections.</summary>
public sealed class AppEndpointTests : IDisposable
{
    private static readonly AppListenOptions Options = new("Test", "free it", "fix it");
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-app-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private EndpointUri Unix(string name, string query = "") => EndpointUri.ParseApplication($"unix://{_dir}/{name}{query}", "Listen");

    [Theory]
    [InlineData("unix:///run/app.sock", EndpointScheme.Unix, "/run/app.sock")]
    [InlineData("unix:///run/app.sock?mode=0660", EndpointScheme.Unix, "/run/app.sock")]
    [InlineData("pipe://sql.query-1", EndpointScheme.Pipe, "sql.query-1")]
    public void Path_endpoints_parse_and_print_back(string text, EndpointScheme scheme, string path)
    {
        var uri = EndpointUri.ParseApplication(text, "Listen");

        Assert.Equal(scheme, uri.Scheme);
        Assert.Equal(path, uri.Path);
        Assert.True(uri.IsPath);
        Assert.Equal(text, uri.ToString());
        Assert.Equal(text, uri.HostPort); // what allow-rules and Opens carry for a path
        Assert.Equal(uri, EndpointUri.ParseApplication(uri.ToString(), "Listen"));
    }

    [Fact]
    public void Mode_is_read_as_octal_and_refused_on_a_target()
    {
        Assert.Equal(0x1B0, EndpointUri.ParseApplication("unix:///run/a.sock?mode=0660", "Listen").UnixMode); // 0660
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseTarget("unix:///run/a.sock?mode=0660", "Target"));
        Assert.Contains("applies to -Listen only", e.Message);
    }

    [Fact]
    public void A_socks5_endpoint_is_a_listener_only_and_udp_is_a_datagram_end()
    {
        Assert.Equal(EndpointScheme.Socks5, EndpointUri.ParseApplication("socks5://127.0.0.1:1080", "Listen").Scheme);
        Assert.Contains("is a listener", Assert.Throws<QmTunnelException>(() => EndpointUri.ParseTarget("socks5://127.0.0.1:1080", "Target")).Message);
        Assert.True(EndpointUri.ParseApplication("udp://127.0.0.1:53", "Target").IsDatagram);
        Assert.False(EndpointUri.ParseApplication("tcp://127.0.0.1:53", "Target").IsDatagram);
    }

    [Fact]
    public void A_socket_path_longer_than_the_kernel_takes_is_refused_before_any_bind()
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication("unix:///" + new string('a', 120), "Listen"));
        Assert.Contains("at most 107 bytes", e.Message);
    }

    [Fact]
    public async Task Unix_listener_and_dialer_carry_bytes_both_ways_with_half_close()
    {
        var listen = Unix("a.sock");
        using var listener = await AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default);
        var accepting = listener.AcceptAsync(default).AsTask();
        var (dialed, failure) = await AppEndpoint.For(EndpointScheme.Unix).ConnectAsync(EndpointUri.ParseTarget(listen.ToString(), "Target"), OpenOptions.None, TimeSpan.FromSeconds(5), default);
        Assert.Null(failure);
        using var client = dialed!;
        using var server = await accepting;
        Assert.StartsWith(listen.ToString(), server.Remote);
        if (OperatingSystem.IsLinux())
        {
            Assert.Contains($"pid {Environment.ProcessId}", server.Remote); // the peer's credentials (SO_PEERCRED)
        }

        var payload = RandomNumberGenerator.GetBytes(300_000);
        var reading = ReadToEndAsync(server);
        await client.SendAsync(new ReadOnlySequence<byte>(payload), default);
        client.ShutdownSend();
        Assert.Equal(payload, await reading.WaitAsync(TimeSpan.FromSeconds(10)));

        // the other half still works after the half-close
        await server.SendAsync(new ReadOnlySequence<byte>("late"u8.ToArray()), default);
        server.ShutdownSend();
        Assert.Equal("late"u8.ToArray(), await ReadToEndAsync(client).WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_unix_listener_sets_the_mode_before_it_listens_and_removes_its_file_when_closed()
    {
        var listen = Unix("m.sock", "?mode=0600");
        var listener = await AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(listen.Path!));
        }
        listener.Dispose();
        Assert.False(File.Exists(listen.Path));
    }

    [Fact]
    public async Task A_stale_socket_file_is_replaced_but_a_live_one_is_PortInUse()
    {
        var listen = Unix("s.sock");
        // a process that died leaves its socket file behind (.NET unlinks the path it bound when it closes a socket, so
        // the file is moved to the listener's path first: then closing leaves it there, with nothing answering)
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            dead.Bind(new UnixDomainSocketEndPoint(listen.Path! + ".tmp"));
            dead.Listen(1);
            File.Move(listen.Path! + ".tmp", listen.Path!);
        }
        Assert.True(File.Exists(listen.Path));
        using (var replaced = await AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default))
        {
            var e = await Assert.ThrowsAsync<QmTunnelException>(() => AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default));
            Assert.Equal(ErrorIds.PortInUse, e.ErrorId);
            Assert.Contains("another program listens on", e.Message);
            Assert.Contains("free it", e.Message);
        }
    }

    [Fact]
    public async Task A_file_that_is_not_a_socket_is_never_replaced()
    {
        var listen = Unix("plain.sock");
        await File.WriteAllTextAsync(listen.Path!, "keep me");

        var e = await Assert.ThrowsAsync<QmTunnelException>(() => AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default));

        Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
        Assert.Contains("is not a socket", e.Message);
        Assert.Equal("keep me", await File.ReadAllTextAsync(listen.Path!));
    }

    [Fact]
    public async Task A_refused_unix_target_says_why()
    {
        var (connection, failure) = await AppEndpoint.For(EndpointScheme.Unix).ConnectAsync(Unix("none.sock"), OpenOptions.None, TimeSpan.FromSeconds(5), default);
        Assert.Null(connection);
        Assert.False(string.IsNullOrEmpty(failure));
    }

    [Fact]
    public async Task Pipe_listener_serves_several_clients_as_streams_and_a_shutdown_ends_the_peers_reading()
    {
        var name = "qmt-test-" + Guid.NewGuid().ToString("N")[..12];
        var listen = EndpointUri.ParseApplication("pipe://" + name, "Listen");
        using var listener = await AppEndpoint.For(EndpointScheme.Pipe).ListenAsync(listen, Options, default);
        for (var i = 0; i < 3; i++)
        {
            var accepting = listener.AcceptAsync(default).AsTask();
            var (dialed, failure) = await AppEndpoint.For(EndpointScheme.Pipe).ConnectAsync(listen, OpenOptions.None, TimeSpan.FromSeconds(5), default);
            Assert.Null(failure);
            using var client = dialed!;
            using var server = await accepting.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("pipe://" + name, server.Remote);

            var payload = RandomNumberGenerator.GetBytes(100_000 + i);
            var reading = ReadToEndAsync(server);
            await client.SendAsync(new ReadOnlySequence<byte>(payload), default);
            client.ShutdownSend(); // a pipe has no half-close: the whole pipe closes after the data
            Assert.Equal(payload, await reading.WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(0, await client.ReceiveAsync(new byte[16], default)); // closed by its own shutdown: an end, not an error
        }
    }

    [Fact]
    public async Task A_second_pipe_server_of_the_same_name_is_PortInUse()
    {
        var listen = EndpointUri.ParseApplication("pipe://qmt-test-" + Guid.NewGuid().ToString("N")[..12], "Listen");
        using var first = await AppEndpoint.For(EndpointScheme.Pipe).ListenAsync(listen, Options, default);

        var e = await Assert.ThrowsAsync<QmTunnelException>(() => AppEndpoint.For(EndpointScheme.Pipe).ListenAsync(listen, Options, default));

        Assert.Equal(ErrorIds.PortInUse, e.ErrorId);
    }

    private static async Task<byte[]> ReadToEndAsync(AppConnection connection)
    {
        var all = new MemoryStream();
        var buffer = new byte[65536];
        while (true)
        {
            await connection.WaitForDataAsync(default);
            var n = await connection.ReceiveAsync(buffer, default);
            if (n == 0)
            {
                return all.ToArray();
            }
            all.Write(buffer, 0, n);
        }
    }
}

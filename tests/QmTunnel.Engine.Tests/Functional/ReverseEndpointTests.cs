using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>Reverse tunnels over the application-endpoint seam: a Unix-socket far listener, a Unix-socket target at the owner.</summary>
public sealed class ReverseEndpointTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-rev-").FullName;
    private QmTunnelEngine _owner = null!, _far = null!;

    public async Task InitializeAsync()
    {
        _owner = await _engines.StartAsync();
        _far = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static async Task<byte[]> EchoUnixAsync(string path, byte[] payload)
    {
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        return await reading.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_far_listener_on_a_unix_socket_reaches_the_owners_tcp_target_and_its_file_goes_with_the_Bind()
    {
        var path = Path.Combine(_dir, "far.sock");
        _owner.NewTestTunnel(ReverseTunnelTests.Reverse("unix-far", [EngineFixture.Hop(_far)], _echo.Uri, "unix://" + path));
        Assert.Equal("unix://" + path, await ReverseTunnelTests.StartAsync(_owner, "unix-far"));

        var payload = RandomNumberGenerator.GetBytes(1024 * 1024 + 5);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await EchoUnixAsync(path, payload)));
        Assert.StartsWith("unix://" + path, Assert.Single(_owner.GetConnections("unix-far")).Client, StringComparison.Ordinal);

        await _owner.StopTunnelAsync("unix-far");
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 0 && !File.Exists(path));
    }

    [Fact]
    public async Task A_reverse_tunnel_reaches_a_unix_socket_target_at_the_owner()
    {
        var path = Path.Combine(_dir, "service.sock");
        using var service = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        service.Bind(new UnixDomainSocketEndPoint(path));
        service.Listen(4);
        _ = Task.Run(async () =>
        {
            using var s = await service.AcceptAsync();
            var data = await s.ReadToEndAsync();
            await s.SendAllAsync(data);
            s.Shutdown(SocketShutdown.Send);
        });
        _owner.NewTestTunnel(ReverseTunnelTests.Reverse("unix-target", [EngineFixture.Hop(_far)], "unix://" + path));
        var listen = await ReverseTunnelTests.StartAsync(_owner, "unix-target");

        var payload = RandomNumberGenerator.GetBytes(300_000);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await SocketTestExtensions.EchoAsync(listen, payload)));
        Assert.Equal("unix://" + path, Assert.Single(_owner.GetConnections("unix-target")).Target);
    }

    [Fact]
    public void A_reverse_tunnel_with_a_datagram_or_socks_end_is_refused()
    {
        var error = Assert.Throws<QmTunnelException>(() => _owner.NewTunnel(ReverseTunnelTests.Reverse("socks", [EngineFixture.Hop(_far)], _echo.Uri, "socks5://127.0.0.1:1080") with
        {
            Credentials = EngineFixture.OfflineCredentials(1),
        }));
        Assert.Equal(ErrorIds.EndpointUriInvalid, error.ErrorId);
    }
}

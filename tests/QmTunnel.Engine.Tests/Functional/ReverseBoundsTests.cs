using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tunnels;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// What a peer can make of reverse tunnels when it is hostile: a Reverse stream is taken only for a Bind the receiver
/// opened on that very link, at most the Bind's MaxConnections at once; a far listener takes at most MaxConnections
/// clients; one user holds at most <see cref="FarListeners.MaxPerUser"/> far listeners on a server.
/// </summary>
public sealed class ReverseBoundsTests : TwoEngineTests
{
    private static OpenMessage ReverseOpen(uint bindId) =>
        new(StreamProtocol.Reverse, "web", "", [], 1000, OpenOptions.RemoteToLocal, "198.51.100.9:4444") { BindStreamId = bindId };

    private static async Task<ProtocolErrorCode?> RefusalAsync(MuxStream stream)
    {
        var opened = await stream.Opened.WaitAsync(TimeSpan.FromSeconds(10));
        return opened ? null : stream.ResetCode;
    }

    private async Task<(Link Link, uint BindId, string Listen)> StartReverseAsync(int max = 100)
    {
        _a.NewTestTunnel(ReverseTunnelTests.Reverse("web", [EngineFixture.Hop(_b)], _echo.Uri, max: max));
        var listen = await ReverseTunnelTests.StartAsync(_a, "web");
        var (link, id) = _b.FarListenerBinds.Single();
        return (link, id, listen);
    }

    [Fact]
    public async Task A_Reverse_stream_naming_no_Bind_of_the_owner_on_that_link_is_refused_and_the_tunnel_goes_on()
    {
        var (link, bindId, listen) = await StartReverseAsync();

        foreach (var forged in new[] { bindId + 2, bindId + 1, 1u, uint.MaxValue })
        {
            var stream = link.OpenStream(ReverseOpen(forged), new TrafficCounters(), 64 * 1024);
            Assert.Equal(ProtocolErrorCode.PermissionDenied, await RefusalAsync(stream));
            Assert.Contains("takes a Reverse stream only for a Bind it opened on the same link", stream.ResetReason, StringComparison.Ordinal);
        }
        Assert.Equal(0, _echo.Accepted);
        Assert.Equal(0, _a.GetTunnelStats("web").ConnectionsTotal);

        // The real Bind's id is taken (what the far listener sends), and the tunnel still works.
        var real = link.OpenStream(ReverseOpen(bindId), new TrafficCounters(), 64 * 1024);
        Assert.Null(await RefusalAsync(real));
        real.Reset(ProtocolErrorCode.ConnectionReset, "test");
        await ReverseTunnelTests.EchoChecksumAsync(listen, 10_000);
    }

    [Fact]
    public async Task A_Reverse_stream_on_a_link_without_any_Bind_is_refused()
    {
        // A local tunnel's link: A dialed B, B opens a Reverse stream on it.
        _a.NewTestTunnel(new TunnelProfile { Name = "local", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri });
        var listen = (await _a.StartTunnelAsync("local")).BoundListen!;
        Assert.Equal(new byte[] { 1 }, await SocketTestExtensions.EchoAsync(listen, [1]));
        var atB = _b.InboundLinks().First(l => l.User == "admin" && !l.IsClosed);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, await RefusalAsync(atB.OpenStream(ReverseOpen(1), new TrafficCounters(), 64 * 1024)));

        // A logged-in client opening a Reverse stream toward a server (on a link it dialed itself) gets the same.
        await using var raw = await LinkDialer.DialAsync(EndpointUri.ParseServer(EngineFixture.Hop(_b), "test"), new PasswordLogin(User.AdminName, EngineFixture.AdminPassword),
            new LinkOptions { ServerName = "raw-client" }, NullLogger.Instance, new PeerCertificatePolicy(new MemoryPins()), TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal(ProtocolErrorCode.PermissionDenied, await RefusalAsync(raw.OpenStream(ReverseOpen(1), new TrafficCounters(), 64 * 1024)));
        Assert.Equal(1, _echo.Accepted);
    }

    [Fact]
    public async Task The_owner_takes_at_most_MaxConnections_Reverse_streams_of_its_Bind_from_a_hostile_far_server()
    {
        var (link, bindId, _) = await StartReverseAsync(max: 2);
        var first = link.OpenStream(ReverseOpen(bindId), new TrafficCounters(), 64 * 1024);
        var second = link.OpenStream(ReverseOpen(bindId), new TrafficCounters(), 64 * 1024);
        Assert.Null(await RefusalAsync(first));
        Assert.Null(await RefusalAsync(second));

        var third = link.OpenStream(ReverseOpen(bindId), new TrafficCounters(), 64 * 1024);
        Assert.Equal(ProtocolErrorCode.StreamLimit, await RefusalAsync(third));
        Assert.Contains("MaxConnections", third.ResetReason, StringComparison.Ordinal);
        Assert.Equal(2, _echo.Accepted);

        // One closes: the next is taken (once the owner has let the first go: tried until then, 10 s at most).
        first.Reset(ProtocolErrorCode.ConnectionReset, "test");
        ProtocolErrorCode? next = null;
        await Poll.UntilAsync(async () => (next = await RefusalAsync(link.OpenStream(ReverseOpen(bindId), new TrafficCounters(), 64 * 1024))) != ProtocolErrorCode.StreamLimit, 10_000);
        Assert.Null(next);
    }

    [Fact]
    public async Task The_far_listener_closes_clients_over_the_tunnels_MaxConnections()
    {
        var (_, _, listen) = await StartReverseAsync(max: 2);
        using var one = await SocketTestExtensions.ConnectAsync(listen);
        using var two = await SocketTestExtensions.ConnectAsync(listen);
        await one.SendAllAsync(new byte[] { 1 });
        await two.SendAllAsync(new byte[] { 2 });
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("web").ConnectionsCurrent == 2);

        // The third is closed at once with a reset (seen at connect or at the first read).
        Assert.Equal(0, await ConnectAndReadAsync(listen));
        Assert.Equal(2, _a.GetTunnelStats("web").ConnectionsTotal);

        // The two taken still echo.
        var buffer = new byte[1];
        Assert.Equal(1, await one.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, buffer[0]);
    }

    [Fact]
    public async Task One_user_holds_at_most_MaxPerUser_far_listeners_on_a_server()
    {
        await using var raw = await LinkDialer.DialAsync(EndpointUri.ParseServer(EngineFixture.Hop(_b), "test"), new PasswordLogin(User.AdminName, EngineFixture.AdminPassword),
            new LinkOptions { ServerName = "raw-owner" }, NullLogger.Instance, new PeerCertificatePolicy(new MemoryPins()), TimeSpan.FromSeconds(10), CancellationToken.None);
        raw.StreamOpened = (stream, _) =>
        {
            stream.Reset(ProtocolErrorCode.PermissionDenied, "test owner takes no clients");
            return Task.CompletedTask;
        };
        MuxStream Bind(int i) => raw.OpenStream(new OpenMessage(StreamProtocol.Bind, $"t{i}", _echo.Uri, [], 5000, OpenOptions.RemoteToLocal, "bind")
        {
            Listen = "127.0.0.1:0",
            Servers = [$"127.0.0.1:{_b.Port}"],
            MaxConnections = 1,
        }, new TrafficCounters(), 64 * 1024);

        var binds = Enumerable.Range(0, FarListeners.MaxPerUser).Select(Bind).ToList();
        foreach (var bind in binds)
        {
            Assert.Null(await RefusalAsync(bind));
        }
        await TunnelTests.WaitUntil(() => _b.FarListenerCount == FarListeners.MaxPerUser);

        var over = Bind(FarListeners.MaxPerUser);
        Assert.Equal(ProtocolErrorCode.StreamLimit, await RefusalAsync(over));
        Assert.Contains($"{FarListeners.MaxPerUser} reverse-tunnel listeners", over.ResetReason, StringComparison.Ordinal);

        // Closing one makes room.
        binds[0].SendFin();
        await TunnelTests.WaitUntil(() => _b.FarListenerCount == FarListeners.MaxPerUser - 1);
        Assert.Null(await RefusalAsync(Bind(FarListeners.MaxPerUser + 1)));
    }

    private sealed class MemoryPins : IKnownServers
    {
        private readonly Dictionary<string, string> _pins = [];
        public string? Find(string server) => _pins.GetValueOrDefault(server);
        public void Add(string server, string thumbprint) => _pins[server] = thumbprint;
    }

    private static async Task<int> ConnectAndReadAsync(string listen)
    {
        try
        {
            using var socket = await SocketTestExtensions.ConnectAsync(listen);
            return await socket.ReceiveAsync(new byte[16], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (SocketException)
        {
            return 0;
        }
    }
}

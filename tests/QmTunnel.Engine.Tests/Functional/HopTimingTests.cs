using System.Security.Cryptography;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// The link timing given for each hop travels with the tunnel: the owner dials its first hop with that hop's timing, and
/// a gateway reads the timing of its next hop from the route it is sent and dials with it (three engines, real TLS).
/// </summary>
public sealed class HopTimingTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(allowPlainLinks: false);
        _b = await _engines.StartAsync(allowPlainLinks: false);
        _c = await _engines.StartAsync(allowPlainLinks: false);
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task A_gateway_dials_its_next_hop_with_the_timing_given_for_that_hop()
    {
        var first = $"qmt://127.0.0.1:{_b.Port}?heartbeat=4s&reconnect=250ms";
        var second = $"qmt://127.0.0.1:{_c.Port}?heartbeat=5s&receive-timeout=20s&connect-timeout=3s&reconnect=200ms&reconnect-multiplier=2&reconnect-max=30s";
        _a.NewTestTunnel(new TunnelProfile { Name = "timed", Listen = "tcp://127.0.0.1:0", Via = [first, second], Target = _echo.Uri });
        var listen = (await _a.StartTunnelAsync("timed")).BoundListen!;
        var payload = RandomNumberGenerator.GetBytes(256 * 1024);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(listen, payload));

        // What the gateway b dialed, as it parsed it from the route in the Open it was sent.
        var next = Assert.Single(_b.OutboundHops());
        Assert.Equal($"127.0.0.1:{_c.Port}", next.HostPort);
        Assert.Equal(new LinkTiming
        {
            HeartbeatInterval = TimeSpan.FromSeconds(5),
            ReceiveTimeout = TimeSpan.FromSeconds(20),
            ConnectTimeout = TimeSpan.FromSeconds(3),
            ReconnectInterval = TimeSpan.FromMilliseconds(200),
            ReconnectMultiplier = 2,
            MaxReconnectInterval = TimeSpan.FromSeconds(30),
        }, next.Timing);

        // And the owner dialed its first hop with that hop's own timing, not the second's (every link it keeps to b:
        // the tunnel's, and the one its chain check logged in with).
        Assert.NotEmpty(_a.OutboundHops());
        Assert.All(_a.OutboundHops(), firstHop =>
        {
            Assert.Equal($"127.0.0.1:{_b.Port}", firstHop.HostPort);
            Assert.Equal(new LinkTiming { HeartbeatInterval = TimeSpan.FromSeconds(4), ReconnectInterval = TimeSpan.FromMilliseconds(250) }, firstHop.Timing);
        });
        Assert.Empty(_c.OutboundHops());
    }

    [Fact]
    public async Task A_gateway_dials_a_hop_given_no_timing_with_the_default()
    {
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "untimed", Listen = "tcp://127.0.0.1:0", Via = [$"qmt://127.0.0.1:{_b.Port}?heartbeat=off&receive-timeout=off", EngineFixture.TlsHop(_c)], Target = _echo.Uri,
        });
        var listen = (await _a.StartTunnelAsync("untimed")).BoundListen!;
        Assert.Equal([1, 2, 3], await SocketTestExtensions.EchoAsync(listen, [1, 2, 3]));

        Assert.Same(LinkTiming.Default, Assert.Single(_b.OutboundHops()).Timing);
        Assert.NotEmpty(_a.OutboundHops());
        Assert.All(_a.OutboundHops(), hop => Assert.Equal(TimeSpan.Zero, hop.Timing.HeartbeatInterval));
    }

    [Fact]
    public void A_tunnel_whose_hop_timing_is_out_of_range_is_refused_before_it_is_saved()
    {
        var e = Assert.Throws<QmTunnelException>(() => _a.NewTestTunnel(new TunnelProfile
        {
            Name = "badtiming", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b), $"qmt://127.0.0.1:{_c.Port}?receive-timeout=5s"], Target = _echo.Uri,
        }));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains("receive-timeout=5s is not longer than heartbeat=10s", e.Message, StringComparison.Ordinal);
        Assert.Empty(_a.GetTunnels());
    }
}

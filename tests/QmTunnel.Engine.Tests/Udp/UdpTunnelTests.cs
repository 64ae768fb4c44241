using System.Net;
using System.Security.Cryptography;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>udp:// tunnels through real engines on loopback: datagrams intact, associations per client, the port range, limits.</summary>
public sealed class UdpTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly UdpEchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
        _c = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> StartTunnelAsync(string name, int hops = 1, int maxConnections = 100, string? target = null)
    {
        IReadOnlyList<string> via = hops == 1 ? [EngineFixture.Hop(_b)] : [EngineFixture.TlsHop(_b), EngineFixture.TlsHop(_c)];
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = name, Listen = "udp://127.0.0.1:0", Via = via, Target = target ?? _echo.Uri, ConnectTimeout = TimeSpan.FromSeconds(5),
            MaxConnections = maxConnections,
        });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }


    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Datagrams_of_every_size_up_to_65507_bytes_keep_their_boundaries_both_ways(int hops)
    {
        var listen = await StartTunnelAsync("sizes", hops);
        Assert.StartsWith("udp://127.0.0.1:", listen);
        using var client = new UdpClientSocket(listen);
        foreach (var size in new[] { 1, 2, 100, 1500, 1501, 9000, 65_507, 7 })
        {
            var datagram = RandomNumberGenerator.GetBytes(size);
            var answer = await client.RoundTripAsync(datagram);
            Assert.Equal(datagram, answer); // the whole datagram, alone: nothing clipped (frp clips at 1,500), nothing merged
        }

        Assert.True(await Poll.UntilAsync(() => _a.GetTunnelStats("sizes").DatagramsToClients == 8), "counted just after each send");
        var stats = _a.GetTunnelStats("sizes");
        Assert.Equal(8, stats.DatagramsFromClients);
        Assert.Equal(8, stats.DatagramsToClients);
        Assert.Equal(1 + 2 + 100 + 1500 + 1501 + 9000 + 65_507 + 7, stats.BytesFromClients);
        Assert.Equal(stats.BytesFromClients, stats.BytesToClients);
        Assert.Equal(0, stats.DatagramsDropped);
        var connection = Assert.Single(_a.GetConnections("sizes"));
        Assert.Equal(client.Local.ToString(), connection.Client);
        Assert.Equal(8, connection.DatagramsFromClient);
        Assert.Equal(8, connection.DatagramsToClient);
    }

    [Fact]
    public async Task Many_clients_at_once_each_get_only_their_own_answers()
    {
        _echo.Answer = (data, from) => [.. data, .. System.Text.Encoding.ASCII.GetBytes("|" + from.Port)];
        var listen = await StartTunnelAsync("many");
        var clients = Enumerable.Range(0, 40).Select(_ => new UdpClientSocket(listen)).ToList();
        try
        {
            await Task.WhenAll(clients.Select(async (client, i) =>
            {
                for (var n = 0; n < 20; n++)
                {
                    var datagram = System.Text.Encoding.ASCII.GetBytes($"client {i} datagram {n}");
                    var answer = System.Text.Encoding.ASCII.GetString(await client.RoundTripAsync(datagram));
                    Assert.StartsWith($"client {i} datagram {n}|", answer);
                }
            }));
            // one association (and one outgoing socket at B) per client
            Assert.Equal(40, _echo.Senders.Count);
            Assert.Equal(40, _a.GetTunnelStats("many").ConnectionsCurrent);
            Assert.Equal(40, _b.UdpPortsInUse);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task The_last_server_dials_from_its_outgoing_port_range_and_says_so_when_it_is_exhausted()
    {
        _b.SetServerConfig(new ServerConfigChange { UdpPortRange = "47301-47302" });
        Assert.Equal("47301-47302", _b.GetServerConfig().UdpPortRange);
        var listen = await StartTunnelAsync("ranged");
        using var one = new UdpClientSocket(listen);
        using var two = new UdpClientSocket(listen);
        using var three = new UdpClientSocket(listen);
        Assert.Equal("1"u8.ToArray(), await one.RoundTripAsync("1"u8.ToArray()));
        Assert.Equal("2"u8.ToArray(), await two.RoundTripAsync("2"u8.ToArray()));
        Assert.All(_echo.Senders.Keys, s => Assert.InRange(s.Port, 47301, 47302));

        three.Send("3"u8);
        Assert.Null(await three.ReceiveAsync(1000));
        Assert.True(await Poll.UntilAsync(() => _a.GetTunnelStats("ranged").FailedConnections == 1), "the third association fails");
        var error = _a.GetTunnel("ranged").LastError;
        Assert.Contains("no free port in the outgoing UDP port range 47301-47302", error);
        Assert.Contains("Set-QmTunnelServerConfig -UdpPortRange", error);
    }

    [Fact]
    public void A_port_range_that_is_not_one_is_refused_naming_the_fix()
    {
        foreach (var bad in new[] { "63000-33001", "0-10", "1-70000", "abc", "1-2-3" })
        {
            var e = Assert.Throws<QmTunnelException>(() => _b.SetServerConfig(new ServerConfigChange { UdpPortRange = bad }));
            Assert.Contains("UdpPortRange", e.Message);
            Assert.Contains("33001-63000", e.Message);
        }
        Assert.Equal("33001-63000", _b.GetServerConfig().UdpPortRange);
    }

    [Fact]
    public async Task A_thousand_associations_at_once_are_carried_when_MaxConnections_allows()
    {
        var listen = await StartTunnelAsync("thousand", maxConnections: 1000);
        var clients = Enumerable.Range(0, 1000).Select(_ => new UdpClientSocket(listen)).ToList();
        try
        {
            foreach (var (client, i) in clients.Select((c, i) => (c, i)))
            {
                client.Send(BitConverter.GetBytes(i));
            }
            var answers = await Task.WhenAll(clients.Select(c => c.ReceiveAsync(30_000)));
            Assert.All(answers.Select((a, i) => (a, i)), x => Assert.Equal(BitConverter.GetBytes(x.i), x.a));
            Assert.Equal(1000, _a.GetTunnelStats("thousand").ConnectionsCurrent);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task A_flood_of_new_sources_is_bounded_by_MaxConnections_and_counted()
    {
        var listen = await StartTunnelAsync("bounded", maxConnections: 10);
        var clients = Enumerable.Range(0, 60).Select(_ => new UdpClientSocket(listen)).ToList();
        try
        {
            clients.ForEach(c => c.Send("x"u8));
            Assert.True(await Poll.UntilAsync(() => _a.GetTunnelStats("bounded").RejectedConnections == 50), "50 sources over MaxConnections refused");
            var stats = _a.GetTunnelStats("bounded");
            Assert.Equal(10, stats.ConnectionsCurrent);
            Assert.True(stats.DatagramsDropped >= 50, $"the refused sources' datagrams are dropped and counted ({stats.DatagramsDropped})");
            Assert.Equal(10, _b.UdpPortsInUse);
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task Ends_that_are_both_udp_make_a_tunnel_and_a_udp_end_with_a_byte_stream_end_does_not()
    {
        await StartTunnelAsync("both");
        Assert.True(_a.GetTunnel("both").State is TunnelState.Listening or TunnelState.Established);
        var e = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "mixed", Listen = "udp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = "tcp://127.0.0.1:53",
        }, [EngineFixture.AdminLogin]));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains("carry different traffic", e.Message);
    }

    [Theory]
    [InlineData(TunnelMode.Permanent)]
    [InlineData(TunnelMode.OnDemand)]
    public async Task A_held_udp_tunnel_brings_its_chain_up_with_a_Hold_for_its_udp_target_and_carries_datagrams(TunnelMode mode)
    {
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "held", Listen = "udp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b), EngineFixture.TlsHop(_c)], Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5), Mode = mode,
        });
        var listen = (await _a.StartTunnelAsync("held")).BoundListen!;
        if (mode == TunnelMode.Permanent)
        {
            Assert.True(await Poll.UntilAsync(() => _a.GetTunnel("held").State == TunnelState.Established), $"Established ({_a.GetTunnel("held").State}, {_a.GetTunnel("held").LastError})");
        }
        using var client = new UdpClientSocket(listen);
        Assert.Equal("held"u8.ToArray(), await client.RoundTripAsync("held"u8.ToArray()));
        Assert.Equal(TunnelState.Established, _a.GetTunnel("held").State);
    }
}

/// <summary>The last server refuses an Open whose protocol does not fit its target (a Udp stream to tcp://, a Tcp stream to udp://).</summary>
public sealed class UdpOpenCheckTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n"));
    private QmTunnelEngine _b = null!;

    public async Task InitializeAsync() => _b = await _engines.StartAsync();

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        File.Delete(_pins);
    }

    [Theory]
    [InlineData(QmTunnel.Engine.Protocol.StreamProtocol.Udp, "tcp://127.0.0.1:9", "Udp streams go to udp:// targets only")]
    [InlineData(QmTunnel.Engine.Protocol.StreamProtocol.Tcp, "udp://127.0.0.1:9", "udp:// targets take Udp streams")]
    public async Task An_Open_whose_protocol_does_not_fit_its_target_is_rejected(QmTunnel.Engine.Protocol.StreamProtocol protocol, string target, string reason)
    {
        var link = await QmTunnel.Engine.Links.LinkDialer.DialAsync(QmTunnel.Engine.Endpoints.EndpointUri.ParseServer($"qmt://127.0.0.1:{_b.Port}", "test"),
            new QmTunnel.Engine.Links.PasswordLogin("admin", EngineFixture.AdminPassword), new QmTunnel.Engine.Links.LinkOptions(),
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new QmTunnel.Engine.Security.PeerCertificatePolicy(new QmTunnel.Engine.Management.Remote.ClientKnownServers(_pins)),
            TimeSpan.FromSeconds(10), CancellationToken.None);
        try
        {
            var stream = link.OpenStream(new QmTunnel.Engine.Protocol.OpenMessage(protocol, "t", target, [], 5000, QmTunnel.Engine.Protocol.OpenOptions.None, "raw")
            {
                Listen = "127.0.0.1:1",
                Servers = [$"127.0.0.1:{_b.Port}"],
            }, new QmTunnel.Engine.Links.TrafficCounters(), 1024 * 1024);
            Assert.False(await stream.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(QmTunnel.Engine.Protocol.ProtocolErrorCode.OpenRejected, stream.ResetCode);
            Assert.Contains(reason, stream.ResetReason);
        }
        finally
        {
            await link.CloseAsync(QmTunnel.Engine.Protocol.ProtocolErrorCode.Shutdown, "test over");
        }
    }
}

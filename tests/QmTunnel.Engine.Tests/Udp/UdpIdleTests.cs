using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// The idle time of a UDP association counts traffic in EITHER direction (chisel and frp expire one-way flows because
/// only reads reset their timers). The owning engine A runs on a FakeTimeProvider the tests advance; B and the network
/// run in real time (bounded polls wait for them).
/// </summary>
public sealed class UdpIdleTests : IAsyncLifetime
{
    private const string Quiet = "?heartbeat=off&receive-timeout=off";
    private readonly EngineFixture _engines = new();
    private readonly UdpEchoServer _target = new() { Answer = (_, _) => null };
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(QmTunnel.Engine.Tests.Management.ManagementLimitsTests.FakeClockOptions(), _clock);
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _target.DisposeAsync();
    }

    private async Task<string> StartAsync(string name)
    {
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = name, Listen = "udp://127.0.0.1:0", Via = [EngineFixture.Hop(_b) + Quiet], Target = _target.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5), UdpIdleTimeout = TimeSpan.FromSeconds(60),
        });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        Assert.True(await Poll.UntilAsync(condition, 10_000), $"not reached within 10 s: {what}");
    }

    /// <summary>
    /// After the traffic stopped: 59 s keep the association, the 60th ends it at both ends (B's socket closed). The 59 s
    /// are shown by a datagram from the target that still reaches the client through the same association (a wrong
    /// expiry would have run in the Advance, on this thread: the association closed, the datagram dropped); the 60 s
    /// are counted from that datagram (counted at A after its touch of the idle timer).
    /// </summary>
    private async Task AssertExpiresAfterQuietAsync(string name, UdpClientSocket client)
    {
        _clock.Advance(TimeSpan.FromSeconds(59));
        var toClients = _a.GetTunnelStats(name).DatagramsToClients;
        await _target.Socket.SendToAsync("alive"u8.ToArray(), System.Net.Sockets.SocketFlags.None, _target.Senders.Keys.Single());
        Assert.Equal("alive"u8.ToArray(), await client.ReceiveAsync());
        await Until(() => _a.GetTunnelStats(name).DatagramsToClients == toClients + 1, "the datagram after 59 s counted at A");
        Assert.Equal(1, _a.GetTunnelStats(name).ConnectionsCurrent);
        Assert.Single(_a.GetConnections(name));

        _clock.Advance(TimeSpan.FromSeconds(60));
        await Until(() => _a.GetTunnelStats(name).ConnectionsCurrent == 0, "the association ended at A");
        await Until(() => _b.UdpPortsInUse == 0, "B closed its socket");
        var connection = Assert.Single(_a.GetConnections(name));
        Assert.Equal(ConnectionState.Closed, connection.State);
        Assert.Null(connection.Error);
    }

    [Fact]
    public async Task A_flow_only_from_client_to_server_stays_alive_while_it_flows_and_expires_after()
    {
        var listen = await StartAsync("up");
        using var client = new UdpClientSocket(listen);
        client.Send("0"u8);
        await Until(() => _target.Received == 1, "the first datagram at the target");
        for (var i = 1; i <= 10; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(30));
            client.Send("x"u8);
            await Until(() => _target.Received == i + 1, $"datagram {i} at the target");
        }
        // 300 s of a one-way flow, well past the 60 s idle time: still the one association
        Assert.Equal(1, _a.GetTunnelStats("up").ConnectionsCurrent);
        Assert.Single(_a.GetConnections("up"));
        Assert.Single(_target.Senders);
        await AssertExpiresAfterQuietAsync("up", client);
    }

    [Fact]
    public async Task A_flow_only_from_server_to_client_stays_alive_while_it_flows_and_expires_after()
    {
        var listen = await StartAsync("down");
        using var client = new UdpClientSocket(listen);
        client.Send("hello"u8); // the one datagram that makes the association
        await Until(() => _target.Received == 1, "the first datagram at the target");
        var association = _target.Senders.Keys.Single();
        for (var i = 1; i <= 10; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(30));
            await _target.Socket.SendToAsync(System.Text.Encoding.ASCII.GetBytes("push " + i), System.Net.Sockets.SocketFlags.None, association);
            Assert.Equal(System.Text.Encoding.ASCII.GetBytes("push " + i), await client.ReceiveAsync());
            // The client may read it before A counts it (and touches the idle timer): the next 30 s only after that.
            await Until(() => _a.GetTunnelStats("down").DatagramsToClients == i, $"datagram {i} counted to the client");
        }
        Assert.Equal(1, _a.GetTunnelStats("down").ConnectionsCurrent);
        await AssertExpiresAfterQuietAsync("down", client);

        // the client's next datagram starts a new association
        client.Send("again"u8);
        await Until(() => _a.GetTunnelStats("down").ConnectionsCurrent == 1, "a new association");
        Assert.Equal(2, _a.GetConnections("down").Count);
    }

    [Fact]
    public async Task UdpIdleTimeout_is_changed_checked_and_saved_and_an_old_document_loads_the_default()
    {
        await StartAsync("kept");
        Assert.Equal(TimeSpan.FromSeconds(60), _a.GetTunnel("kept").UdpIdleTimeout);
        var changed = await _a.SetTunnelAsync("kept", p => new TunnelChange { UdpIdleTimeout = TimeSpan.FromSeconds(5) }.Apply(p));
        Assert.Equal(TimeSpan.FromSeconds(5), changed.UdpIdleTimeout);
        var e = await Assert.ThrowsAsync<QmTunnel.Engine.Errors.QmTunnelException>(() => _a.SetTunnelAsync("kept", p => new TunnelChange { UdpIdleTimeout = TimeSpan.Zero }.Apply(p)));
        Assert.Contains("UdpIdleTimeout 00:00:00 is out of range", e.Message);

        var path = Directory.CreateTempSubdirectory("qmt-udp-store-").FullName;
        try
        {
            using (var store = QmTunnel.Engine.Storage.TunnelStore.Open(path))
            {
                store.Save(_a.GetTunnel("kept").Profile with { Name = "saved" });
                store.Save(_a.GetTunnel("kept").Profile with { Name = "old" });
            }
            // "old" as a version before UDP tunnels wrote it: without the field
            using (var db = new LiteDB.LiteDatabase(new LiteDB.ConnectionString { Filename = Path.Combine(path, QmTunnel.Engine.Storage.TunnelStore.FileName), Connection = LiteDB.ConnectionType.Direct, Upgrade = false }))
            {
                var tunnels = db.GetCollection("tunnels");
                var document = tunnels.FindById("OLD");
                Assert.True(document.Remove("udpIdleTimeoutMs"));
                tunnels.Update(document);
                db.Checkpoint();
            }
            using var again = QmTunnel.Engine.Storage.TunnelStore.Open(path);
            var loaded = again.LoadTunnels().ToDictionary(t => t.Name);
            Assert.Equal(TimeSpan.FromSeconds(5), loaded["saved"].UdpIdleTimeout);
            Assert.Equal(TunnelProfile.DefaultUdpIdleTimeout, loaded["old"].UdpIdleTimeout);
            Assert.Equal(TimeSpan.FromSeconds(60), TunnelProfile.DefaultUdpIdleTimeout);
        }
        finally
        {
            Directory.Delete(path, recursive: true);
        }
    }
}

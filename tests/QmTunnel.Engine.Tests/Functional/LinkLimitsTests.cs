using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Limits of the links a server accepts, through real tunnels between two engines (B on a fake clock): streams per
/// link (MaxStreamsPerLink) and links idle for LinkIdleTimeout, after which the owner's link pool simply dials again.
/// </summary>
public sealed class LinkLimitsTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly FakeTimeProvider _clock = new();
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync(ManagementLimitsTests.FakeClockOptions(), _clock);
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> StartTunnelAsync(string name)
    {
        // No heartbeats on the hop: B's clock is a fake one these tests move by minutes at a time.
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b) + "?heartbeat=off&receive-timeout=off"], Target = _echo.Uri });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    /// <summary>A client connection through the tunnel that is known to be carried (one byte went there and back).</summary>
    private static async Task<Socket> HoldAsync(string listen)
    {
        var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 42 });
        var one = new byte[1];
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
        return client;
    }

    private void AdvanceBy(TimeSpan total)
    {
        for (var done = TimeSpan.Zero; done < total; done += TimeSpan.FromSeconds(5))
        {
            _clock.Advance(TimeSpan.FromSeconds(5));
        }
    }

    [Fact]
    public async Task A_link_that_carried_no_stream_for_the_idle_timeout_is_closed_and_the_tunnel_dials_again()
    {
        _b.SetServerConfig(new ServerConfigChange { LinkIdleTimeout = TimeSpan.FromMinutes(1) });
        var listen = await StartTunnelAsync("idle");
        Assert.Equal(new byte[] { 1, 2, 3 }, await SocketTestExtensions.EchoAsync(listen, [1, 2, 3]));

        // A link that carries a connection is not idle, however long it lasts.
        using (var held = await HoldAsync(listen))
        {
            AdvanceBy(TimeSpan.FromMinutes(3));
            Assert.Equal(1, _b.GetServerInfo().Links);
            await held.SendAllAsync(new byte[] { 7 });
            var seven = new byte[1];
            Assert.Equal(1, await held.ReceiveAsync(seven, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20)));
        }
        await TunnelTests.WaitUntil(() => _b.InboundStreamCount == 0);
        AdvanceBy(TimeSpan.FromSeconds(50));
        Assert.Equal(1, _b.GetServerInfo().Links);

        // A minute without a stream: B closes it, and A's pool notices.
        AdvanceBy(TimeSpan.FromSeconds(30));
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == 0 && _a.GetServerInfo().Links == 0);

        // The next client dials a new link and goes through.
        Assert.Equal(new byte[] { 4, 5 }, await SocketTestExtensions.EchoAsync(listen, [4, 5]));
        Assert.Equal(1, _b.GetServerInfo().Links);
    }

    [Fact]
    public async Task A_logged_in_peer_that_floods_pings_without_reading_is_throttled_and_its_queue_is_freed_at_close()
    {
        // The attack of issue 7: log in as anyone, send Pings, never read the Pongs.
        _b.NewGroup("Nobody", QmTunnel.Engine.Security.GroupRights.None, []);
        _b.NewUser("mallory", "Nobody", "mallory-password-1");
        using var flooder = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 64 * 1024 };
        await flooder.ConnectAsync("127.0.0.1", _b.Port);
        _ = await QmTunnel.Engine.Links.Link.HandshakeAsDialerAsync(flooder, new QmTunnel.Engine.Links.LinkOptions(),
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, default, login: new QmTunnel.Engine.Links.PasswordLogin("mallory", "mallory-password-1"));
        // The dialer has its AuthOk a moment before the server has registered the link.
        await TunnelTests.WaitUntil(() => _b.InboundLinks().Any(l => l.User == "mallory"));
        var link = _b.InboundLinks().Single(l => l.User == "mallory");
        var pings = QmTunnel.Engine.Tests.Links.SendQueueTests.Pings(4096);
        using var stop = new CancellationTokenSource();
        var flooding = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await flooder.SendAsync(pings, SocketFlags.None, stop.Token);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        await TunnelTests.WaitUntil(() => link.ReadPauses > 0, 60_000);
        var options = new QmTunnel.Engine.Links.LinkOptions(); // the engine's bounds are the defaults
        Assert.InRange(link.QueuedBytesPeak, 0, options.MaxQueuedBytes + options.QueueSlackBytes + QmTunnel.Engine.Links.Link.FrameOverhead + 20);
        Assert.False(link.IsClosed);

        stop.Cancel();
        flooder.Dispose();
        await flooding;
        await link.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        await TunnelTests.WaitUntil(() => link.QueuedBytes == 0); // the writer gave every queued buffer back
        await TunnelTests.WaitUntil(() => _b.GetServerInfo().Links == 0);
    }

    [Fact]
    public async Task Connections_over_MaxStreamsPerLink_are_refused_with_the_reason_and_the_tunnel_goes_on()
    {
        _b.SetServerConfig(new ServerConfigChange { MaxStreamsPerLink = QmTunnelEngine.MinStreamsPerLink });
        var listen = await StartTunnelAsync("capped");
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < QmTunnelEngine.MinStreamsPerLink; i++)
            {
                held.Add(await HoldAsync(listen));
            }
            await Assert.ThrowsAnyAsync<SocketException>(() => TunnelTests.ConnectAndReadAsync(listen));
            await TunnelTests.WaitUntil(() => _a.GetTunnelStats("capped").LastError?.Contains("MaxStreamsPerLink", StringComparison.Ordinal) == true);
            Assert.Equal(1, _b.GetServerInfo().Links);

            held[0].Dispose();
            held.RemoveAt(0);
            await TunnelTests.WaitUntil(() => _b.InboundStreamCount < QmTunnelEngine.MinStreamsPerLink);
            Assert.Equal(new byte[] { 9 }, await SocketTestExtensions.EchoAsync(listen, [9]));
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }
}

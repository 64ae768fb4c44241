using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// A reverse tunnel's far listener lives with its owner's link session: kept (and its connections going on) through
/// an outage the session survives, closed when the session expires (the port is free, and the owner binds it again
/// when it comes back), and taken over by a new Bind of the same tunnel while the old session waits to resume. The
/// owner's link to the far server goes through a <see cref="FaultProxy"/>; the far server runs on a FakeTimeProvider,
/// so its session expires only when a test advances its clock.
/// </summary>
public sealed class ReverseResumeTests : IAsyncLifetime
{
    private const string Quiet = "?heartbeat=off&receive-timeout=off";
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly FakeTimeProvider _farClock = new(DateTimeOffset.UtcNow);
    private QmTunnelEngine _owner = null!, _far = null!;
    private FaultProxy _proxy = null!;
    private int _port;

    public async Task InitializeAsync()
    {
        _owner = await _engines.StartAsync();
        _far = await _engines.StartAsync(QmTunnel.Engine.Tests.Management.ManagementLimitsTests.FakeClockOptions(), _farClock);
        _proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, _far.Port));
        _port = ReverseTunnelTests.FreePort();
        _owner.NewTestTunnel(ReverseTunnelTests.Reverse("web", [$"qmt+plain://127.0.0.1:{_proxy.EndPoint.Port}{Quiet}"], _echo.Uri, $"tcp://127.0.0.1:{_port}") with
        {
            FailureTolerance = TimeSpan.FromSeconds(30),
        });
        await ReverseTunnelTests.StartAsync(_owner, "web");
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _proxy.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private string Listen => $"tcp://127.0.0.1:{_port}";

    /// <summary>Waits until the far server saw the cut: its end of the owner's link waits to resume (its clock then counts the tolerance).</summary>
    private Task FarSideResumingAsync() =>
        TunnelTests.WaitUntil(() => _far.InboundLinks().Any(l => l.State == QmTunnel.Engine.Links.LinkState.Resuming));

    private static async Task EchoAsync(Socket client, byte[] payload)
    {
        await client.SendAllAsync(payload);
        var back = new byte[payload.Length];
        var read = 0;
        while (read < back.Length)
        {
            var n = await client.ReceiveAsync(back.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(n > 0, "the connection closed");
            read += n;
        }
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back));
    }

    [Fact]
    public async Task Through_a_resumed_outage_the_far_listener_stays_and_an_open_connection_keeps_working()
    {
        using var client = await SocketTestExtensions.ConnectAsync(Listen);
        await EchoAsync(client, RandomNumberGenerator.GetBytes(100_000));
        var bind = _far.FarListenerBinds.Single();
        var accepted = _proxy.Accepted;

        // The link's connection is reset; bytes sent meanwhile wait, and the session resumes on a new connection.
        _proxy.Cut(CutMode.Reset);
        var during = EchoAsync(client, RandomNumberGenerator.GetBytes(300_000));
        await during;
        Assert.True(_proxy.Accepted > accepted, "the owner did not reconnect");

        Assert.Equal(bind, _far.FarListenerBinds.Single());
        Assert.Equal(1, _owner.GetTunnelStats("web").ConnectionsCurrent);
        await ReverseTunnelTests.EchoChecksumAsync(Listen, 50_000);
        Assert.Equal(2, _echo.Accepted);
    }

    [Fact]
    public async Task When_the_session_expires_the_far_listener_is_closed_its_port_is_free_and_the_owner_binds_it_again()
    {
        _proxy.Refuse(true);
        _proxy.Cut(CutMode.Reset);
        await TunnelTests.WaitUntil(() => _proxy.Refused >= 1);
        await FarSideResumingAsync();

        // Within the failure tolerance the listener is kept: the owner may come back.
        _farClock.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal(1, _far.FarListenerCount);

        // Past it, the session expires at the far server: its Bind is reset and the listener closed.
        _farClock.Advance(TimeSpan.FromSeconds(11));
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 0);
        await ReverseTunnelTests.AssertPortFreeAsync(Listen);

        // The owner comes back: its resume is refused (SessionExpired), and a new Bind takes the same port.
        _proxy.Heal();
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 1 && _owner.GetTunnel("web") is { State: TunnelState.Established, BoundListen: not null }, 30_000);
        Assert.Equal(Listen, _owner.GetTunnel("web").BoundListen);
        await ReverseTunnelTests.EchoChecksumAsync(Listen, 100_000);
    }

    [Fact]
    public async Task A_new_owner_of_the_same_tunnel_takes_over_a_listener_whose_session_waits_to_resume()
    {
        // The owner vanishes (its link is cut and nothing comes back): the far server keeps its session and listener.
        _proxy.Refuse(true);
        _proxy.Cut(CutMode.Reset);
        await TunnelTests.WaitUntil(() => _proxy.Refused >= 1);
        await FarSideResumingAsync();
        Assert.Equal(1, _far.FarListenerCount);

        // The same tunnel started again by another owner process (same user, same name), on a direct link.
        var again = await _engines.StartAsync();
        again.NewTestTunnel(ReverseTunnelTests.Reverse("web", [EngineFixture.Hop(_far)], _echo.Uri, Listen));
        Assert.Equal(Listen, await ReverseTunnelTests.StartAsync(again, "web"));
        await TunnelTests.WaitUntil(() => _far.FarListenerCount == 1);
        await ReverseTunnelTests.EchoChecksumAsync(Listen, 10_000);
        Assert.Equal(1, again.GetTunnelStats("web").ConnectionsTotal);
    }

    [Fact]
    public async Task A_second_owner_of_the_same_tunnel_does_not_take_a_listener_whose_link_is_up()
    {
        var other = await _engines.StartAsync();
        other.NewTestTunnel(ReverseTunnelTests.Reverse("web", [EngineFixture.Hop(_far)], _echo.Uri, Listen));
        var error = await Assert.ThrowsAsync<QmTunnel.Engine.Errors.QmTunnelException>(() => other.StartTunnelAsync("web"));
        Assert.Equal(QmTunnel.Engine.Errors.ErrorIds.PortInUse, error.ErrorId);
        Assert.Equal(TunnelState.Established, _owner.GetTunnel("web").State);
        await ReverseTunnelTests.EchoChecksumAsync(Listen, 10_000);
        Assert.Equal(1, _owner.GetTunnelStats("web").ConnectionsTotal);
    }
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Session resume end to end (issue 8): a tunnel A → B whose link passes a <see cref="FaultProxy"/>; the link's
/// connection is cut while an application transfers data, and the application must notice nothing: no close, every
/// byte once and in order.
/// </summary>
public sealed class ResumeTests(Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    private readonly QmTunnel.Engine.Tests.Diagnostics.CapturingLoggerFactory _logsA = new(), _logsB = new();
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly FakeTimeProvider _clock = new();
    private QmTunnelEngine _a = null!, _b = null!;
    private FaultProxy _proxy = null!;

    public async Task InitializeAsync()
    {
        _b = await _engines.StartAsync(new ServerOptions { Port = 0, DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")), AllowPlainLinks = true,
            AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations }, null, _logsB);
        _proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, _b.Port));
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        foreach (var (name, logs) in new[] { ("A", _logsA), ("B", _logsB) })
        {
            foreach (var line in logs.Lines.Where(l => l.Category.Contains("Link", StringComparison.Ordinal) || l.EventId is >= 100 and < 200))
            {
                output.WriteLine($"{name} [{line.EventId}] {line.Message}");
            }
        }
    }

    private async Task<string> StartTunnelAsync(TimeProvider? clockOfA = null, TimeSpan? failureTolerance = null)
    {
        _a = clockOfA is null
            ? await _engines.StartAsync(new ServerOptions { Port = 0, DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")), AllowPlainLinks = true,
                AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations }, null, _logsA)
            : await _engines.StartAsync(QmTunnel.Engine.Tests.Management.ManagementLimitsTests.FakeClockOptions(), clockOfA, _logsA);
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "cut",
            Listen = "tcp://127.0.0.1:0",
            Via = [$"qmt+plain://127.0.0.1:{_proxy.EndPoint.Port}"],
            Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            FailureTolerance = failureTolerance ?? TunnelProfile.DefaultFailureTolerance,
        });
        return (await _a.StartTunnelAsync("cut")).BoundListen!;
    }

    private Link LinkOfA => _a.OutboundLinks().Single();

    [Fact]
    public async Task A_transfer_goes_on_through_three_resets_of_its_link_with_every_byte_once_and_in_order()
    {
        var listen = await StartTunnelAsync();
        var payload = RandomNumberGenerator.GetBytes(48 * 1024 * 1024);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        var received = new MemoryStream();
        var reading = Task.Run(async () =>
        {
            var buffer = new byte[256 * 1024];
            while (true)
            {
                var n = await client.ReceiveAsync(buffer, SocketFlags.None);
                if (n == 0)
                {
                    return;
                }
                lock (received)
                {
                    received.Write(buffer, 0, n);
                }
            }
        });
        long Received()
        {
            lock (received)
            {
                return received.Length;
            }
        }
        var sending = Task.Run(async () =>
        {
            for (var offset = 0; offset < payload.Length; offset += 64 * 1024)
            {
                await client.SendAsync(payload.AsMemory(offset, Math.Min(64 * 1024, payload.Length - offset)), SocketFlags.None);
                // Paced, so the cuts fall inside the transfer.
                while (offset - Received() > 4 * 1024 * 1024)
                {
                    await Task.Delay(1);
                }
            }
            client.Shutdown(SocketShutdown.Send);
        });
        for (var cut = 1; cut <= 3; cut++)
        {
            var at = payload.Length / 4 * cut;
            await TunnelTests.WaitUntil(() => Received() >= at, 60_000);
            await _proxy.CutForAsync(TimeSpan.FromMilliseconds(300), CutMode.Reset);
        }
        await sending.WaitAsync(TimeSpan.FromSeconds(120));
        await reading.WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(payload.Length, received.Length);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(received.ToArray()));
        Assert.True(_proxy.Cuts >= 3);
        Assert.True(LinkOfA.Resumes >= 3, $"{LinkOfA.Resumes} resumes");
        Assert.Equal(LinkState.Up, LinkOfA.State);
        Assert.Equal(1, _a.GetTunnelStats("cut").ConnectionsTotal);
    }

    [Fact]
    public async Task A_link_that_does_not_come_back_within_the_tunnels_failure_tolerance_closes_its_connections_with_the_reason()
    {
        var tolerance = TimeSpan.FromSeconds(5);
        var listen = await StartTunnelAsync(_clock, tolerance);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1, 2, 3 });
        var three = new byte[3];
        Assert.Equal(3, await client.ReceiveAsync(three, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(tolerance, LinkOfA.Session.FailureTolerance); // the tunnel's setting is its link's

        _proxy.Refuse(true);
        _proxy.Cut(CutMode.Reset);
        await TunnelTests.WaitUntil(() => LinkOfA.State == LinkState.Resuming);
        Assert.Equal(TunnelState.Resuming, _a.GetTunnel("cut").State);
        // A redials on its backoff and is refused; within the tolerance the connection stays open.
        for (var waited = TimeSpan.Zero; waited < tolerance - TimeSpan.FromSeconds(1); waited += TimeSpan.FromSeconds(1))
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(5);
        }
        Assert.Equal(LinkState.Resuming, LinkOfA.State);
        Assert.Equal(1, _a.GetTunnelStats("cut").ConnectionsCurrent);
        // Past it the session ends and the application's connection is closed, with the reason.
        for (var i = 0; i < 4 && _a.OutboundLinks().Count > 0; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20);
        }
        var end = new byte[1];
        var read = await Record.ExceptionAsync(async () => Assert.Equal(0, await client.ReceiveAsync(end, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10))));
        Assert.True(read is null or SocketException, $"{read}");
        await TunnelTests.WaitUntil(() => _a.GetConnections("cut").Any(c => c.Error?.Contains("failure tolerance of 5 s", StringComparison.Ordinal) == true));
        Assert.True(_a.OutboundLinks().Count == 0);
        Assert.True(_proxy.Refused > 0, "A redialed while the far side was away");
    }

    [Fact]
    public async Task With_a_failure_tolerance_of_zero_a_cut_closes_the_connections_at_once()
    {
        var listen = await StartTunnelAsync(failureTolerance: TimeSpan.Zero);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1 });
        var one = new byte[1];
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(LinkOfA.Session.Resumable);

        _proxy.Cut(CutMode.Reset);
        var read = await Record.ExceptionAsync(async () => Assert.Equal(0, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10))));
        Assert.True(read is null or SocketException, $"{read}");
    }

    [Fact]
    public async Task A_black_hole_is_found_by_the_receive_timeout_and_the_session_resumes_on_a_new_connection()
    {
        var listen = await StartTunnelAsync(_clock);
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 7 });
        var one = new byte[1];
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
        var link = LinkOfA;
        var timing = LinkTiming.Default;

        _proxy.Cut(CutMode.BlackHole);
        await client.SendAllAsync(new byte[] { 8 }); // lost in the hole: it must come through after the resume
        // Silence shorter than the receive timeout is not a dead connection (a Ping goes out at the heartbeat interval).
        for (var waited = TimeSpan.Zero; waited < timing.ReceiveTimeout - TimeSpan.FromSeconds(2); waited += TimeSpan.FromSeconds(1))
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
        }
        Assert.Equal(LinkState.Up, link.State);
        Assert.Equal(0, link.TransportsLost);
        // Within heartbeat interval + receive timeout of the cut, A gives the connection up and redials.
        for (var i = 0; i < (timing.HeartbeatInterval + TimeSpan.FromSeconds(2)).TotalSeconds && link.TransportsLost == 0; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
        }
        Assert.Equal(1, link.TransportsLost);
        for (var i = 0; i < 40 && link.Resumes == 0; i++)
        {
            _clock.Advance(TimeSpan.FromMilliseconds(250)); // the reconnect backoff runs on A's clock
            await Task.Delay(20);
        }
        await TunnelTests.WaitUntil(() => link.Resumes == 1);
        Assert.Equal(1, await client.ReceiveAsync(one, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(8, one[0]);
        Assert.Same(link, LinkOfA);
        Assert.Equal(LinkState.Up, link.State);
    }

    [Fact]
    public async Task A_resume_with_a_wrong_proof_or_for_another_users_session_is_refused_and_the_session_goes_on()
    {
        var listen = await StartTunnelAsync();
        Assert.Equal(new byte[] { 1 }, await SocketTestExtensions.EchoAsync(listen, [1]));
        var session = _b.InboundLinks().Single(l => l.Session.Resumable);
        _b.NewGroup("Nobody", QmTunnel.Engine.Security.GroupRights.None, []);
        _b.NewUser("mallory", "Nobody", "mallory-password-1");
        var unknown = RandomNumberGenerator.GetBytes(16);
        foreach (var (user, password, id, expected) in new[]
        {
            ("admin", EngineFixture.AdminPassword, session.Session.Id, ProtocolErrorCode.ResumeRefused),    // its user, a wrong proof
            ("mallory", "mallory-password-1", session.Session.Id, ProtocolErrorCode.ResumeRefused),         // another user's session
            ("admin", EngineFixture.AdminPassword, unknown, ProtocolErrorCode.SessionExpired),              // a session nobody has
        })
        {
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, _b.Port);
            var raw = new RawFrames(socket);
            var nonce = QmTunnel.Engine.Security.PasswordChallenge.NewNonce();
            await socket.SendAsync((byte[])[.. FrameCodec.Preamble, .. RawFrames.Hello(), .. RawFrames.Control(new AuthStartMessage(AuthMethod.Password, user, nonce))], SocketFlags.None);
            await raw.ControlAsync(FrameType.Hello);
            var challenge = (AuthChallengeMessage)await raw.ControlAsync(FrameType.AuthChallenge);
            var proof = QmTunnel.Engine.Security.PasswordChallenge.CreateProof(password, user, nonce,
                new QmTunnel.Engine.Security.PasswordChallengeParameters(challenge.ServerNonce, challenge.Salt, challenge.Iterations), []);
            await socket.SendAsync(RawFrames.Control(new AuthProofMessage(proof.ClientProof)), SocketFlags.None);
            var ok = (AuthOkMessage)await raw.ControlAsync(FrameType.AuthOk);
            Assert.Equal(32, ok.ResumeNonce.Length);
            await socket.SendAsync(RawFrames.Control(new ResumeMessage(id, new byte[32], 0)), SocketFlags.None);
            var refused = (GoAwayMessage)await raw.ControlAsync(FrameType.GoAway);
            Assert.Equal(expected, refused.Code);
        }
        Assert.Equal(LinkState.Up, session.State);
        Assert.Equal(0, session.Resumes);
        Assert.Equal(new byte[] { 2 }, await SocketTestExtensions.EchoAsync(listen, [2]));
        Assert.Equal(2, _logsB.Event(QmTunnel.Engine.Diagnostics.EventIds.LinkResumeRefused).Count);
    }

    [Fact]
    public async Task A_management_session_goes_on_after_its_connection_is_reset_and_the_user_notices_nothing()
    {
        var pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n") + ".txt");
        try
        {
            await using var session = await QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{_proxy.EndPoint.Port}", "test"),
                new PasswordLogin("admin", EngineFixture.AdminPassword), TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(pins));
            Assert.Equal(_b.GetServerInfo().ServerId, (await session.GetServerInfoAsync(CancellationToken.None)).ServerId);

            await _proxy.CutForAsync(TimeSpan.FromMilliseconds(300), CutMode.Reset);
            // A request right after the cut: it waits for the session to come back, then is answered.
            var info = await session.GetServerInfoAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(_b.GetServerInfo().ServerId, info.ServerId);
            Assert.True(session.IsOpen);
            Assert.Equal(1, session.Link.Resumes);
        }
        finally
        {
            File.Delete(pins);
        }
    }
}

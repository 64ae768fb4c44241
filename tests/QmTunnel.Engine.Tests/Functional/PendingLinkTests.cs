using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Diagnostics;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Connections that have not logged in, against a real engine on loopback: the per-source cap closes a new one at
/// once, the overall cap closes the oldest to make room (so a login still gets through), the handshake time-out runs
/// on the engine's clock, and what a peer sends right behind its login is not lost when the reader changes.
/// </summary>
public sealed class PendingLinkTests : IAsyncLifetime
{
    private readonly List<(QmTunnelEngine Engine, string Path)> _engines = [];
    private readonly List<Socket> _sockets = [];
    private readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n") + ".txt");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var socket in _sockets)
        {
            socket.Dispose();
        }
        foreach (var (engine, path) in _engines)
        {
            await engine.DisposeAsync();
            Directory.Delete(path, recursive: true);
        }
        File.Delete(_pins);
    }

    private async Task<QmTunnelEngine> StartAsync(CapturingLoggerFactory logs, TimeProvider? time = null, int maxPending = 1000, int maxPerSource = 64)
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        var engine = new QmTunnelEngine(new ServerOptions
        {
            Port = 0, DataPath = path, AllowPlainLinks = true, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations,
            MaxPendingLinks = maxPending, MaxPendingLinksPerSource = maxPerSource,
        }, logs, time);
        await engine.StartAsync();
        _engines.Add((engine, path));
        return engine;
    }

    /// <summary>A connection from <paramref name="source"/> that sends nothing.</summary>
    private async Task<Socket> ConnectFromAsync(string source, QmTunnelEngine engine)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _sockets.Add(socket);
        socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, engine.Port);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            // Accepted and closed with a reset before the connect returned here: the same as closed right after.
        }
        return socket;
    }

    /// <summary>True when the server closed <paramref name="socket"/> (end of stream or reset) within 10 s.</summary>
    private static async Task<bool> ClosedByServerAsync(Socket socket)
    {
        try
        {
            return await socket.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10)) == 0;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    private static async Task<bool> StillOpenAsync(Socket socket)
    {
        var receive = socket.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask();
        return await Task.WhenAny(receive, Task.Delay(300)) != receive;
    }

    private Task<QmTunnelSession> LogInAsync(QmTunnelEngine engine) =>
        QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{engine.Port}", "test"), new PasswordLogin("admin", EngineFixture.AdminPassword),
            TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));

    [Fact]
    public async Task Over_the_per_source_cap_a_new_connection_is_closed_and_over_the_total_the_oldest_makes_room_for_a_login()
    {
        var logs = new CapturingLoggerFactory();
        var engine = await StartAsync(logs, maxPending: 4, maxPerSource: 2);
        var oldest = await ConnectFromAsync("127.0.0.2", engine);
        var second = await ConnectFromAsync("127.0.0.2", engine);
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinks == 2);

        var third = await ConnectFromAsync("127.0.0.2", engine);
        Assert.True(await ClosedByServerAsync(third));
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinksRefused == 1);
        var refused = Assert.Single(logs.Event(EventIds.PendingLinkRefused));
        Assert.Contains("127.0.0.2 already has 2 connections", refused.Message);

        await ConnectFromAsync("127.0.0.3", engine);
        await ConnectFromAsync("127.0.0.3", engine);
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinks == 4);
        Assert.True(await StillOpenAsync(oldest));

        // The total is full: a fifth connection (another source) closes the oldest, not itself.
        var fifth = await ConnectFromAsync("127.0.0.4", engine);
        Assert.True(await ClosedByServerAsync(oldest));
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinksEvicted == 1);
        Assert.True(await StillOpenAsync(second));
        Assert.True(await StillOpenAsync(fifth));
        Assert.Contains("(MaxPendingLinks), and it was the oldest", Assert.Single(logs.Event(EventIds.PendingLinkEvicted)).Message);

        // A login from yet another source gets through while every pending slot is taken.
        await using (var session = await LogInAsync(engine))
        {
            var info = await session.GetServerInfoAsync(default);
            Assert.Equal(1, info.PendingLinksRefused);
            Assert.Equal(2, info.PendingLinksEvicted); // the login's own connection made room too
            Assert.True(info.PendingLinks <= 4);
            Assert.Equal(4, info.PendingLinksPeak);
        }
        Assert.True(await ClosedByServerAsync(second));
    }

    [Fact]
    public async Task A_connection_that_does_not_log_in_is_closed_when_the_handshake_time_runs_out_on_the_engines_clock()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var logs = new CapturingLoggerFactory();
        var engine = await StartAsync(logs, time);
        var silent = await ConnectFromAsync("127.0.0.5", engine);
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinks == 1);
        time.Advance(TimeSpan.FromSeconds(9.9));
        Assert.True(await StillOpenAsync(silent));
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.True(await ClosedByServerAsync(silent));
        await TunnelTests.WaitUntil(() => engine.GetServerInfo().PendingLinks == 0);
        Assert.Contains(logs.Event(EventIds.LinkRefused), l => l.Message.Contains("no login within 10 s", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_frame_sent_right_behind_the_login_proof_is_not_lost_when_the_link_takes_over_from_the_handshake_reader()
    {
        var engine = await StartAsync(new CapturingLoggerFactory());
        using var s = await ConnectFromAsync("127.0.0.6", engine);
        var nonce = PasswordChallenge.NewNonce();
        await s.SendAsync((byte[])[.. FrameCodec.Preamble, .. RawFrames.Hello(), .. RawFrames.Control(new AuthStartMessage(AuthMethod.Password, "admin", nonce))], SocketFlags.None);
        var reader = new RawFrames(s);
        Assert.IsType<HelloMessage>(await reader.ControlAsync(FrameType.Hello));
        var challenge = (AuthChallengeMessage)await reader.ControlAsync(FrameType.AuthChallenge);
        var proof = PasswordChallenge.CreateProof(EngineFixture.AdminPassword, "admin", nonce,
            new PasswordChallengeParameters(challenge.ServerNonce, challenge.Salt, challenge.Iterations), []);
        // The proof, the SessionStart and a Ping in one write: the server's handshake reader takes them all off the wire.
        var ping = new byte[FrameHeader.Size + 8];
        new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8).Write(ping);
        "carried!"u8.CopyTo(ping.AsSpan(FrameHeader.Size));
        await s.SendAsync((byte[])[.. RawFrames.Control(new AuthProofMessage(proof.ClientProof)), .. RawFrames.Control(new SessionStartMessage(0, 0, 0)), .. ping], SocketFlags.None);
        Assert.IsType<AuthOkMessage>(await reader.ControlAsync(FrameType.AuthOk));
        while (true)
        {
            var (header, payload) = await reader.FrameAsync();
            if (header.Type == FrameType.Pong && payload.AsSpan().SequenceEqual("carried!"u8))
            {
                break; // answered: the Ping was carried over to the link's reader
            }
        }
    }

    [Fact]
    public async Task Peer_text_in_log_lines_is_escaped()
    {
        var logs = new CapturingLoggerFactory();
        var engine = await StartAsync(logs);
        using var s = await ConnectFromAsync("127.0.0.7", engine);
        var user = "eve\r\n2025-01-01 00:00:00 info: QmTunnel.Engine[300] User admin logged in\u001b[8m";
        await s.SendAsync((byte[])[.. FrameCodec.Preamble, .. RawFrames.Hello(), .. RawFrames.Control(new AuthStartMessage(AuthMethod.Password, user, PasswordChallenge.NewNonce()))], SocketFlags.None);
        var reader = new RawFrames(s);
        await reader.ControlAsync(FrameType.Hello);
        await reader.ControlAsync(FrameType.AuthChallenge);
        await s.SendAsync(RawFrames.Control(new AuthProofMessage(new byte[PasswordChallenge.ProofSize])), SocketFlags.None);
        await TunnelTests.WaitUntil(() => logs.Event(EventIds.LoginFailed).Count == 1);
        var line = logs.Event(EventIds.LoginFailed)[0].Message;
        Assert.Contains("eve\\r\\n2025-01-01 00:00:00 info: QmTunnel.Engine[300] User admin logged in\\x1B[8m", line);
        Assert.DoesNotContain(logs.Lines, l => l.Message.Any(c => c < ' ' || c == '\u007f'));
    }
}

/// <summary>Frames by hand, for tests that play a peer.</summary>
internal sealed class RawFrames(Socket socket)
{
    public static byte[] Frame(FrameType type, byte[] payload)
    {
        var frame = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(type, FrameFlags.None, 0, payload.Length).Write(frame);
        payload.CopyTo(frame, FrameHeader.Size);
        return frame;
    }

    public static byte[] Control(ControlMessage message) => Frame(message.FrameType, ControlCodec.ToArray(message));

    public static byte[] Hello() => Control(new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, "raw", "raw-test", 65536, 65536));

    public async Task<(FrameHeader Header, byte[] Payload)> FrameAsync()
    {
        var header = new byte[FrameHeader.Size];
        await ReceiveExactlyAsync(header);
        var parsed = FrameCodec.ParseHeader(header, 1 << 20);
        var payload = new byte[parsed.Length];
        await ReceiveExactlyAsync(payload);
        return (parsed, payload);
    }

    public async Task<ControlMessage> ControlAsync(FrameType expected)
    {
        var (header, payload) = await FrameAsync();
        Assert.Equal(expected, header.Type);
        return ControlCodec.Read(header.Type, new System.Buffers.ReadOnlySequence<byte>(payload));
    }

    private async Task ReceiveExactlyAsync(byte[] buffer)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.NotEqual(0, n);
            got += n;
        }
    }
}

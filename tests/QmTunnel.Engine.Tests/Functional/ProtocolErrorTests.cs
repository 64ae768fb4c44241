using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>A hostile or broken peer talks raw bytes to a real engine: the link closes with a GoAway, the error is counted, the server lives on.</summary>
public sealed class ProtocolErrorTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly Diagnostics.RecordingLoggerFactory _serverLog = new();
    private readonly string _serverPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
    private QmTunnelEngine _server = null!;

    public async Task InitializeAsync()
    {
        _server = new QmTunnelEngine(new ServerOptions
        {
            Port = 0, DataPath = _serverPath, AllowPlainLinks = true, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations,
        }, _serverLog);
        await _server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _server.DisposeAsync();
        Directory.Delete(_serverPath, recursive: true);
    }

    private async Task<Socket> ConnectAsync()
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(IPAddress.Loopback, _server.Port);
        return s;
    }

    private static byte[] Frame(FrameType type, uint stream, byte[] payload, FrameFlags flags = FrameFlags.None)
    {
        var frame = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(type, flags, stream, payload.Length).Write(frame);
        payload.CopyTo(frame, FrameHeader.Size);
        return frame;
    }

    private static byte[] Hello(ushort min = LinkOptions.MinVersion, ushort max = LinkOptions.MaxVersion) =>
        Frame(FrameType.Hello, 0, ControlCodec.ToArray(new HelloMessage(min, max, "raw", "raw-test", 65536, 65536)));

    /// <summary>Preamble, Hello and a password login as the test admin, by hand.</summary>
    private async Task<Socket> HandshakeAsync(string password = EngineFixture.AdminPassword)
    {
        var s = await ConnectAsync();
        var nonce = PasswordChallenge.NewNonce();
        await s.SendAsync(FrameCodec.Preamble.ToArray().Concat(Hello())
            .Concat(Frame(FrameType.AuthStart, 0, ControlCodec.ToArray(new AuthStartMessage(AuthMethod.Password, "admin", nonce)))).ToArray(), SocketFlags.None);
        Assert.IsType<HelloMessage>(await ReadControlAsync(s, FrameType.Hello));
        var challenge = (AuthChallengeMessage)await ReadControlAsync(s, FrameType.AuthChallenge);
        var proof = PasswordChallenge.CreateProof(password, "admin", nonce, new PasswordChallengeParameters(challenge.ServerNonce, challenge.Salt, challenge.Iterations), []);
        await s.SendAsync(Frame(FrameType.AuthProof, 0, ControlCodec.ToArray(new AuthProofMessage(proof.ClientProof))), SocketFlags.None);
        if (password == EngineFixture.AdminPassword)
        {
            var ok = (AuthOkMessage)await ReadControlAsync(s, FrameType.AuthOk);
            Assert.Equal("Administrators", ok.Group);
            PasswordChallenge.CheckServerSignature(proof, ok.ServerSignature, "test");
            // A link without a session kept through outages and without heartbeats: these tests pace it by hand.
            await s.SendAsync(Frame(FrameType.SessionStart, 0, ControlCodec.ToArray(new SessionStartMessage(0, 0, 0))), SocketFlags.None);
        }
        return s;
    }

    private static async Task<ControlMessage> ReadControlAsync(Socket s, FrameType expected)
    {
        var header = new byte[FrameHeader.Size];
        await ReceiveExactlyAsync(s, header);
        var parsed = FrameCodec.ParseHeader(header, 1 << 20);
        Assert.Equal(expected, parsed.Type);
        var payload = new byte[parsed.Length];
        await ReceiveExactlyAsync(s, payload);
        return ControlCodec.Read(parsed.Type, new System.Buffers.ReadOnlySequence<byte>(payload));
    }

    [Fact]
    public async Task A_wrong_password_is_refused_with_AuthenticationFailed_and_logged_as_a_failure()
    {
        using var s = await HandshakeAsync(password: "not-the-password");
        var goAway = await ExpectGoAwayAsync(s);
        Assert.Equal(ProtocolErrorCode.AuthenticationFailed, goAway.Code);
        Assert.Contains("login failed", goAway.Reason);
        Assert.DoesNotContain("wrong password", goAway.Reason); // the peer is not told which part was wrong
        Assert.Equal(0, _server.ProtocolErrors); // a failed login is not a protocol error
        // The server's log has the failure (its own event, as a warning), naming the user but not the password tried.
        var logged = Assert.Single(_serverLog.Entries, e => e.EventId.Id == QmTunnel.Engine.Diagnostics.EventIds.LoginFailed);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, logged.Level);
        Assert.Equal("admin", logged.Values["User"]);
        Assert.DoesNotContain("not-the-password", logged.Message);
        await ServerStillWorksAsync();
    }

    [Fact]
    public async Task A_malformed_route_login_resets_that_stream_and_the_link_goes_on()
    {
        using var s = await HandshakeAsync();
        var open = new OpenMessage(StreamProtocol.Tcp, "t", "tcp://127.0.0.1:9", ["qmt://127.0.0.1:9"], 5000, OpenOptions.None, "raw")
        {
            Listen = "127.0.0.1:1",
            Servers = [$"127.0.0.1:{_server.Port}", "127.0.0.1:9"],
            RouteCredentials = [new RouteCredential("admin", new byte[16], 100_000, new byte[5], new byte[5])],
        };
        await s.SendAsync(Frame(FrameType.Open, 1, ControlCodec.ToArray(open)), SocketFlags.None);
        // Frames until the Reset of stream 1 (the server's Ping may come first).
        while (true)
        {
            var header = new byte[FrameHeader.Size];
            await ReceiveExactlyAsync(s, header);
            var parsed = FrameCodec.ParseHeader(header, 1 << 20);
            var payload = new byte[parsed.Length];
            await ReceiveExactlyAsync(s, payload);
            if (parsed.Type == FrameType.Reset)
            {
                var reset = (ResetMessage)ControlCodec.Read(parsed.Type, new System.Buffers.ReadOnlySequence<byte>(payload));
                Assert.Equal(1u, parsed.StreamId);
                Assert.Equal(ProtocolErrorCode.OpenRejected, reset.Code);
                Assert.Contains("malformed", reset.Reason);
                break;
            }
        }
        Assert.Equal(0, _server.ProtocolErrors);
        await ServerStillWorksAsync();
    }

    [Fact]
    public async Task An_Open_before_the_login_closes_the_link_and_opens_nothing()
    {
        await using var echo = new EchoServer();
        using var s = await ConnectAsync();
        var open = new OpenMessage(StreamProtocol.Tcp, "sneak", echo.Uri, [], 5000, OpenOptions.None, "raw");
        await s.SendAsync(FrameCodec.Preamble.ToArray().Concat(Hello()).Concat(Frame(FrameType.Open, 1, ControlCodec.ToArray(open))).ToArray(), SocketFlags.None);
        var all = await s.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(all.Length > 0);
        await Task.Delay(200);
        Assert.Equal(0, echo.Accepted);
    }

    private static async Task ReceiveExactlyAsync(Socket s, byte[] buffer)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var n = await s.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.NotEqual(0, n);
            got += n;
        }
    }

    /// <summary>Reads until the server closes; returns the GoAway it sent last.</summary>
    private static async Task<GoAwayMessage> ExpectGoAwayAsync(Socket s)
    {
        var all = await s.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var seq = new System.Buffers.ReadOnlySequence<byte>(all);
        GoAwayMessage? last = null;
        while (FrameCodec.TryReadFrame(ref seq, 1 << 20, out var h, out var p))
        {
            if (h.Type == FrameType.GoAway)
            {
                last = (GoAwayMessage)ControlCodec.Read(h.Type, p);
            }
        }
        return last ?? throw new Xunit.Sdk.XunitException("the server closed without a GoAway");
    }

    private async Task ServerStillWorksAsync()
    {
        await using var echo = new EchoServer();
        var client = await _engines.StartAsync();
        client.NewTestTunnel(new TunnelProfile { Name = "after", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_server)], Target = echo.Uri });
        var info = await client.StartTunnelAsync("after");
        using var c = await SocketTestExtensions.ConnectAsync(info.BoundListen!);
        await c.SendAllAsync(new byte[] { 1, 2, 3 });
        c.Shutdown(SocketShutdown.Send);
        Assert.Equal(new byte[] { 1, 2, 3 }, await c.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Unknown_frame_type_closes_the_link_with_a_protocol_error()
    {
        using var s = await HandshakeAsync();
        var bad = new byte[FrameHeader.Size];
        bad[0] = 0x7F;
        await s.SendAsync(bad, SocketFlags.None);
        var goAway = await ExpectGoAwayAsync(s);
        Assert.Equal(ProtocolErrorCode.UnknownFrameType, goAway.Code);
        await TunnelTests.WaitUntil(() => _server.ProtocolErrors == 1);
        await ServerStillWorksAsync();
    }

    [Fact]
    public async Task Oversize_frame_is_refused_from_its_header_alone()
    {
        using var s = await HandshakeAsync();
        var header = new byte[FrameHeader.Size];
        new FrameHeader(FrameType.Data, FrameFlags.None, 1, 0).Write(header);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), int.MaxValue);
        await s.SendAsync(header, SocketFlags.None); // no payload follows: the server must not wait for 2 GiB
        var goAway = await ExpectGoAwayAsync(s);
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, goAway.Code);
        Assert.Equal(1, _server.ProtocolErrors);
    }

    [Fact]
    public async Task Truncated_frame_at_end_of_stream_is_a_protocol_error()
    {
        using var s = await HandshakeAsync();
        var open = Frame(FrameType.Open, 1, ControlCodec.ToArray(new OpenMessage(StreamProtocol.Tcp, "t", "tcp://127.0.0.1:9", [], 1000, OpenOptions.None, "c")));
        await s.SendAsync(open.AsMemory(0, open.Length - 3), SocketFlags.None);
        s.Shutdown(SocketShutdown.Send);
        await TunnelTests.WaitUntil(() => _server.ProtocolErrors == 1);
    }

    [Fact]
    public async Task Unknown_protocol_version_is_refused_with_UnsupportedVersion()
    {
        using var s = await ConnectAsync();
        await s.SendAsync(FrameCodec.Preamble.ToArray().Concat(Hello(7, 9)).ToArray(), SocketFlags.None);
        var goAway = await ExpectGoAwayAsync(s);
        Assert.Equal(ProtocolErrorCode.UnsupportedVersion, goAway.Code);
        Assert.Contains("7-9", goAway.Reason);
        await TunnelTests.WaitUntil(() => _server.ProtocolErrors == 1);
    }

    [Fact]
    public async Task Something_that_is_not_a_link_is_closed_and_counted()
    {
        using var s = await ConnectAsync();
        await s.SendAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(), SocketFlags.None);
        var rest = await s.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(rest);
        await TunnelTests.WaitUntil(() => _server.ProtocolErrors == 1);
        await ServerStillWorksAsync();
    }

    [Fact]
    public async Task Dialing_a_server_that_speaks_another_version_fails_with_HopHandshakeFailed()
    {
        // A fake "server" that answers every Hello with a Hello of version 5.
        using var fake = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        fake.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        fake.Listen();
        var port = ((IPEndPoint)fake.LocalEndPoint!).Port;
        _ = Task.Run(async () =>
        {
            while (true)
            {
                Socket peer;
                try
                {
                    peer = await fake.AcceptAsync();
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                catch (SocketException)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    using (peer)
                    {
                        await peer.ReceiveAsync(new byte[4096], SocketFlags.None);
                        await peer.SendAsync(Hello(5, 5), SocketFlags.None);
                        await Task.Delay(2000);
                    }
                });
            }
        });
        await using var echo = new EchoServer();
        var error = Assert.Throws<QmTunnelException>(() => _server.NewTestTunnel(new TunnelProfile { Name = "v5", Listen = "tcp://127.0.0.1:0", Via = [$"qmt+plain://127.0.0.1:{port}"], Target = echo.Uri }));
        Assert.Equal(ErrorIds.HopHandshakeFailed, error.ErrorId);
        Assert.Contains("compatible version", error.Message);
    }
}

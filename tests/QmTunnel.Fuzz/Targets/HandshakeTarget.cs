using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// The link handshake and login as an acceptor sees them, and the first frames of the link, over a real loopback
/// connection: the input is what the dialer sends (preamble, Hello, AuthStart, AuthProof, then frames on its first
/// streams), after which it half-closes and reads what comes back. <see cref="Link.HandshakeAsAcceptorAsync"/> must end
/// within the case time (a handshake still waiting after the dialer's end is a hang) with a
/// <see cref="ProtocolException"/> or a logged-in link; nothing else. A logged-in link is started on the bytes behind
/// the login and must close by itself (its reader loop ends at a protocol error or the end of stream; a loop that died
/// of another exception would leave it open: a hang); closed by a protocol error, the last frame it sent is a GoAway
/// naming that error. The authenticator
/// challenges every password login and accepts a proof starting with 0x5A, so both the refusal and the hand-over of
/// a link (with the bytes that came behind the login) are reached. Allocation is not measured here (the socket work is
/// on other threads); the parsers it uses are measured by the frame and control targets.
/// </summary>
public sealed class HandshakeTarget : FuzzTarget, IDisposable
{
    /// <summary>What the dialer sends is cut to this (a case costs a connection; the frame target covers big inputs).</summary>
    public const int MaxInput = 64 * 1024;

    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly LinkOptions _options = new() { HandshakeTimeout = TimeSpan.FromSeconds(30), ServerName = "fuzz" };
    private readonly Authenticator _authenticator = new();

    public HandshakeTarget()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
    }

    public override string Name => "handshake";

    public override int Weight => 20;

    /// <summary>The acceptor's own wait; the runner's watchdog is the backstop.</summary>
    private static readonly TimeSpan HandshakeWait = TimeSpan.FromSeconds(5);

    public override TimeSpan CaseTimeout => TimeSpan.FromSeconds(15);

    public override byte[] Generate(Random random)
    {
        // Mostly a range that holds version 4 (the login and the link are reached), sometimes one that does not.
        var (min, max) = random.Next(4) > 0 ? ((ushort)random.Next(1, 5), (ushort)random.Next(4, 6)) : ((ushort)random.Next(0, 6), (ushort)random.Next(0, 6));
        var hello = new HelloMessage(min, max, "id", Targets.Generate.Text(random, 40),
            random.Next(4) == 0 ? random.Next() : 256 * 1024, random.Next(4) == 0 ? random.Next() : 1024 * 1024);
        var password = random.Next(4) > 0;
        byte[] nonce = password ? new byte[24] : [];
        random.NextBytes(nonce);
        var proof = new byte[32];
        random.NextBytes(proof);
        proof[0] = random.Next(4) > 0 ? (byte)0x5A : proof[0];
        List<byte> bytes = [.. FrameCodec.Preamble, .. Frame(hello), .. Frame(new AuthStartMessage(password ? AuthMethod.Password : AuthMethod.Certificate, "u", nonce))];
        if (password)
        {
            bytes.AddRange(Frame(new AuthProofMessage(proof)));
        }
        // Behind the login: mostly a SessionStart (no heartbeats: the case ends at the dialer's end of stream), else a
        // Resume (this acceptor keeps no sessions) or whatever the frames below begin with.
        bytes.AddRange(random.Next(8) switch
        {
            0 => Frame(ControlGenerators.ByFrameType[FrameType.Resume](random, true)),
            1 => [],
            2 => Frame(ControlGenerators.ByFrameType[FrameType.SessionStart](random, true)),
            _ => Frame(new SessionStartMessage((uint)random.Next(2) * 30_000, 0, 0)),
        });
        // What the dialer sends once logged in: Opens, Data, window updates, resets, pings on its first streams.
        for (var frames = random.Next(3) == 0 ? 0 : random.Next(1, 8); frames > 0; frames--)
        {
            bytes.AddRange(random.Next(3) == 0
                ? Frame(1 + 2 * (uint)random.Next(3), ControlGenerators.ByFrameType[FrameType.Open](random, true))
                : FrameTarget.ValidFrame(random, fewStreams: true));
        }
        return [.. bytes];
    }

    private static byte[] Frame(ControlMessage message) => Frame(0, message);

    private static byte[] Frame(uint stream, ControlMessage message)
    {
        var payload = ControlCodec.ToArray(message);
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(message.FrameType, FrameFlags.None, stream, payload.Length).Write(bytes);
        payload.CopyTo(bytes, FrameHeader.Size);
        return bytes;
    }

    public override IEnumerable<byte[]> Seeds()
    {
        yield return [];
        yield return [.. FrameCodec.Preamble];
        yield return "GET / HTTP/1.1\r\n\r\n"u8.ToArray();
        yield return [.. FrameCodec.Preamble, .. Frame(new HelloMessage(2, 2, "id", "n", 1023, 1024))];
        yield return [.. FrameCodec.Preamble, .. Frame(new HelloMessage(3, 9, "id", "n", 1 << 20, 1 << 20))];
        yield return [.. FrameCodec.Preamble, .. Frame(new HelloMessage(2, 2, "id", "n", 1 << 20, 1 << 20)), .. Frame(new OpenMessage(StreamProtocol.Tcp, "", "", [], 1, OpenOptions.None, "")).Select((b, i) => i == 7 ? (byte)1 : b)];
        yield return [.. FrameCodec.Preamble, 1, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
    }

    public override void Execute(byte[] input)
    {
        if (input.Length > MaxInput)
        {
            input = input[..MaxInput];
        }
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(_listener.LocalEndPoint!);
        using var server = _listener.Accept();
        var handshake = Link.HandshakeAsAcceptorAsync(server, _options, NullLogger.Instance, CancellationToken.None, authenticator: _authenticator);
        var received = new MemoryStream();
        var dialer = Task.Run(() =>
        {
            try
            {
                client.Send(input);
                client.Shutdown(SocketShutdown.Send);
                var sink = new byte[4096];
                for (int n; (n = client.Receive(sink)) > 0;)
                {
                    received.Write(sink, 0, n);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // the acceptor closed first (it refused the link), or the case ended
            }
        });
        try
        {
            if (!handshake.Wait(HandshakeWait))
            {
                throw new FuzzFailure(FuzzFailureKind.Hang, $"the acceptor's handshake still runs {HandshakeWait.TotalSeconds:0} s after the dialer sent {input.Length} bytes and half-closed");
            }
            // Logged in (a proof starting with 0x5A): the link runs on what the dialer sent behind its login, and
            // must close by itself at the dialer's end of stream (a protocol error closes it sooner, with a GoAway).
            var link = handshake.Result;
            ProtocolException? violation = null;
            link.ProtocolError += ex => violation = ex;
            link.StreamOpened = (stream, _) =>
            {
                stream.Reset(ProtocolErrorCode.OpenRejected, "fuzz");
                return Task.CompletedTask;
            };
            link.Start();
            if (!link.Completion.Wait(HandshakeWait))
            {
                link.DisposeAsync().AsTask().Wait(HandshakeWait);
                throw new FuzzFailure(FuzzFailureKind.Hang, $"a logged-in link still runs {HandshakeWait.TotalSeconds:0} s after the dialer's end of stream");
            }
            if (violation is not null)
            {
                // The link closed by itself, so the dialer reads to its end: the last thing sent is a GoAway naming the error.
                dialer.Wait(HandshakeWait);
                CheckGoAway(received.ToArray(), violation.Code);
            }
            Outcome(violation is null ? "logged in, link closed at the end" : "logged in, link closed: " + violation.Code);
        }
        catch (AggregateException ex) when (ex.InnerException is ProtocolException p)
        {
            Outcome("refused: " + p.Code);
        }
        catch (AggregateException ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ex.InnerException!);
        }
        finally
        {
            // The acceptor's end closes first: the dialer then reads its end of stream and is done.
            server.Close();
            dialer.Wait(HandshakeWait);
            client.Close();
        }
    }

    /// <summary>Fails unless what the acceptor sent is whole frames ending with a GoAway carrying <paramref name="code"/>.</summary>
    private static void CheckGoAway(byte[] sent, ProtocolErrorCode code)
    {
        var buffer = new System.Buffers.ReadOnlySequence<byte>(sent);
        GoAwayMessage? last = null;
        try
        {
            while (FrameCodec.TryReadFrame(ref buffer, FrameCodec.HardMaxPayload, out var header, out var payload))
            {
                last = header.Type == FrameType.GoAway ? (GoAwayMessage)ControlCodec.Read(header.Type, payload) : null;
            }
        }
        catch (ProtocolException ex)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the acceptor sent a frame its own reader refuses: {ex.Message}", ex);
        }
        if (!buffer.IsEmpty || last?.Code != code)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip,
                $"a link closed by a protocol error ({code}) sent {(last is null ? "no GoAway last" : "GoAway(" + last.Code + ")")} and {buffer.Length} bytes of a cut frame");
        }
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>Challenges password logins; a proof starting with 0x5A logs in as user "u" of group "g".</summary>
    private sealed class Authenticator : ILinkAuthenticator
    {
        public async Task<LoginResult> AuthenticateAsync(LoginRequest request, CancellationToken cancellationToken)
        {
            if (request.Start.Method != AuthMethod.Password)
            {
                throw new LoginFailedException("refused", "certificate");
            }
            var proof = await request.Challenge(new AuthChallengeMessage(new byte[24], new byte[16], 100_000), cancellationToken).ConfigureAwait(false);
            if (proof.ClientProof is not [0x5A, ..])
            {
                throw new LoginFailedException("refused", "wrong proof");
            }
            var principal = new SecurityPrincipal(new User { Name = "u", Group = "g" }, new Group { Name = "g" });
            return new LoginResult(principal, new byte[32]);
        }
    }
}

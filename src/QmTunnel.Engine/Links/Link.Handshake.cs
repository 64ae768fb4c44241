using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Links;

/// <summary>The link handshake (docs/protocol.md, "Handshake"): preamble, Hello, login, then SessionStart or Resume.</summary>
public sealed partial class Link
{
    /// <summary>
    /// Dialer side: preamble + Hello (+ AuthStart when <paramref name="login"/> is given, in the same write), waits for
    /// the peer's Hello, then completes the login (<see cref="LinkLogin"/>) and starts a link session on the connection
    /// (SessionStart, when <paramref name="session"/> asks to keep it through outages and the acceptor offers one). Throws
    /// <see cref="ProtocolException"/> (AuthenticationFailed when the server refused the login), <see cref="Errors.QmTunnelException"/>
    /// (a bad server signature or challenge, stale keys) or IO errors. <paramref name="channelBinding"/>: see
    /// <see cref="Security.PasswordChallenge.TlsServerEndPoint"/> (empty on a plain link).
    /// </summary>
    public static async Task<Link> HandshakeAsDialerAsync(Socket socket, LinkOptions options, ILogger logger, CancellationToken cancellationToken,
        Stream? tls = null, LinkLogin? login = null, byte[]? channelBinding = null, string? server = null, LinkSessionSettings? session = null)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        var settings = session ?? LinkSessionSettings.None;
        var (reader, peer, ok, rtt) = await DialerHandshakeAsync(socket, options, timeout.Token, tls, login, channelBinding, server, settings.Compression).ConfigureAwait(false);
        settings = settings with { Compression = Agreed(settings.Compression, peer) };
        if (ok is { SessionId.Length: > 0 } && settings.Resumable)
        {
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, settings.ToStartMessage()), timeout.Token).ConfigureAwait(false);
            settings = settings with { Id = ok.SessionId, Secret = ok.SessionSecret };
        }
        else if (ok is not null)
        {
            // Logged in, but no session kept through outages: say so, so the acceptor keeps nothing either.
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, (settings with { FailureTolerance = TimeSpan.Zero }).ToStartMessage()), timeout.Token).ConfigureAwait(false);
            settings = settings with { FailureTolerance = TimeSpan.Zero };
        }
        var transport = new SocketLinkTransport(socket, tls, reader, options.Time);
        return new Link(transport, options, peer, isDialer: true, rtt, logger, settings)
        {
            User = ok?.User,
            Group = ok?.Group,
        };
    }

    /// <summary>Preamble, Hello and login, the part of the dialer's handshake a resume repeats.</summary>
    private static async Task<(PipeReader Reader, HelloMessage Peer, AuthOkMessage? Ok, TimeSpan Rtt)> DialerHandshakeAsync(Socket socket, LinkOptions options,
        CancellationToken cancellationToken, Stream? tls, LinkLogin? login, byte[]? channelBinding, string? server, LinkCompression compression)
    {
        var stream = tls ?? new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
        var hello = new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow)
        {
            Compression = new CompressionOffer((byte)compression.Algorithm, (byte)compression.Level),
        };
        var started = Stopwatch.GetTimestamp();
        var clientNonce = login?.Method == AuthMethod.Password ? Security.PasswordChallenge.NewNonce() : [];
        var first = BuildHandshake(preamble: true, hello);
        if (login is not null)
        {
            first = [.. first, .. BuildHandshake(preamble: false, new AuthStartMessage(login.Method, login.User, clientNonce))];
        }
        await WriteRawAsync(socket, tls, first, cancellationToken).ConfigureAwait(false);
        var (type, message) = await ReadControlAsync(reader, cancellationToken, FrameType.Hello).ConfigureAwait(false);
        var rtt = Stopwatch.GetElapsedTime(started);
        if (message is GoAwayMessage goAway)
        {
            throw new ProtocolException(goAway.Code, $"the server refused the link: {goAway.Reason}");
        }
        if (type != FrameType.Hello || message is not HelloMessage peer)
        {
            throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, $"expected Hello, got {type}");
        }
        if (peer.MinVersion != peer.MaxVersion || peer.MinVersion < LinkOptions.MinVersion || peer.MinVersion > LinkOptions.MaxVersion)
        {
            throw new ProtocolException(ProtocolErrorCode.UnsupportedVersion, $"the server chose protocol version {peer.MinVersion}-{peer.MaxVersion}; this side speaks {LinkOptions.MinVersion}-{LinkOptions.MaxVersion}");
        }
        ValidatePeerLimits(peer);
        if (peer.Compression is { Algorithm: not 0 } answered && answered.Algorithm != (byte)compression.Algorithm)
        {
            throw new ProtocolException(ProtocolErrorCode.HandshakeFailed,
                $"the server agreed to compression {answered.Algorithm}, and this side asked for {LinkCompression.Text(compression.Algorithm)}");
        }
        AuthOkMessage? ok = null;
        if (login is not null)
        {
            ok = await LogInAsync(socket, tls, reader, login, clientNonce, channelBinding ?? [], server ?? socket.RemoteEndPoint?.ToString() ?? "?", cancellationToken).ConfigureAwait(false);
        }
        return (reader, peer, ok, rtt);
    }

    /// <summary>
    /// Acceptor side: reads the preamble and the dialer's Hello, picks the highest common version, answers. On no
    /// common version it answers GoAway(UnsupportedVersion) and throws.
    /// With an <paramref name="authenticator"/>, the dialer must then log in (AuthStart...) before the link is up; a
    /// refused login is answered with GoAway(AuthenticationFailed) and thrown as a ProtocolException with that code.
    /// A Resume is refused (this overload keeps no sessions): use <see cref="AcceptAsync"/>.
    /// </summary>
    public static async Task<Link> HandshakeAsAcceptorAsync(Socket socket, LinkOptions options, ILogger logger, CancellationToken cancellationToken, Stream? tls = null, string? refusePlain = null,
        ILinkAuthenticator? authenticator = null, X509Certificate2? clientCertificate = null, byte[]? channelBinding = null) =>
        (await AcceptAsync(socket, options, logger, cancellationToken, tls, refusePlain, authenticator, clientCertificate, channelBinding, sessions: null).ConfigureAwait(false)).Link;

    /// <summary>
    /// The acceptor's handshake (see <see cref="HandshakeAsAcceptorAsync"/>), then, behind the login, the dialer's
    /// SessionStart (a new link, returned with Resumed false) or Resume of a session held in <paramref name="sessions"/>
    /// (that session carries on on this connection, returned with Resumed true: it is already running). A Resume that
    /// names no live session is answered GoAway(SessionExpired); a wrong proof or another user's session
    /// GoAway(ResumeRefused); both throw a ProtocolException with that code. A SessionStart over
    /// <see cref="LinkLimits.MaxLinks"/> (counted in <see cref="LinkOptions.Limits"/> until the link ends) is answered
    /// GoAway(LinkLimit) and thrown the same way; a Resume is never refused by it (its session is counted already).
    /// </summary>
    internal static async Task<(Link Link, bool Resumed)> AcceptAsync(Socket socket, LinkOptions options, ILogger logger, CancellationToken cancellationToken, Stream? tls,
        string? refusePlain, ILinkAuthenticator? authenticator, X509Certificate2? clientCertificate, byte[]? channelBinding, LinkSessionRegistry? sessions,
        Action? loggedIn = null)
    {
        var stream = tls ?? new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream, HandshakeReaderOptions);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        await ReadPreambleAsync(reader, timeout.Token).ConfigureAwait(false);
        var (type, message) = await ReadControlAsync(reader, timeout.Token, FrameType.Hello).ConfigureAwait(false);
        if (type != FrameType.Hello || message is not HelloMessage peer)
        {
            throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, $"expected Hello, got {type}");
        }
        var version = Math.Min(peer.MaxVersion, LinkOptions.MaxVersion);
        if (version < peer.MinVersion || version < LinkOptions.MinVersion)
        {
            var reason = $"no common protocol version: the peer speaks {peer.MinVersion}-{peer.MaxVersion}, this server {LinkOptions.MinVersion}-{LinkOptions.MaxVersion}";
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, new GoAwayMessage(ProtocolErrorCode.UnsupportedVersion, reason)), timeout.Token).ConfigureAwait(false);
            throw new ProtocolException(ProtocolErrorCode.UnsupportedVersion, reason);
        }
        if (refusePlain is not null)
        {
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, new GoAwayMessage(ProtocolErrorCode.PlainLinkRefused, refusePlain)), timeout.Token).ConfigureAwait(false);
            throw new ProtocolException(ProtocolErrorCode.PlainLinkRefused, refusePlain);
        }
        ValidatePeerLimits(peer);
        var (compression, refusal) = LinkCompression.Answer(peer.Compression?.Algorithm ?? 0, peer.Compression?.Level ?? 0, options.Limits.AcceptCompression);
        if (refusal is not null)
        {
            LinkLog.CompressionRefused(logger, socket.RemoteEndPoint?.ToString() ?? "?", $"{peer.Compression?.Algorithm}:{peer.Compression?.Level}", refusal);
        }
        var answer = new HelloMessage((ushort)version, (ushort)version, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow)
        {
            Compression = new CompressionOffer((byte)compression.Algorithm, (byte)compression.Level),
        };
        await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, answer), timeout.Token).ConfigureAwait(false);
        if (authenticator is null)
        {
            loggedIn?.Invoke();
            return (new Link(new SocketLinkTransport(socket, tls, LinkReader(reader, stream), options.Time), options, peer, isDialer: false, TimeSpan.Zero, logger,
                LinkSessionSettings.None with { Compression = compression }), false);
        }
        var offer = sessions is null ? null : LinkSessionOffer.Create();
        var login = await AcceptLoginAsync(socket, tls, reader, authenticator, clientCertificate, channelBinding ?? [], offer, timeout.Token).ConfigureAwait(false);
        loggedIn?.Invoke();
        var (_, next) = await ReadControlAsync(reader, timeout.Token, FrameType.SessionStart, FrameType.Resume).ConfigureAwait(false);
        ThrowIfGoAway(next);
        if (next is ResumeMessage resume)
        {
            var transport = new SocketLinkTransport(socket, tls, LinkReader(reader, stream), options.Time);
            var resumed = await ResumeAsAcceptorAsync(transport, resume, login.Principal.User.Name, offer, sessions, logger, timeout.Token).ConfigureAwait(false);
            return (resumed, true);
        }
        var start = (SessionStartMessage)next;
        // A new session (never a Resume): counted against MaxLinks; an administrator's is counted, never refused.
        var limits = options.Limits;
        if (!limits.TryAdmitLink(exempt: login.Principal.CanChangeServerConfiguration))
        {
            var reason = $"{options.ServerName} holds {limits.Links} links and allows {limits.MaxLinks} (MaxLinks): it takes no new link until one closes. " +
                "Close links it does not need, or raise the limit there with Set-QmTunnelServerConfig -MaxLinks.";
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, new GoAwayMessage(ProtocolErrorCode.LinkLimit, reason)), timeout.Token).ConfigureAwait(false);
            await DiscardUntilPeerClosesAsync(reader, timeout.Token).ConfigureAwait(false);
            throw new ProtocolException(ProtocolErrorCode.LinkLimit, reason);
        }
        var settings = LinkSessionSettings.FromStart(start, options.MaxSessionTolerance) with { Compression = compression };
        if (settings.Resumable && offer is not null)
        {
            settings = settings with { Id = offer.Id, Secret = offer.Secret };
        }
        else
        {
            settings = settings with { FailureTolerance = TimeSpan.Zero };
        }
        var link = new Link(new SocketLinkTransport(socket, tls, LinkReader(reader, stream), options.Time), options, peer, isDialer: false, TimeSpan.Zero, logger, settings)
        {
            Principal = login.Principal,
            User = login.Principal.User.Name,
            Group = login.Principal.Group.Name,
        };
        _ = link.Completion.ContinueWith(static (_, state) => ((LinkLimits)state!).LinkEnded(), limits, TaskScheduler.Default);
        if (settings.Resumable)
        {
            sessions!.Register(link);
        }
        return (link, false);
    }

    /// <summary>
    /// The acceptor's reader until the login succeeds: small segments, and a zero-byte read while it waits, so a
    /// connection that has not logged in holds no large buffer (a flood of them must not cost the server its memory).
    /// </summary>
    private static readonly StreamPipeReaderOptions HandshakeReaderOptions = new(bufferSize: 4096, minimumReadSize: 1024, leaveOpen: true, useZeroByteReads: true);

    /// <summary>
    /// The reader of a logged-in accepted link (large reads for throughput), taking over from the handshake reader:
    /// bytes the peer sent right behind its login and the handshake reader already holds come first, so none is lost.
    /// </summary>
    private static PipeReader LinkReader(PipeReader handshake, Stream stream)
    {
        byte[] carried = [];
        if (handshake.TryRead(out var result))
        {
            carried = result.Buffer.ToArray();
            handshake.AdvanceTo(result.Buffer.End);
        }
        handshake.Complete();
        return PipeReader.Create(carried.Length == 0 ? stream : new PrefixedStream(carried, stream),
            new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
    }

    /// <summary>
    /// After a refusal sent behind the login: the dialer may have sent frames right behind its SessionStart (an Open, a
    /// Ping). Closing with those unread would reset the connection, and a reset can overtake the GoAway; so what it sent
    /// is read and dropped until it closes on the GoAway (at most 1 MiB, within the handshake time).
    /// </summary>
    private static async Task DiscardUntilPeerClosesAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        long discarded = 0;
        try
        {
            while (discarded < 1024 * 1024)
            {
                var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                discarded += result.Buffer.Length;
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // gone already, or too slow to go: closed by the caller either way
        }
    }

    private static async Task WriteRawAsync(Socket socket, Stream? tls, byte[] bytes, CancellationToken cancellationToken)
    {
        if (tls is not null)
        {
            await tls.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            await tls.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await socket.SendAsync(bytes, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The dialer's compression after the Hellos: what it asked for when the acceptor answered that algorithm, else None
    /// (an acceptor that refuses, or does not know it). The level stays the dialer's own: each side compresses at its own.
    /// </summary>
    private static LinkCompression Agreed(LinkCompression asked, HelloMessage answer) =>
        asked.Enabled && answer.Compression is { } offer && offer.Algorithm == (byte)asked.Algorithm ? asked : LinkCompression.None;

    private static void ValidatePeerLimits(HelloMessage peer)
    {
        if (peer.MaxPayload < 1024 || peer.InitialWindow < 1024)
        {
            throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, $"the peer announced unusable limits (max payload {peer.MaxPayload}, window {peer.InitialWindow})");
        }
    }

    private static byte[] BuildHandshake(bool preamble, ControlMessage message)
    {
        var payload = ControlCodec.ToArray(message);
        var offset = preamble ? FrameCodec.Preamble.Length : 0;
        var bytes = new byte[offset + FrameHeader.Size + payload.Length];
        if (preamble)
        {
            FrameCodec.Preamble.CopyTo(bytes);
        }
        new FrameHeader(message.FrameType, FrameFlags.None, 0, payload.Length).Write(bytes.AsSpan(offset));
        payload.CopyTo(bytes.AsSpan(offset + FrameHeader.Size));
        return bytes;
    }

    private static async Task ReadPreambleAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= FrameCodec.Preamble.Length)
            {
                Span<byte> first = stackalloc byte[4];
                buffer.Slice(0, 4).CopyTo(first);
                if (!first.SequenceEqual(FrameCodec.Preamble))
                {
                    reader.AdvanceTo(buffer.Start);
                    throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, "the peer is not a qmTunnel link (wrong preamble)");
                }
                reader.AdvanceTo(buffer.GetPosition(4));
                return;
            }
            if (result.IsCompleted)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, "the peer closed the connection before the handshake");
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Reads the next handshake frame: <paramref name="expected"/> or a GoAway; anything else is HandshakeFailed.</summary>
    private static Task<(FrameType, ControlMessage)> ReadControlAsync(PipeReader reader, CancellationToken cancellationToken, FrameType expected) =>
        ReadControlAsync(reader, cancellationToken, expected, expected);

    /// <summary>Reads the next handshake frame: one of two expected types, or a GoAway; anything else is HandshakeFailed.</summary>
    private static async Task<(FrameType, ControlMessage)> ReadControlAsync(PipeReader reader, CancellationToken cancellationToken, FrameType expected, FrameType orElse)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (FrameCodec.TryReadFrame(ref buffer, 16 * 1024, out var header, out var payload))
            {
                if (header.Type != expected && header.Type != orElse && header.Type != FrameType.GoAway)
                {
                    reader.AdvanceTo(buffer.Start);
                    throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, $"expected {(expected == orElse ? expected : $"{expected} or {orElse}")}, got {header.Type}");
                }
                var message = ControlCodec.Read(header.Type, payload);
                reader.AdvanceTo(buffer.Start);
                return (header.Type, message);
            }
            if (result.IsCompleted)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, "the peer closed the connection during the handshake");
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

}

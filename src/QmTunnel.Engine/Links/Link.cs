using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// One link: a TCP connection between two adjacent qmTunnel servers carrying many <see cref="MuxStream"/>s.
/// One reader loop parses frames and dispatches them; one writer loop drains a queue of frames into the socket
/// with gathered sends. It does not dial, retry or resume (see <see cref="LinkConnector"/>); it knows nothing
/// of tunnels, only of streams and of a handler for streams the peer opens.
/// </summary>
public sealed partial class Link : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Stream? _tls;
    private readonly PipeReader _reader;
    private readonly Channel<OutFrame> _out = Channel.CreateUnbounded<OutFrame>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly ConcurrentDictionary<uint, MuxStream> _streams = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _logger;
    private readonly bool _isDialer;
    private uint _nextStreamId;
    private long _bytesSent, _bytesReceived;
    private Task? _readLoop, _writeLoop;
    private int _closeStarted;
    private readonly ConcurrentDictionary<long, TaskCompletionSource<TimeSpan>> _pings = new();

    private Link(Socket socket, Stream? tls, PipeReader reader, LinkOptions options, HelloMessage peer, bool isDialer, TimeSpan handshakeRtt, ILogger logger)
    {
        _socket = socket;
        _tls = tls;
        _reader = reader;
        Options = options;
        Peer = peer;
        _isDialer = isDialer;
        _nextStreamId = isDialer ? 1u : 2u;
        HandshakeRoundTrip = handshakeRtt;
        LastRoundTrip = handshakeRtt;
        _logger = logger;
        RemoteEndPoint = socket.RemoteEndPoint?.ToString() ?? "?";
        _streamsEmptySince = options.Time.GetTimestamp();
    }

    public LinkOptions Options { get; }
    /// <summary>On an accepted link: the user the dialer logged in as, with its group (null when no login was asked).</summary>
    public Security.SecurityPrincipal? Principal { get; private init; }
    /// <summary>The user this link is logged in as (either side), or null.</summary>
    public string? User { get; private init; }
    /// <summary>The group of <see cref="User"/>, or null.</summary>
    public string? Group { get; private init; }
    /// <summary>The peer's Hello: its id, name and limits.</summary>
    public HelloMessage Peer { get; }
    public string RemoteEndPoint { get; }
    /// <summary>True when the link runs inside TLS.</summary>
    public bool IsEncrypted => _tls is not null;
    /// <summary>SHA-256 thumbprint of the peer's TLS certificate; null on a plain link or when it sent none.</summary>
    public string? PeerCertificateThumbprint =>
        (_tls as SslStream)?.RemoteCertificate is { } c ? Security.ServerCertificate.Thumbprint(c as System.Security.Cryptography.X509Certificates.X509Certificate2 ?? new System.Security.Cryptography.X509Certificates.X509Certificate2(c)) : null;

    /// <summary>The TLS cipher suite negotiated, e.g. TLS_AES_128_GCM_SHA256; null on a plain link.</summary>
    public string? TlsCipherSuite => (_tls as SslStream)?.NegotiatedCipherSuite.ToString();
    public TimeSpan HandshakeRoundTrip { get; }
    public long BytesSent => Interlocked.Read(ref _bytesSent);
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);
    public int StreamCount => _streams.Count;
    public bool IsClosed => _closed.Task.IsCompleted || _closing.IsCancellationRequested;
    /// <summary>Completes when the link is gone (either side closed it or it failed).</summary>
    public Task Completion => _closed.Task;
    /// <summary>Why the link closed, when it closed for a reason.</summary>
    public string? CloseReason { get; private set; }

    /// <summary>
    /// Called for each stream the peer opens. The handler owns the stream from then on; when its task ends after the
    /// stream's Fin was sent, the link drops what the peer still sends on it and forgets it.
    /// </summary>
    public Func<MuxStream, OpenMessage, Task>? StreamOpened { get; set; }

    /// <summary>Raised once when a protocol error closes the link.</summary>
    public event Action<ProtocolException>? ProtocolError;

    // ---------------- handshake ----------------

    /// <summary>
    /// Dialer side: preamble + Hello (+ AuthStart when <paramref name="login"/> is given, in the same write), waits for
    /// the peer's Hello, then completes the login (<see cref="LinkLogin"/>). Throws <see cref="ProtocolException"/>
    /// (AuthenticationFailed when the server refused the login), <see cref="Management.QmTunnelException"/> (a bad server
    /// signature or challenge, stale keys) or IO errors. <paramref name="channelBinding"/>: see
    /// <see cref="Security.PasswordChallenge.TlsServerEndPoint"/> (empty on a plain link).
    /// </summary>
    public static async Task<Link> HandshakeAsDialerAsync(Socket socket, LinkOptions options, ILogger logger, CancellationToken cancellationToken,
        Stream? tls = null, LinkLogin? login = null, byte[]? channelBinding = null, string? server = null)
    {
        var stream = tls ?? new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        var hello = new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow);
        var started = Stopwatch.GetTimestamp();
        var clientNonce = login?.Method == AuthMethod.Password ? Security.PasswordChallenge.NewNonce() : [];
        var first = BuildHandshake(preamble: true, hello);
        if (login is not null)
        {
            first = [.. first, .. BuildHandshake(preamble: false, new AuthStartMessage(login.Method, login.User, clientNonce))];
        }
        await WriteRawAsync(socket, tls, first, timeout.Token).ConfigureAwait(false);
        var (type, message) = await ReadControlAsync(reader, timeout.Token, FrameType.Hello).ConfigureAwait(false);
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
        AuthOkMessage? ok = null;
        if (login is not null)
        {
            ok = await LogInAsync(socket, tls, reader, login, clientNonce, channelBinding ?? [], server ?? socket.RemoteEndPoint?.ToString() ?? "?", timeout.Token).ConfigureAwait(false);
        }
        var link = new Link(socket, tls, reader, options, peer, isDialer: true, rtt, logger)
        {
            User = ok?.User,
            Group = ok?.Group,
        };
        return link;
    }

    /// <summary>
    /// Acceptor side: reads the preamble and the dialer's Hello, picks the highest common version, answers. On no
    /// common version it answers GoAway(UnsupportedVersion) and throws.
    /// With an <paramref name="authenticator"/>, the dialer must then log in (AuthStart...) before the link is up; a
    /// refused login is answered with GoAway(AuthenticationFailed) and thrown as a ProtocolException with that code.
    /// </summary>
    public static async Task<Link> HandshakeAsAcceptorAsync(Socket socket, LinkOptions options, ILogger logger, CancellationToken cancellationToken, Stream? tls = null, string? refusePlain = null,
        ILinkAuthenticator? authenticator = null, X509Certificate2? clientCertificate = null, byte[]? channelBinding = null)
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
        var answer = new HelloMessage((ushort)version, (ushort)version, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow);
        await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, answer), timeout.Token).ConfigureAwait(false);
        LoginResult? login = null;
        if (authenticator is not null)
        {
            login = await AcceptLoginAsync(socket, tls, reader, authenticator, clientCertificate, channelBinding ?? [], timeout.Token).ConfigureAwait(false);
        }
        return new Link(socket, tls, LinkReader(reader, stream), options, peer, isDialer: false, TimeSpan.Zero, logger)
        {
            Principal = login?.Principal,
            User = login?.Principal.User.Name,
            Group = login?.Principal.Group.Name,
        };
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
    private static async Task<(FrameType, ControlMessage)> ReadControlAsync(PipeReader reader, CancellationToken cancellationToken, FrameType expected)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (FrameCodec.TryReadFrame(ref buffer, 16 * 1024, out var header, out var payload))
            {
                if (header.Type != expected && header.Type != FrameType.GoAway)
                {
                    reader.AdvanceTo(buffer.Start);
                    throw new ProtocolException(ProtocolErrorCode.HandshakeFailed, $"expected {expected}, got {header.Type}");
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

    // ---------------- running ----------------

    /// <summary>Starts the reader and writer loops. Call once, after setting <see cref="StreamOpened"/>.</summary>
    public void Start()
    {
        _writeLoop = Task.Run(WriteLoopAsync);
        _readLoop = Task.Run(ReadLoopAsync);
        RefreshRoundTrip(TimeSpan.Zero);
    }

    /// <summary>Opens a stream to the peer. Data may be sent at once (the peer buffers it within the window).</summary>
    public MuxStream OpenStream(OpenMessage open, TrafficCounters counters, int receiveWindow)
    {
        if (IsClosed)
        {
            throw new StreamResetException(ProtocolErrorCode.LinkLost, $"the link to {RemoteEndPoint} is closed{(CloseReason is null ? "" : ": " + CloseReason)}");
        }
        // The peer requires rising ids: allocate and queue the Open under one lock so they reach the wire in order.
        var window = Math.Max(receiveWindow, Options.InitialWindow);
        MuxStream stream;
        lock (_streams)
        {
            var id = _nextStreamId;
            _nextStreamId += 2;
            // The peer may send us Options.InitialWindow at first (announced in our Hello); a larger buffer for this
            // stream is granted with a WindowUpdate right behind the Open. We may send Peer.InitialWindow at first.
            stream = new MuxStream(this, id, window, Peer.InitialWindow, counters);
            _streams[id] = stream;
            EnqueueControl(id, open);
        }
        if (window > Options.InitialWindow)
        {
            EnqueueWindowUpdate(stream.Id, window - Options.InitialWindow);
        }
        return stream;
    }
}

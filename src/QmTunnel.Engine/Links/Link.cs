using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// One link session between two adjacent qmTunnel servers, carrying many <see cref="MuxStream"/>s. The session owns
/// what must outlive a connection: its id, its streams and their credit, the numbered send queue and the frames the
/// peer has not acknowledged yet. The connection under it is a <see cref="LinkTransport"/> (socket, TLS, reader),
/// which can die and be replaced while the session lives (<see cref="State"/> Resuming); a session that cannot get one
/// back within its failure tolerance closes its streams with LinkSessionExpired. It does not dial (the
/// <see cref="LinkPool"/> gives it a <see cref="Reconnect"/> function) and knows nothing of tunnels, only of streams
/// and of a handler for streams the peer opens.
/// </summary>
public sealed partial class Link : IAsyncDisposable
{
    private readonly Channel<OutFrame> _out = Channel.CreateUnbounded<OutFrame>(new UnboundedChannelOptions { SingleReader = false, AllowSynchronousContinuations = true });
    private readonly ConcurrentDictionary<uint, MuxStream> _streams = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _logger;
    private readonly bool _isDialer;
    private uint _nextStreamId;
    private long _bytesSent, _bytesReceived;
    private int _closeStarted;
    private readonly ConcurrentDictionary<long, TaskCompletionSource<TimeSpan>> _pings = new();

    private Link(LinkTransport transport, LinkOptions options, HelloMessage peer, bool isDialer, TimeSpan handshakeRtt, ILogger logger, LinkSessionSettings session)
    {
        _transport = transport;
        Options = options;
        Peer = peer;
        _isDialer = isDialer;
        _nextStreamId = isDialer ? 1u : 2u;
        HandshakeRoundTrip = handshakeRtt;
        LastRoundTrip = handshakeRtt;
        _logger = logger;
        Session = session;
        RemoteEndPoint = transport.RemoteEndPoint;
        IsEncrypted = transport.IsEncrypted;
        PeerCertificateThumbprint = transport.PeerCertificateThumbprint;
        TlsCipherSuite = transport.Tls?.NegotiatedCipherSuite.ToString();
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
    /// <summary>The peer's address on the connection now (host:port); a resumed session takes the new one's.</summary>
    public string RemoteEndPoint { get; private set; }
    /// <summary>True when the link runs inside TLS.</summary>
    public bool IsEncrypted { get; }
    /// <summary>SHA-256 thumbprint of the peer's TLS certificate; null on a plain link or when it sent none.</summary>
    public string? PeerCertificateThumbprint { get; }
    /// <summary>The TLS cipher suite negotiated, e.g. TLS_AES_128_GCM_SHA256; null on a plain link.</summary>
    public string? TlsCipherSuite { get; }
    public TimeSpan HandshakeRoundTrip { get; }
    public long BytesSent => Interlocked.Read(ref _bytesSent);
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);
    public int StreamCount => _streams.Count;
    /// <summary>True once the session ended (not while it waits for a new connection).</summary>
    public bool IsClosed => _closed.Task.IsCompleted || _closing.IsCancellationRequested;
    /// <summary>Completes when the session is gone (either side closed it, it failed, or it expired).</summary>
    public Task Completion => _closed.Task;
    /// <summary>Why the link closed, when it closed for a reason.</summary>
    public string? CloseReason { get; private set; }
    /// <summary>
    /// What the streams of the ended link were reset with: LinkLost, LinkSessionExpired, or LinkLimit when the peer
    /// refused the link over its MaxLinks. None while the link runs.
    /// </summary>
    public ProtocolErrorCode CloseCode { get; private set; }

    /// <summary>
    /// Called for each stream the peer opens. The handler owns the stream from then on; when its task ends after the
    /// stream's Fin was sent, the link drops what the peer still sends on it and forgets it.
    /// </summary>
    public Func<MuxStream, OpenMessage, Task>? StreamOpened { get; set; }

    /// <summary>Raised once when a protocol error closes the link.</summary>
    public event Action<ProtocolException>? ProtocolError;

    /// <summary>Starts the loops on the first connection. Call once, after setting <see cref="StreamOpened"/>.</summary>
    public void Start()
    {
        var transport = _transport ?? throw new InvalidOperationException("the link has no connection");
        RunTransport(transport, []);
        StartHeartbeat();
        RefreshRoundTrip(TimeSpan.Zero);
    }

    /// <summary>Opens a stream to the peer. Data may be sent at once (the peer buffers it within the window).</summary>
    public MuxStream OpenStream(OpenMessage open, TrafficCounters counters, int receiveWindow) => OpenStream(open, counters, receiveWindow, null);

    /// <summary>
    /// As above; <paramref name="created"/> runs with the new stream before its Open is queued (a Bind registers itself
    /// there, so no Reverse stream naming it can arrive first).
    /// </summary>
    public MuxStream OpenStream(OpenMessage open, TrafficCounters counters, int receiveWindow, Action<MuxStream>? created)
    {
        if (IsClosed)
        {
            throw new StreamResetException(CloseCode == ProtocolErrorCode.LinkLimit ? ProtocolErrorCode.LinkLimit : ProtocolErrorCode.LinkLost,
                $"the link to {RemoteEndPoint} is closed{(CloseReason is null ? "" : ": " + CloseReason)}");
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
            created?.Invoke(stream);
            EnqueueControl(id, open);
        }
        if (window > Options.InitialWindow)
        {
            EnqueueWindowUpdate(stream.Id, window - Options.InitialWindow);
        }
        return stream;
    }

    /// <summary>Queues a GoAway behind what is queued, stops the queue and waits (1 s at most) for the writer to send it.</summary>
    private async Task SendGoAwayAndFlushAsync(ProtocolErrorCode code, string reason)
    {
        EnqueueControl(0, new GoAwayMessage(code, reason.Length > 1000 ? reason[..1000] : reason));
        _out.Writer.TryComplete();
        if (_transport?.WriteLoop is { } writing)
        {
            await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        }
    }

    /// <summary>Closes the link politely: GoAway, then the connection. Streams still open are reset with LinkLost.</summary>
    public async Task CloseAsync(ProtocolErrorCode code, string reason)
    {
        if (!IsClosed)
        {
            CloseReason ??= reason;
            EnqueueControl(0, new GoAwayMessage(code, reason));
            _out.Writer.TryComplete();
            if (_transport?.WriteLoop is { } writing)
            {
                await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
            }
        }
        Teardown(reason);
        await _closed.Task.ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => new(CloseAsync(ProtocolErrorCode.Shutdown, "the server is closing the link"));

    /// <summary>Ends the session: streams reset with <paramref name="code"/>, the connection closed, nothing kept.</summary>
    private void Teardown(string reason, ProtocolErrorCode code = ProtocolErrorCode.LinkLost)
    {
        if (Interlocked.Exchange(ref _closeStarted, 1) != 0)
        {
            return;
        }
        CloseReason ??= reason;
        CloseCode = code;
        _closing.Cancel();
        _out.Writer.TryComplete();
        StopSessionTimers();
        foreach (var stream in _streams.Values)
        {
            stream.OnReset(code, $"the link to {RemoteEndPoint} closed: {CloseReason}");
        }
        _streams.Clear();
        SignalRoom(); // senders waiting for room see the link closed
        foreach (var ping in _pings.Values)
        {
            ping.TrySetException(new IOException($"the link to {RemoteEndPoint} closed: {CloseReason}"));
        }
        LinkTransport? current;
        lock (_stateLock)
        {
            current = _transport;
            _transport = null;
        }
        if (current is null)
        {
            DrainQueue(); // no writer runs: nobody else returns the frames never written
        }
        else
        {
            current.Abort(); // its writer returns them as it ends
        }
        ReleaseRetained();
        LinkLog.Closed(_logger, RemoteEndPoint, CloseReason);
        _closed.TrySetResult();
    }
}

internal static partial class LinkLog
{
    // Event ids: Diagnostics/EventIds.cs (links, 100-199).
    [LoggerMessage(EventId = EventIds.LinkProtocolViolation, Level = LogLevel.Warning, Message = "Link {Peer}: protocol error {Code}: {Detail}; link closed")]
    public static partial void ProtocolViolation(ILogger logger, string peer, ProtocolErrorCode code, string detail);

    [LoggerMessage(EventId = EventIds.StreamHandlerFailed, Level = LogLevel.Error, Message = "Link {Peer}: handler of stream {StreamId} failed")]
    public static partial void StreamHandlerFailed(ILogger logger, uint streamId, string peer, Exception exception);

    [LoggerMessage(EventId = EventIds.LinkClosed, Level = LogLevel.Information, Message = "Link {Peer} closed: {Reason}")]
    public static partial void Closed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = EventIds.LinkUp, Level = LogLevel.Information, Message = "Link {Peer} up (peer {PeerName}, {Rtt} ms handshake)")]
    public static partial void Up(ILogger logger, string peer, string peerName, double rtt);
}

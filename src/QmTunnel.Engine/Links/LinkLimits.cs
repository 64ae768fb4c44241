using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Limits of links that an administrator may change while they run (Set-QmTunnelServerConfig), and the server-wide
/// counts they bound (docs/security.md, "Limits"). One instance is shared by every link of a server, accepted and
/// dialed, so a change applies to all of them at once: streams per link (each link counts its own), link sessions
/// accepted (<see cref="MaxLinks"/>, asked by the acceptor through <see cref="TryAdmitLink"/>), and the bytes buffered
/// in all send queues together (<see cref="MaxBufferedBytes"/>: every byte a link counts in its queue is counted here
/// too, and a Data reservation takes its room from here as well). It refuses nothing by itself and logs nothing: the
/// acceptor and the links do, once per episode (<see cref="StartLinkLimitEpisode"/>, <see cref="StartBufferEpisode"/>).
/// </summary>
public sealed class LinkLimits
{
    /// <summary>Default of <see cref="MaxStreams"/>.</summary>
    public const int DefaultMaxStreams = 1024;

    /// <summary>Default of <see cref="MaxLinks"/>.</summary>
    public const int DefaultMaxLinks = 1000;

    /// <summary>Default of <see cref="MaxBufferedBytes"/>: 512 MiB.</summary>
    public const long DefaultMaxBufferedBytes = 512L * 1024 * 1024;

    /// <summary>What a Data frame costs in the count beyond its payload: its header and <see cref="Link.FrameOverhead"/>.</summary>
    private const int FrameExtra = FrameHeader.Size + Link.FrameOverhead;

    private volatile int _maxStreams = DefaultMaxStreams;
    private volatile int _maxLinks = DefaultMaxLinks;
    private volatile bool _acceptCompression = true;
    private long _maxBufferedBytes = DefaultMaxBufferedBytes;
    private int _links, _linkLimitEpisode, _bufferEpisode;
    private long _linksRefused, _streamsRefused, _buffered, _bufferedPeak, _bufferWaits;
    private TaskCompletionSource? _bufferWaiter;
    private readonly Lock _bufferLock = new();

    /// <summary>Streams the peer may have open at once on one link; an Open over it is answered Reset(StreamLimit).</summary>
    public int MaxStreams
    {
        get => _maxStreams;
        set => _maxStreams = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "MaxStreams must be positive.");
    }

    /// <summary>
    /// Link sessions accepted at once (those waiting to be resumed included: they hold memory); one more is refused right
    /// after its login with GoAway(LinkLimit). A Resume of a session held here is never refused by it.
    /// </summary>
    public int MaxLinks
    {
        get => _maxLinks;
        set => _maxLinks = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "MaxLinks must be positive.");
    }

    /// <summary>
    /// Whether this side, as the acceptor, agrees to compress a link a dialer asks to (docs/protocol.md, "Compression"),
    /// read in each accept handshake: off, every link accepted from then on is uncompressed (the dialer is answered None
    /// and carries on uncompressed); links up, and link sessions resumed later, keep what they agreed.
    /// </summary>
    public bool AcceptCompression
    {
        get => _acceptCompression;
        set => _acceptCompression = value;
    }

    /// <summary>
    /// Bytes the send queues of all links may hold together (queued, reserved for Data, written and kept until
    /// acknowledged; each frame with its header and overhead). Data waits while the total is at it; control frames are
    /// never refused. Raising it lets waiting senders go at once.
    /// </summary>
    public long MaxBufferedBytes
    {
        get => Interlocked.Read(ref _maxBufferedBytes);
        set
        {
            Interlocked.Exchange(ref _maxBufferedBytes, value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "MaxBufferedBytes must be positive."));
            SignalBuffer();
        }
    }

    /// <summary>Link sessions accepted now (admitted by <see cref="TryAdmitLink"/> and not ended).</summary>
    public int Links => Volatile.Read(ref _links);

    /// <summary>New link sessions refused because <see cref="MaxLinks"/> were held.</summary>
    public long LinksRefused => Interlocked.Read(ref _linksRefused);

    /// <summary>Streams refused on any link because the peer had <see cref="MaxStreams"/> open on it.</summary>
    public long StreamsRefused => Interlocked.Read(ref _streamsRefused);

    /// <summary>Bytes counted in the send queues of all links now.</summary>
    public long BufferedBytes => Interlocked.Read(ref _buffered);

    /// <summary>The most <see cref="BufferedBytes"/> ever held.</summary>
    public long BufferedBytesPeak => Interlocked.Read(ref _bufferedPeak);

    /// <summary>Times a sender of Data had to wait because all links together held <see cref="MaxBufferedBytes"/>.</summary>
    public long BufferWaits => Interlocked.Read(ref _bufferWaits);

    // ---------------- links ----------------

    /// <summary>
    /// Counts a new link session, or refuses it (false, nothing counted) when <see cref="MaxLinks"/> are held and the
    /// link is not <paramref name="exempt"/> (an administrator's: counted, never refused). Call <see cref="LinkEnded"/>
    /// once when an admitted link ends.
    /// </summary>
    internal bool TryAdmitLink(bool exempt)
    {
        var now = Interlocked.Increment(ref _links);
        if (now > _maxLinks && !exempt)
        {
            Interlocked.Decrement(ref _links);
            Interlocked.Increment(ref _linksRefused);
            return false;
        }
        if (now <= _maxLinks && Volatile.Read(ref _linkLimitEpisode) != 0)
        {
            Volatile.Write(ref _linkLimitEpisode, 0); // below the limit again: the next refusal is logged
        }
        return true;
    }

    /// <summary>An admitted link session ended.</summary>
    internal void LinkEnded() => Interlocked.Decrement(ref _links);

    /// <summary>True for the first refusal since links were last admitted under the limit: the one to log.</summary>
    internal bool StartLinkLimitEpisode() => Interlocked.Exchange(ref _linkLimitEpisode, 1) == 0;

    /// <summary>A link refused an Open over <see cref="MaxStreams"/>.</summary>
    internal void CountStreamRefused() => Interlocked.Increment(ref _streamsRefused);

    // ---------------- buffered bytes ----------------

    /// <summary>
    /// Adds to (or, negative, takes from) the server's total, with every change of a link's queue count; taking wakes
    /// whoever waits for the budget. One Interlocked.Add, and a read when nobody waits.
    /// </summary>
    internal void AddBuffered(long delta)
    {
        var now = Interlocked.Add(ref _buffered, delta);
        if (delta > 0)
        {
            UpdatePeak(now);
        }
        else if (Volatile.Read(ref _bufferWaiter) is not null)
        {
            SignalBuffer();
        }
    }

    /// <summary>
    /// Takes room for one Data frame from the budget: <paramref name="payload"/> bytes, cut down to the room left but
    /// not below <paramref name="minimum"/>. False, and nothing taken, when less than that is left (unless nothing at
    /// all is buffered: one frame always goes). On true, <paramref name="payload"/> is what was taken (+ header and
    /// overhead); the caller counts it in its link's queue, or gives it back with <see cref="AddBuffered"/>.
    /// </summary>
    internal bool TryTakeData(int minimum, ref int payload)
    {
        var max = Interlocked.Read(ref _maxBufferedBytes);
        while (true)
        {
            var total = Interlocked.Read(ref _buffered);
            var room = max - total - FrameExtra;
            if (room < minimum && total > 0)
            {
                return false;
            }
            var take = (int)Math.Min(payload, Math.Max(room, minimum));
            if (Interlocked.CompareExchange(ref _buffered, total + take + FrameExtra, total) == total)
            {
                UpdatePeak(total + take + FrameExtra);
                if (total <= max / 2 && Volatile.Read(ref _bufferEpisode) != 0)
                {
                    Volatile.Write(ref _bufferEpisode, 0); // the total fell to half the budget: the next wait is logged
                }
                payload = take;
                return true;
            }
        }
    }

    /// <summary>
    /// A sender found the budget full and waits: counted; true for the first wait of an episode (the one to log), which
    /// ends when a reservation finds the total at half the budget or less.
    /// </summary>
    internal bool StartBufferWait()
    {
        Interlocked.Increment(ref _bufferWaits);
        return Interlocked.Exchange(ref _bufferEpisode, 1) == 0;
    }

    /// <summary>A task that completes at the next drop of the total (or a raise of the budget). Register, then look again.</summary>
    internal Task BufferChanged()
    {
        lock (_bufferLock)
        {
            return (_bufferWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    private void SignalBuffer()
    {
        TaskCompletionSource? waiter;
        lock (_bufferLock)
        {
            waiter = _bufferWaiter;
            _bufferWaiter = null;
        }
        waiter?.TrySetResult();
    }

    private void UpdatePeak(long now)
    {
        var peak = Interlocked.Read(ref _bufferedPeak);
        while (now > peak)
        {
            var seen = Interlocked.CompareExchange(ref _bufferedPeak, now, peak);
            if (seen == peak)
            {
                return;
            }
            peak = seen;
        }
    }
}

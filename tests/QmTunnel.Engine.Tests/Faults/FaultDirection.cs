namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// One direction of a <see cref="FaultProxy"/> (client → target or back), shared by all its connections: the added
/// one-way latency, the rate limit (a token bucket for the whole direction, like a slow line that all connections
/// share), and counters. Both settings may change at any time; a delay applies to bytes read from then on, and order
/// is kept whatever the changes. It does not reorder, duplicate or corrupt bytes.
/// </summary>
public sealed class FaultDirection
{
    /// <summary>The bucket holds this much of a second's worth of bytes, and a send takes at most that much at once.</summary>
    private const int BurstDivisor = 20;

    private readonly TimeProvider _time;
    private readonly Lock _bucket = new();
    private long _delayTicks;
    private long _bytesPerSecond;
    private double _tokens;
    private long _stamp;
    private long _received;
    private long _forwarded;
    private long _discarded;
    private int _waiting;

    internal FaultDirection(TimeProvider time)
    {
        _time = time;
    }

    /// <summary>One-way latency added to every byte (0 by default). Not negative.</summary>
    public TimeSpan Delay
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _delayTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _delayTicks, value.Ticks);
        }
    }

    /// <summary>The most bytes per second this direction carries, summed over its connections; 0 (the default) = unlimited.</summary>
    public long BytesPerSecond
    {
        get => Interlocked.Read(ref _bytesPerSecond);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (_bucket)
            {
                _bytesPerSecond = value;
                _tokens = Burst(value);
                _stamp = _time.GetTimestamp();
            }
        }
    }

    /// <summary>Bytes read from the sending side (forwarded, discarded, or still queued).</summary>
    public long Received => Interlocked.Read(ref _received);

    /// <summary>Bytes sent on to the receiving side.</summary>
    public long Forwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Bytes read and thrown away because their connection was black-holed.</summary>
    public long Discarded => Interlocked.Read(ref _discarded);

    /// <summary>
    /// Connections of this direction waiting on the clock now (a delay or the rate). With a fake clock: once this is up,
    /// the wait has its timer, and advancing the clock releases it.
    /// </summary>
    public int Waiting => Volatile.Read(ref _waiting);

    internal void AddReceived(int n) => Interlocked.Add(ref _received, n);

    internal void AddForwarded(int n) => Interlocked.Add(ref _forwarded, n);

    internal void AddDiscarded(int n) => Interlocked.Add(ref _discarded, n);

    /// <summary>When bytes read now are due at the other side (a timestamp of the proxy's clock).</summary>
    internal long DueTimestamp()
    {
        var delay = Interlocked.Read(ref _delayTicks);
        return _time.GetTimestamp() + (long)(delay * (double)_time.TimestampFrequency / TimeSpan.TicksPerSecond);
    }

    /// <summary>The most bytes one send may take under the current rate (all of <paramref name="n"/> when unlimited).</summary>
    internal int Piece(int n)
    {
        var rate = BytesPerSecond;
        return rate == 0 ? n : (int)Math.Min(n, Burst(rate));
    }

    /// <summary>Waits until <paramref name="due"/> (a timestamp of the proxy's clock).</summary>
    internal async ValueTask WaitUntilAsync(long due, CancellationToken cancellationToken)
    {
        while (true)
        {
            var left = due - _time.GetTimestamp();
            if (left <= 0)
            {
                return;
            }
            await WaitAsync(TimeSpan.FromSeconds(left / (double)_time.TimestampFrequency), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Takes <paramref name="n"/> bytes from the bucket, waiting as long as the rate asks. The bucket may go into debt
    /// (the wait pays it), so senders are served in the order they came.
    /// </summary>
    internal async ValueTask TakeAsync(int n, CancellationToken cancellationToken)
    {
        TimeSpan wait;
        lock (_bucket)
        {
            if (_bytesPerSecond == 0)
            {
                return;
            }
            var now = _time.GetTimestamp();
            _tokens = Math.Min(Burst(_bytesPerSecond), _tokens + (now - _stamp) * (double)_bytesPerSecond / _time.TimestampFrequency);
            _stamp = now;
            _tokens -= n;
            if (_tokens >= 0)
            {
                return;
            }
            wait = TimeSpan.FromSeconds(-_tokens / _bytesPerSecond);
        }
        await WaitAsync(wait, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask WaitAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        var delay = Task.Delay(wait, _time, cancellationToken); // its timer exists from here
        Interlocked.Increment(ref _waiting);
        try
        {
            await delay.ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    private static long Burst(long rate) => Math.Max(1, rate / BurstDivisor);
}

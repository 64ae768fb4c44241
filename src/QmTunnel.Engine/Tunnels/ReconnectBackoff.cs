namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The delays between attempts to bring a tunnel's chain up again (permanent tunnels): the original qmTunnel's reconnect
/// settings, 100 ms first, ×1.5 after each failure, at most 10 s, each delay moved by up to ±20 % at random so that
/// many tunnels cut by one outage do not all dial at the same instant; a tunnel makes its own from its first hop's
/// settings (<see cref="For"/>: New-QmTunnelHop -ReconnectInterval, -ReconnectMultiplier, -MaxReconnectInterval). It does not
/// wait (the caller waits on the engine's TimeProvider) and is not thread-safe (one per reconnect loop).
/// </summary>
internal sealed class ReconnectBackoff
{
    /// <summary>The first delay after a failure (the original's reconnect interval).</summary>
    public static readonly TimeSpan DefaultInitial = TimeSpan.FromMilliseconds(100);

    /// <summary>Each further delay is the last one times this (the original's reconnect multiplier).</summary>
    public const double DefaultMultiplier = 1.5;

    /// <summary>No delay is longer than this, before jitter (the original's reconnect maximum).</summary>
    public static readonly TimeSpan DefaultMaximum = TimeSpan.FromSeconds(10);

    /// <summary>Each delay is moved at random by up to this fraction of it, either way.</summary>
    public const double Jitter = 0.2;

    private readonly TimeSpan _initial, _maximum;
    private readonly double _multiplier;
    private readonly Random _random;
    private TimeSpan _next;

    /// <summary>A backoff from <paramref name="initial"/>, growing by <paramref name="multiplier"/> up to <paramref name="maximum"/>.</summary>
    public ReconnectBackoff(TimeSpan initial, double multiplier, TimeSpan maximum, Random? random = null)
    {
        _initial = _next = initial;
        _multiplier = multiplier;
        _maximum = maximum;
        _random = random ?? Random.Shared;
    }

    /// <summary>The backoff with the default (original) settings.</summary>
    public ReconnectBackoff(Random? random = null)
        : this(DefaultInitial, DefaultMultiplier, DefaultMaximum, random)
    {
    }

    /// <summary>The backoff of a hop's link timing.</summary>
    public static ReconnectBackoff For(Links.LinkTiming timing) => new(timing.ReconnectInterval, timing.ReconnectMultiplier, timing.MaxReconnectInterval);

    /// <summary>The longest delay <see cref="Next"/> can return: the maximum plus its jitter.</summary>
    public TimeSpan Longest => _maximum * (1 + Jitter);

    /// <summary>The delay before the next attempt; the one after it grows by the multiplier, up to the maximum.</summary>
    public TimeSpan Next()
    {
        var nominal = _next;
        _next = TimeSpan.FromTicks(Math.Min(_maximum.Ticks, (long)(nominal.Ticks * _multiplier)));
        return nominal * (1 + (Jitter * ((2 * _random.NextDouble()) - 1)));
    }

    /// <summary>After a success: the next failure waits the initial delay again.</summary>
    public void Reset() => _next = _initial;
}

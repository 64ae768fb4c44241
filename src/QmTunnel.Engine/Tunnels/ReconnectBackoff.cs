using QmTunnel.Engine.Links;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The delays between attempts to bring a tunnel's chain up again (permanent tunnels): the attempt count over a hop's
/// <see cref="LinkTiming"/>, whose <see cref="LinkTiming.ReconnectDelay"/> is the one backoff of the product (the
/// original's 100 ms, ×1.5, at most 10 s, ± jitter). It does not wait (the caller waits on the engine's TimeProvider)
/// and is not thread-safe (one per reconnect loop).
/// </summary>
internal sealed class ReconnectBackoff(LinkTiming timing, Random? random = null)
{
    /// <summary>Each delay is moved at random by up to this fraction of it, either way.</summary>
    public const double Jitter = LinkTiming.Jitter;

    private readonly Random _random = random ?? Random.Shared;
    private int _attempt;

    /// <summary>The backoff with the default (original) settings.</summary>
    public ReconnectBackoff(Random? random = null)
        : this(LinkTiming.Default, random)
    {
    }

    /// <summary>The backoff of a hop's link timing.</summary>
    public static ReconnectBackoff For(LinkTiming timing) => new(timing);

    /// <summary>The longest delay <see cref="Next"/> can return.</summary>
    public TimeSpan Longest => timing.MaxReconnectInterval;

    /// <summary>The delay before the next attempt; the one after it grows by the multiplier, up to the maximum.</summary>
    public TimeSpan Next() => timing.ReconnectDelay(_attempt = _attempt == int.MaxValue ? _attempt : _attempt + 1, _random);

    /// <summary>After a success: the next failure waits the initial delay again.</summary>
    public void Reset() => _attempt = 0;
}

using System.Collections.Concurrent;

namespace QmTunnel.Engine.Security;

/// <summary>
/// Slows password guessing per source address: after <see cref="FreeFailures"/> failed logins, each further attempt
/// from that address waits <see cref="BaseDelay"/> doubled per failure, up to <see cref="MaxDelay"/>, before it is
/// decided. A success clears the address; an address forgets its failures after <see cref="Forget"/> without one.
/// It does not block an address outright (that would let anyone lock out a shared NAT address).
/// </summary>
public sealed class LoginThrottle(TimeProvider time)
{
    public const int FreeFailures = 3;
    public static readonly TimeSpan BaseDelay = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan Forget = TimeSpan.FromMinutes(15);
    private const int MaxSources = 100_000;

    private readonly ConcurrentDictionary<string, Entry> _sources = new(StringComparer.Ordinal);

    private sealed record Entry(int Failures, DateTimeOffset LastFailure);

    /// <summary>Failed logins counted for <paramref name="source"/> now.</summary>
    public int Failures(string source) => Current(source)?.Failures ?? 0;

    /// <summary>How long the next attempt from <paramref name="source"/> waits before it is decided.</summary>
    public TimeSpan DelayFor(string source)
    {
        var failures = Failures(source);
        if (failures < FreeFailures)
        {
            return TimeSpan.Zero;
        }
        var exponent = Math.Min(failures - FreeFailures, 10);
        var delay = BaseDelay * (1 << exponent);
        return delay > MaxDelay ? MaxDelay : delay;
    }

    /// <summary>Counts a failure and returns the failures now counted for the source.</summary>
    public int RecordFailure(string source)
    {
        var now = time.GetUtcNow();
        if (_sources.Count >= MaxSources)
        {
            foreach (var stale in _sources.Where(p => now - p.Value.LastFailure > Forget).Select(p => p.Key).ToList())
            {
                _sources.TryRemove(stale, out _);
            }
        }
        var entry = _sources.AddOrUpdate(source, _ => new Entry(1, now),
            (_, e) => now - e.LastFailure > Forget ? new Entry(1, now) : new Entry(e.Failures + 1, now));
        return entry.Failures;
    }

    public void RecordSuccess(string source) => _sources.TryRemove(source, out _);

    private Entry? Current(string source)
    {
        if (!_sources.TryGetValue(source, out var entry))
        {
            return null;
        }
        return time.GetUtcNow() - entry.LastFailure > Forget ? null : entry;
    }
}

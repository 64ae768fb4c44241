using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Security;

/// <summary>
/// Slows password guessing, counted two ways: per source (an IPv4 address, or an IPv6 /64, which one host usually
/// owns whole) and per target user. After <see cref="FreeFailures"/> failures, each further attempt waits
/// <see cref="BaseDelay"/> doubled per failure, up to <see cref="MaxDelay"/>, before it is decided; the larger of the
/// two counts decides. Attempts are scheduled, not just delayed: an attempt made while others of the same source or
/// user are still in flight counts them as failures-to-be and is given the next free slot after theirs, so guesses sent
/// in parallel come no faster than guesses sent one after another. A success clears only the failures of the same
/// user from the same source (another user's success clears nothing); counts are forgotten
/// <see cref="Forget"/> after the last failure. It never blocks outright (that would let anyone lock out a user or a
/// shared NAT address), and it keeps at most <see cref="MaxEntries"/> sources and as many users.
/// </summary>
public sealed class LoginThrottle(TimeProvider time)
{
    public const int FreeFailures = 3;
    public static readonly TimeSpan BaseDelay = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan Forget = TimeSpan.FromMinutes(15);
    public const int MaxEntries = 100_000;
    /// <summary>Per source, the users whose failures a success of theirs can clear; more are counted but never cleared.</summary>
    private const int MaxUsersPerSource = 64;

    private readonly object _gate = new();
    private readonly Dictionary<string, Counter> _sources = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Counter> _users = new(StringComparer.Ordinal);

    private sealed class Counter
    {
        public int Failures;
        public int InFlight;
        public DateTimeOffset LastFailure;
        public DateTimeOffset NextSlot;
        /// <summary>Sources only: failures per user from this source (what that user's success clears).</summary>
        public Dictionary<string, int>? ByUser;
    }

    /// <summary>The key of a source address: the address for IPv4, the /64 prefix for IPv6, the text itself otherwise.</summary>
    public static string SourceKey(string source)
    {
        if (!IPAddress.TryParse(source, out var address))
        {
            return source;
        }
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return address.ToString();
        }
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }

    private static string UserKey(string user) => SecurityNames.Key(user);

    /// <summary>Failed logins counted for <paramref name="source"/> now (all users).</summary>
    public int SourceFailures(string source)
    {
        lock (_gate)
        {
            return Current(_sources, SourceKey(source))?.Failures ?? 0;
        }
    }

    /// <summary>Failed logins counted for <paramref name="user"/> now (all sources).</summary>
    public int UserFailures(string user)
    {
        lock (_gate)
        {
            return Current(_users, UserKey(user))?.Failures ?? 0;
        }
    }

    /// <summary>The wait before an attempt decided after <paramref name="failures"/> failures.</summary>
    public static TimeSpan DelayAfter(int failures)
    {
        if (failures < FreeFailures)
        {
            return TimeSpan.Zero;
        }
        var delay = BaseDelay * (1 << Math.Min(failures - FreeFailures, 10));
        return delay > MaxDelay ? MaxDelay : delay;
    }

    /// <summary>
    /// Starts a login attempt of <paramref name="user"/> from <paramref name="source"/>: waits for its slot (on the
    /// injected clock), then returns the attempt, which the caller ends with <see cref="Attempt.Failed"/> or
    /// <see cref="Attempt.Succeeded"/> (disposing it without either, e.g. when the peer left before sending a proof,
    /// counts no failure).
    /// </summary>
    public async Task<Attempt> BeginAsync(string source, string user, CancellationToken cancellationToken)
    {
        var attempt = Schedule(source, user, out var wait);
        if (wait > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(wait, time, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                attempt.Dispose();
                throw;
            }
        }
        return attempt;
    }

    /// <summary>Books the next slot of an attempt without waiting for it: <paramref name="wait"/> is how long until it (tests).</summary>
    internal Attempt Schedule(string source, string user, out TimeSpan wait) => Reserve(SourceKey(source), user.Length == 0 ? string.Empty : UserKey(user), out wait);

    private Attempt Reserve(string source, string user, out TimeSpan wait)
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            var bySource = Entry(_sources, source, now);
            // A login that names no user (a client certificate decides who it is) is counted per source only.
            var byUser = user.Length == 0 ? null : Entry(_users, user, now);
            // Attempts still in flight count as failures-to-be: parallel guesses are spaced like serial ones.
            var slot = now;
            foreach (var counter in new[] { bySource, byUser })
            {
                if (counter is null)
                {
                    continue;
                }
                var start = counter.NextSlot > now ? counter.NextSlot : now;
                var due = start + DelayAfter(counter.Failures + counter.InFlight);
                if (due > slot)
                {
                    slot = due;
                }
            }
            foreach (var counter in new[] { bySource, byUser })
            {
                if (counter is not null)
                {
                    counter.InFlight++;
                    counter.NextSlot = slot;
                }
            }
            wait = slot - now;
            return new Attempt(this, source, user);
        }
    }

    /// <summary>The counter of <paramref name="key"/>, made when missing; null when the table is full of live entries.</summary>
    private Counter? Entry(Dictionary<string, Counter> table, string key, DateTimeOffset now)
    {
        if (table.TryGetValue(key, out var counter))
        {
            if (counter.InFlight == 0 && now - counter.LastFailure > Forget && counter.Failures > 0)
            {
                counter.Failures = 0;
                counter.ByUser = null;
            }
            return counter;
        }
        if (table.Count >= MaxEntries)
        {
            foreach (var stale in table.Where(p => p.Value.InFlight == 0 && (p.Value.Failures == 0 || now - p.Value.LastFailure > Forget)).Select(p => p.Key).ToList())
            {
                table.Remove(stale);
            }
            if (table.Count >= MaxEntries)
            {
                return null;
            }
        }
        counter = new Counter();
        table[key] = counter;
        return counter;
    }

    private Counter? Current(Dictionary<string, Counter> table, string key) =>
        table.TryGetValue(key, out var counter) && (counter.InFlight > 0 || time.GetUtcNow() - counter.LastFailure <= Forget) ? counter : null;

    private void End(string source, string user, bool? succeeded)
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            _sources.TryGetValue(source, out var bySource);
            Counter? byUser = null;
            if (user.Length > 0)
            {
                _users.TryGetValue(user, out byUser);
            }
            foreach (var counter in new[] { bySource, byUser })
            {
                if (counter is not null && counter.InFlight > 0)
                {
                    counter.InFlight--;
                }
            }
            if (succeeded == false)
            {
                foreach (var counter in new[] { bySource, byUser })
                {
                    if (counter is not null)
                    {
                        counter.Failures++;
                        counter.LastFailure = now;
                    }
                }
                if (bySource is not null && user.Length > 0)
                {
                    bySource.ByUser ??= [];
                    if (bySource.ByUser.TryGetValue(user, out var n) || bySource.ByUser.Count < MaxUsersPerSource)
                    {
                        bySource.ByUser[user] = n + 1;
                    }
                }
            }
            else if (succeeded == true && bySource?.ByUser is { } pairs && pairs.Remove(user, out var cleared))
            {
                // Only this user's failures from this source: another user's guesses stay counted.
                bySource.Failures = Math.Max(0, bySource.Failures - cleared);
                if (byUser is not null)
                {
                    byUser.Failures = Math.Max(0, byUser.Failures - cleared);
                }
            }
            foreach (var (table, key, counter) in new[] { (_sources, source, bySource), (_users, user, byUser) })
            {
                if (counter is { InFlight: 0, Failures: 0 } && counter.NextSlot <= now)
                {
                    table.Remove(key);
                }
            }
        }
    }

    /// <summary>One login attempt in flight; see <see cref="BeginAsync"/>.</summary>
    public sealed class Attempt(LoginThrottle owner, string source, string user) : IDisposable
    {
        private int _ended;

        /// <summary>Counts a failure for the source and the user; returns the failures now counted for the source.</summary>
        public int Failed()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                owner.End(source, user, succeeded: false);
            }
            lock (owner._gate)
            {
                return owner._sources.TryGetValue(source, out var counter) ? counter.Failures : 0;
            }
        }

        /// <summary>Clears the failures of this user from this source (and only those).</summary>
        public void Succeeded()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                owner.End(source, user, succeeded: true);
            }
        }

        /// <summary>Ends an attempt that was neither a success nor a failure (no guess was made).</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                owner.End(source, user, succeeded: null);
            }
        }
    }
}

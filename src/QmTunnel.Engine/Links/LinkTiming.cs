using System.Globalization;

namespace QmTunnel.Engine.Links;

/// <summary>
/// The timing of the link to one hop, as New-QmTunnelHop sets it and the hop's address carries it
/// (<c>qmt://b:9200?heartbeat=5s&amp;receive-timeout=20s</c>, see <see cref="Endpoints.EndpointUri.Timing"/>): how often the
/// dialing side sends a heartbeat, when it calls a silent link dead, how long a dial may take, and how it backs off
/// between reconnect attempts. The defaults are the original qmTunnel's. <see cref="Validate()"/> lists every problem at
/// once. It is data and arithmetic only: it sends no heartbeat, runs no timer and dials nothing (the link layer does,
/// with these values).
/// </summary>
public sealed record LinkTiming
{
    /// <summary>How far a reconnect delay is moved at random, either way: 0.2 = ±20 % (<see cref="ReconnectDelay"/>).</summary>
    public const double Jitter = 0.2;

    /// <summary>The most any duration here may be: 1 hour.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromHours(1);

    /// <summary>The shortest heartbeat interval and receive timeout that are not off: 100 ms.</summary>
    public static readonly TimeSpan MinHeartbeat = TimeSpan.FromMilliseconds(100);

    /// <summary>The range of <see cref="ConnectTimeout"/>: 100 ms to 5 minutes.</summary>
    public static readonly TimeSpan MinConnectTimeout = TimeSpan.FromMilliseconds(100), MaxConnectTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The range of <see cref="ReconnectInterval"/>: 10 ms to 1 minute.</summary>
    public static readonly TimeSpan MinReconnectInterval = TimeSpan.FromMilliseconds(10), MaxReconnectIntervalStart = TimeSpan.FromMinutes(1);

    /// <summary>The range of <see cref="ReconnectMultiplier"/>: 1 (a constant interval) to 10.</summary>
    public const double MinMultiplier = 1.0, MaxMultiplier = 10.0;

    /// <summary>The original's settings: heartbeat 10 s, receive timeout 15 s, connect 10 s, reconnect 100 ms × 1.5 up to 10 s.</summary>
    public static LinkTiming Default { get; } = new();

    /// <summary>Send a heartbeat when nothing else was sent for this long (default 10 s); <see cref="TimeSpan.Zero"/>: no heartbeats.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Nothing received for this long means the link is dead (default 15 s; with heartbeats on, this detects a peer or a
    /// path that went silent). Longer than <see cref="HeartbeatInterval"/> when both are on. <see cref="TimeSpan.Zero"/>: off.
    /// </summary>
    public TimeSpan ReceiveTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The most a dial of this hop may take, TCP connect and handshakes (default 10 s).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The wait before the first reconnect attempt after a failure (default 100 ms).</summary>
    public TimeSpan ReconnectInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Each further attempt waits this many times longer than the one before (default 1.5; 1: always the same).</summary>
    public double ReconnectMultiplier { get; init; } = 1.5;

    /// <summary>The longest wait between reconnect attempts (default 10 s); at least <see cref="ReconnectInterval"/>.</summary>
    public TimeSpan MaxReconnectInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Every problem of these settings, each naming the setting (its property name), its range and the fix; empty when valid.</summary>
    public IReadOnlyList<string> Validate() => Validate(static property => property);

    /// <summary>
    /// Every problem of these settings; each names the setting as the caller's user wrote it: <paramref name="name"/> maps a
    /// property name (<c>HeartbeatInterval</c>) to its spelling there, e.g. <c>-HeartbeatInterval</c> for a cmdlet
    /// parameter or <c>heartbeat=</c> for an address option (a spelling that ends in '=' is followed by the value directly).
    /// </summary>
    public IReadOnlyList<string> Validate(Func<string, string> name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var problems = new List<string>();
        string Setting(string property, TimeSpan value)
        {
            var label = name(property);
            return label.EndsWith('=') ? label + FormatDuration(value) : $"{label} {FormatDuration(value)}";
        }
        void Check(string property, TimeSpan value, TimeSpan min, TimeSpan max, bool mayBeOff)
        {
            if (value < TimeSpan.Zero || value > max || (value < min && !(mayBeOff && value == TimeSpan.Zero)))
            {
                problems.Add($"{Setting(property, value)} is out of range: give {(mayBeOff ? "0 (off) or " : "")}{FormatDuration(min)} to {FormatDuration(max)}.");
            }
            else if (value.Ticks % TimeSpan.TicksPerMillisecond != 0)
            {
                problems.Add($"{Setting(property, value)} is not a whole number of milliseconds: give whole milliseconds, e.g. {FormatDuration(TimeSpan.FromMilliseconds(Math.Round(value.TotalMilliseconds)))}.");
            }
        }
        Check(nameof(HeartbeatInterval), HeartbeatInterval, MinHeartbeat, MaxDuration, mayBeOff: true);
        Check(nameof(ReceiveTimeout), ReceiveTimeout, MinHeartbeat, MaxDuration, mayBeOff: true);
        if (HeartbeatInterval > TimeSpan.Zero && ReceiveTimeout > TimeSpan.Zero && ReceiveTimeout <= HeartbeatInterval && HeartbeatInterval <= MaxDuration)
        {
            problems.Add($"{Setting(nameof(ReceiveTimeout), ReceiveTimeout)} is not longer than {Setting(nameof(HeartbeatInterval), HeartbeatInterval)}: " +
                "a quiet but healthy link would be called dead between two heartbeats. Give a receive timeout longer than the heartbeat interval " +
                "(the defaults are 15 s and 10 s), or 0 to turn it off.");
        }
        Check(nameof(ConnectTimeout), ConnectTimeout, MinConnectTimeout, MaxConnectTimeout, mayBeOff: false);
        Check(nameof(ReconnectInterval), ReconnectInterval, MinReconnectInterval, MaxReconnectIntervalStart, mayBeOff: false);
        if (double.IsNaN(ReconnectMultiplier) || ReconnectMultiplier < MinMultiplier || ReconnectMultiplier > MaxMultiplier)
        {
            var label = name(nameof(ReconnectMultiplier));
            var value = ReconnectMultiplier.ToString(CultureInfo.InvariantCulture);
            problems.Add($"{(label.EndsWith('=') ? label + value : label + " " + value)} is out of range: give 1 (always the same wait) to 10 (the default is 1.5).");
        }
        Check(nameof(MaxReconnectInterval), MaxReconnectInterval, MinReconnectInterval, MaxDuration, mayBeOff: false);
        if (MaxReconnectInterval < ReconnectInterval && MaxReconnectInterval >= MinReconnectInterval)
        {
            problems.Add($"{Setting(nameof(MaxReconnectInterval), MaxReconnectInterval)} is shorter than {Setting(nameof(ReconnectInterval), ReconnectInterval)}: " +
                "give a longest wait at least as long as the first one.");
        }
        return problems;
    }

    /// <summary>
    /// The wait before reconnect attempt <paramref name="attempt"/> (1 = the first after a failure) without jitter:
    /// <see cref="ReconnectInterval"/> × <see cref="ReconnectMultiplier"/>^(attempt − 1), at most <see cref="MaxReconnectInterval"/>.
    /// With the defaults: 100 ms, 150 ms, 225 ms, ... 10 s from the 13th attempt on.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="attempt"/> is less than 1.</exception>
    public TimeSpan ReconnectBackoff(int attempt)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var max = Math.Max(MaxReconnectInterval.TotalMilliseconds, ReconnectInterval.TotalMilliseconds);
        // In double milliseconds: a large attempt makes Pow infinite, and Min then gives the cap.
        var ms = Math.Min(ReconnectInterval.TotalMilliseconds * Math.Pow(Math.Max(ReconnectMultiplier, MinMultiplier), attempt - 1), max);
        return TimeSpan.FromMilliseconds(ms);
    }

    /// <summary>
    /// The wait before reconnect attempt <paramref name="attempt"/> (1 = the first after a failure):
    /// <see cref="ReconnectBackoff"/> moved by a uniform random ±20 % (<see cref="Jitter"/>; "proportional jitter"), so
    /// the hops of many tunnels that lost their links at the same moment do not dial again in step; never more than
    /// <see cref="MaxReconnectInterval"/> (at the cap the jitter only shortens the wait: 80 % to 100 % of it). It is a
    /// function of the attempt number, not of the last wait, so the jitter never adds up from one attempt to the next.
    /// </summary>
    /// <param name="attempt">1 for the first attempt after a failure, counting up while attempts fail; start again at 1 after a success.</param>
    /// <param name="random">The source of the jitter: <see cref="Random.Shared"/> (thread-safe), or a seeded one in tests.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="attempt"/> is less than 1.</exception>
    public TimeSpan ReconnectDelay(int attempt, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var backoff = ReconnectBackoff(attempt);
        var factor = 1 + Jitter * (2 * random.NextDouble() - 1);
        var max = MaxReconnectInterval > ReconnectInterval ? MaxReconnectInterval : ReconnectInterval;
        var ticks = Math.Min(backoff.Ticks * factor, max.Ticks);
        return TimeSpan.FromTicks((long)ticks);
    }

    /// <summary>
    /// A duration as the address writes it: a whole number and the largest unit that gives it exactly — <c>1h</c>,
    /// <c>2m</c>, <c>10s</c>, <c>150ms</c> — and <c>0</c> for zero (off). A value that is not whole milliseconds (which
    /// <see cref="Validate()"/> refuses) is written in milliseconds with its fraction, e.g. <c>1.5ms</c>.
    /// </summary>
    public static string FormatDuration(TimeSpan value)
    {
        if (value == TimeSpan.Zero)
        {
            return "0";
        }
        var ticks = value.Ticks;
        if (ticks % TimeSpan.TicksPerMillisecond != 0)
        {
            return value.TotalMilliseconds.ToString("0.####", CultureInfo.InvariantCulture) + "ms";
        }
        foreach (var (unit, size) in Units)
        {
            if (ticks % size == 0)
            {
                return (ticks / size).ToString(CultureInfo.InvariantCulture) + unit;
            }
        }
        return (ticks / TimeSpan.TicksPerMillisecond).ToString(CultureInfo.InvariantCulture) + "ms";
    }

    /// <summary>
    /// Reads a duration as the address writes it: a number (decimals allowed, no sign) followed by <c>ms</c>, <c>s</c>,
    /// <c>m</c> or <c>h</c>; a number alone is seconds; <c>0</c> or <c>off</c> is zero. False when the text is none of
    /// these, or not a whole number of milliseconds. It checks no range (<see cref="Validate()"/> does).
    /// </summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var t = text.Trim().ToLowerInvariant();
        if (t == "off")
        {
            return true;
        }
        var digits = t.TakeWhile(c => char.IsAsciiDigit(c) || c == '.').Count();
        var unit = t[digits..];
        long size = unit switch
        {
            "ms" => TimeSpan.TicksPerMillisecond,
            "s" or "" => TimeSpan.TicksPerSecond,
            "m" => TimeSpan.TicksPerMinute,
            "h" => TimeSpan.TicksPerHour,
            _ => 0,
        };
        if (size == 0 || digits == 0 || !decimal.TryParse(t[..digits], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)
            || number > (decimal)TimeSpan.MaxValue.Ticks / size)
        {
            return false;
        }
        var ticks = number * size;
        if (ticks % TimeSpan.TicksPerMillisecond != 0)
        {
            return false;
        }
        value = TimeSpan.FromTicks((long)ticks);
        return true;
    }

    private static readonly (string Unit, long Size)[] Units =
    [
        ("h", TimeSpan.TicksPerHour), ("m", TimeSpan.TicksPerMinute), ("s", TimeSpan.TicksPerSecond), ("ms", TimeSpan.TicksPerMillisecond),
    ];
}

using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// Bounds how fast one kind of event fills the log: per category and event id, at most <see cref="Burst"/> lines in a
/// window of <see cref="Window"/> (it opens with the first line); further lines of that event are counted, not written,
/// and when the window ends one line says how many were left out and shows the last of them. A peer can cause refused
/// handshakes, failed logins and rejected connections as fast as it can connect: without this, one line each. Events
/// only the server itself or its administrator cause (start, stop, tunnels started and stopped) are never held back.
/// Time comes from the injected <see cref="TimeProvider"/>. It does not format or sanitize (see <see cref="SafeLoggerFactory"/>).
/// </summary>
public sealed class LogThrottle : IDisposable
{
    /// <summary>Lines written per event and window.</summary>
    public const int Burst = 10;

    /// <summary>The window.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    /// <summary>Event ids never throttled: the server's own lifecycle and what its administrator does.</summary>
    private static readonly HashSet<int> Exempt =
    [
        EventIds.ServerStarted, EventIds.ServerStopped, EventIds.AdminCreated, EventIds.TunnelNotRestored, EventIds.TunnelChanged,
        EventIds.TunnelStarted, EventIds.TunnelStopped, EventIds.TunnelDraining,
    ];

    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<(string Category, int EventId), Bucket> _buckets = new();
    private volatile bool _disposed;

    public LogThrottle(TimeProvider time) => _time = time;

    private sealed class Bucket
    {
        public DateTimeOffset WindowStart = DateTimeOffset.MinValue;
        public int Written;
        public long Suppressed;
        public string LastMessage = string.Empty;
        public LogLevel Level;
        public EventId EventId;
        public ILogger? Logger;
        public ITimer? Timer;
    }

    private readonly record struct Summary(ILogger Logger, LogLevel Level, EventId EventId, long Count, string Last);

    /// <summary>
    /// True when this line is to be written; false when it is counted as left out (then the summary line is written
    /// to <paramref name="logger"/> when its window ends).
    /// </summary>
    public bool Admit(ILogger logger, string category, LogLevel level, EventId eventId, string message)
    {
        if (Exempt.Contains(eventId.Id))
        {
            return true;
        }
        var bucket = _buckets.GetOrAdd((category, eventId.Id), static _ => new Bucket());
        Summary? due;
        bool admit;
        lock (bucket)
        {
            var now = _time.GetUtcNow();
            due = now - bucket.WindowStart >= Window ? TakeSummary(bucket) : null;
            if (bucket.WindowStart == DateTimeOffset.MinValue || now - bucket.WindowStart >= Window)
            {
                bucket.WindowStart = now;
                bucket.Written = 0;
            }
            admit = bucket.Written < Burst;
            if (admit)
            {
                bucket.Written++;
            }
            else
            {
                bucket.Suppressed++;
                bucket.LastMessage = message;
                bucket.Level = level;
                bucket.EventId = eventId;
                bucket.Logger = logger;
                if (bucket.Suppressed == 1 && !_disposed)
                {
                    bucket.Timer ??= _time.CreateTimer(static state => ((LogThrottle)((object[])state!)[0]).OnWindowEnd((Bucket)((object[])state)[1]),
                        new object[] { this, bucket }, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                    bucket.Timer.Change(bucket.WindowStart + Window - now, Timeout.InfiniteTimeSpan);
                }
            }
        }
        if (due is { } summary)
        {
            Write(summary);
        }
        return admit;
    }

    /// <summary>Writes the summary of every event with lines left out now (the server stops: nothing is lost silently).</summary>
    public void Flush()
    {
        foreach (var bucket in _buckets.Values)
        {
            Summary? due;
            lock (bucket)
            {
                due = TakeSummary(bucket);
            }
            if (due is { } summary)
            {
                Write(summary);
            }
        }
    }

    private void OnWindowEnd(Bucket bucket)
    {
        Summary? due;
        lock (bucket)
        {
            due = _time.GetUtcNow() - bucket.WindowStart >= Window ? TakeSummary(bucket) : null;
        }
        if (due is { } summary)
        {
            Write(summary);
        }
    }

    private static Summary? TakeSummary(Bucket bucket)
    {
        if (bucket.Suppressed == 0 || bucket.Logger is null)
        {
            return null;
        }
        var summary = new Summary(bucket.Logger, bucket.Level, bucket.EventId, bucket.Suppressed, bucket.LastMessage);
        bucket.Suppressed = 0;
        bucket.LastMessage = string.Empty;
        return summary;
    }

    private static void Write(Summary summary) => summary.Logger.Log(summary.Level, summary.EventId,
        $"{summary.Count} more messages of this kind (event {summary.EventId.Id}) were left out in the last {Window.TotalSeconds:0} s; the last: {summary.Last}",
        null, static (text, _) => text);

    public void Dispose()
    {
        _disposed = true;
        foreach (var bucket in _buckets.Values)
        {
            lock (bucket)
            {
                bucket.Timer?.Dispose();
                bucket.Timer = null;
            }
        }
    }
}

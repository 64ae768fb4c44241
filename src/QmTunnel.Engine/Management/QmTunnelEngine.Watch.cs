using System.Runtime.CompilerServices;

namespace QmTunnel.Engine.Management;

public sealed partial class QmTunnelEngine
{
    /// <summary>The original's state-update limit: subscribers get at most one update per 250 ms.</summary>
    public static readonly TimeSpan MinimumWatchInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>The longest interval between two updates of a watch: one hour.</summary>
    public static readonly TimeSpan MaximumWatchInterval = TimeSpan.FromHours(1);

    /// <summary>The interval of a watch when none is given: one update a second.</summary>
    public static readonly TimeSpan DefaultWatchInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Live statistics: yields the statistics of <paramref name="names"/> (all tunnels, including ones created later,
    /// when null) at once, then once every <paramref name="interval"/> (250 ms at least), whether or not anything
    /// changed, so a consumer sees time pass even on an idle tunnel (and Select-Object -First n ends). Ends when
    /// <paramref name="cancellationToken"/> is cancelled (OperationCanceledException) or the server stops. A tunnel
    /// removed meanwhile drops out of the list. It does not buffer: a reader slower than the interval gets the next
    /// snapshot as soon as it asks, and skipped ticks are not made up.
    /// </summary>
    public IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync<TunnelStats>(names, interval, runtime => [runtime.GetStats()], cancellationToken);

    /// <summary>Live connection lists, with the same rules as <see cref="WatchTunnelStatsAsync"/>.</summary>
    public IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync<ConnectionInfo>(names, interval, runtime => runtime.Connections.Snapshot(runtime.Profile.Name), cancellationToken);

    private async IAsyncEnumerable<IReadOnlyList<T>> WatchAsync<T>(IReadOnlyList<string>? names, TimeSpan interval,
        Func<Tunnels.TunnelRuntime, IEnumerable<T>> read, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        EnsureRunning();
        if (interval < MinimumWatchInterval)
        {
            interval = MinimumWatchInterval;
        }
        if (interval > MaximumWatchInterval)
        {
            interval = MaximumWatchInterval;
        }
        using var timer = new PeriodicTimer(interval, _time);
        while (_running)
        {
            List<T> snapshot = [];
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                foreach (var runtime in _tunnels.Values.OrderBy(t => t.Profile.Name, StringComparer.OrdinalIgnoreCase))
                {
                    if (names is null || names.Contains(runtime.Profile.Name, StringComparer.OrdinalIgnoreCase))
                    {
                        snapshot.AddRange(read(runtime));
                    }
                }
            }
            finally
            {
                _gate.Release();
            }
            yield return snapshot;
            if (!await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                yield break;
            }
        }
    }
}

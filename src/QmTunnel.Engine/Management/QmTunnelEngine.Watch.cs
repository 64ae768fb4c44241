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
    /// <remarks>
    /// Each update carries the chain's hops (<see cref="TunnelStats.Hops"/>), asked along every chain at once after the
    /// counters were read, so an update comes at most <see cref="Tunnels.TunnelRuntime.HopQueryTimeout"/> after its tick.
    /// </remarks>
    public IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync(names, interval, ReadStatsAsync, cancellationToken);

    /// <summary>Live connection lists, with the same rules as <see cref="WatchTunnelStatsAsync"/>.</summary>
    public IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync(names, interval, (runtimes, _) => Task.FromResult<IReadOnlyList<ConnectionInfo>>(
            runtimes.SelectMany(runtime => runtime.Connections.Snapshot(runtime.Profile.Name)).ToList()), cancellationToken);

    /// <summary>
    /// The statistics of tunnel <paramref name="name"/> with its chain's hops (<see cref="TunnelStats.Hops"/>,
    /// <see cref="TunnelStats.EndToEndLatency"/>): the gateways are asked, each answer awaited 2 s at most. Errors:
    /// TunnelNotFound.
    /// </summary>
    public async Task<TunnelStats> GetTunnelStatsAsync(string name, CancellationToken cancellationToken = default)
    {
        Tunnels.TunnelRuntime runtime;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            runtime = Find(name);
        }
        finally
        {
            _gate.Release();
        }
        return (await ReadStatsAsync([runtime], cancellationToken).ConfigureAwait(false))[0];
    }

    /// <summary>The statistics of <paramref name="runtimes"/>, each with its hops (asked of every chain at once).</summary>
    private static async Task<IReadOnlyList<TunnelStats>> ReadStatsAsync(IReadOnlyList<Tunnels.TunnelRuntime> runtimes, CancellationToken cancellationToken)
    {
        var hops = await Task.WhenAll(runtimes.Select(r => r.GetHopsAsync(Tunnels.TunnelRuntime.HopQueryTimeout, cancellationToken))).ConfigureAwait(false);
        return runtimes.Select((r, i) => r.GetStats(hops[i])).ToList();
    }

    /// <summary>
    /// Picks the tunnels under the engine's lock, then reads them with <paramref name="read"/> outside it (reading may
    /// wait on the network): a tunnel removed in between shows once more, then drops out.
    /// </summary>
    private async IAsyncEnumerable<IReadOnlyList<T>> WatchAsync<T>(IReadOnlyList<string>? names, TimeSpan interval,
        Func<IReadOnlyList<Tunnels.TunnelRuntime>, CancellationToken, Task<IReadOnlyList<T>>> read, [EnumeratorCancellation] CancellationToken cancellationToken)
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
            List<Tunnels.TunnelRuntime> selected;
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                selected = _tunnels.Values.OrderBy(t => t.Profile.Name, StringComparer.OrdinalIgnoreCase)
                    .Where(runtime => names is null || names.Contains(runtime.Profile.Name, StringComparer.OrdinalIgnoreCase)).ToList();
            }
            finally
            {
                _gate.Release();
            }
            yield return await read(selected, cancellationToken).ConfigureAwait(false);
            if (!await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                yield break;
            }
        }
    }
}

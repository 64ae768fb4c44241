using System.Runtime.CompilerServices;
using System.Text;

namespace QmTunnel.Engine.Management;

public sealed partial class QmTunnelEngine
{
    /// <summary>The original's state-update limit: subscribers get at most one update per 250 ms.</summary>
    public static readonly TimeSpan MinimumWatchInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Live statistics: yields the statistics of <paramref name="names"/> (all tunnels, including ones created later,
    /// when null) at once, then whenever they change, at most once per <paramref name="interval"/> (250 ms at least).
    /// Ends when <paramref name="cancellationToken"/> is cancelled (OperationCanceledException) or the server stops.
    /// A tunnel removed meanwhile drops out of the list. It does not buffer: a slow reader just skips updates.
    /// </summary>
    public IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync<TunnelStats>(names, interval, runtime => [runtime.GetStats()], Signature, cancellationToken);

    /// <summary>Live connection lists, with the same rules as <see cref="WatchTunnelStatsAsync"/>.</summary>
    public IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken = default) =>
        WatchAsync<ConnectionInfo>(names, interval, runtime => runtime.Connections.Snapshot(runtime.Profile.Name), Signature, cancellationToken);

    private async IAsyncEnumerable<IReadOnlyList<T>> WatchAsync<T>(IReadOnlyList<string>? names, TimeSpan interval,
        Func<Tunnels.TunnelRuntime, IEnumerable<T>> read, Func<T, string> signature, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        EnsureRunning();
        if (interval < MinimumWatchInterval)
        {
            interval = MinimumWatchInterval;
        }
        string? last = null;
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
            var text = new StringBuilder();
            foreach (var item in snapshot)
            {
                text.Append(signature(item)).Append('|');
            }
            var current = text.ToString();
            if (current != last)
            {
                last = current;
                yield return snapshot;
            }
            if (!await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                yield break;
            }
        }
    }

    private static string Signature(TunnelStats s) =>
        $"{s.Name}/{s.State}/{s.BytesFromClients}/{s.BytesToClients}/{s.ConnectionsTotal}/{s.ConnectionsCurrent}/{s.FailedConnections}/{s.RejectedConnections}/{s.LastErrorAt?.Ticks}";

    private static string Signature(ConnectionInfo c) =>
        $"{c.Tunnel}/{c.Id}/{c.State}/{c.BytesFromClient}/{c.BytesToClient}";
}

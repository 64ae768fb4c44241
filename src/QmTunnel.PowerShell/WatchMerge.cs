using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace QmTunnel.PowerShell;

/// <summary>
/// -Follow over objects of several servers: the watches of each server as one stream of updates. After an update of
/// any of them it yields the latest list of every server that has answered, in the order given (so a live view shows
/// them all). The first failure of one ends the whole (it is thrown to the reader), as with a single server; one that
/// ends (its server stopped) leaves the others going. It buffers at most one update per server.
/// </summary>
internal static class WatchMerge
{
    public static async IAsyncEnumerable<IReadOnlyList<T>> Merge<T>(IReadOnlyList<IAsyncEnumerable<IReadOnlyList<T>>> watches,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (watches.Count == 1)
        {
            await foreach (var update in watches[0].WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                yield return update;
            }
            yield break;
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channel = Channel.CreateBounded<(int Index, IReadOnlyList<T> Update)>(
            new BoundedChannelOptions(watches.Count) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

        async Task PumpAsync(int index)
        {
            try
            {
                await foreach (var update in watches[index].WithCancellation(stop.Token).ConfigureAwait(false))
                {
                    await channel.Writer.WriteAsync((index, update), stop.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // The reader is done.
            }
            catch (Exception ex)
            {
                channel.Writer.TryComplete(ex);
                await stop.CancelAsync().ConfigureAwait(false);
            }
        }

        var pumps = Enumerable.Range(0, watches.Count).Select(i => Task.Run(() => PumpAsync(i), CancellationToken.None)).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(_ => channel.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        var latest = new IReadOnlyList<T>?[watches.Count];
        try
        {
            await foreach (var (index, update) in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                latest[index] = update;
                yield return latest.Where(l => l is not null).SelectMany(l => l!).ToList();
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(pumps).ConfigureAwait(false);
        }
    }
}

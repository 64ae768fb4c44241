using System.Buffers;
using System.Net.Sockets;
using System.Threading.Channels;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// One connection through a <see cref="FaultProxy"/>: the accepted client socket, the socket to the target, and a pump
/// per direction. Forwarding, black-holed (reads and discards, sends nothing, closes nothing) or aborted (both sockets
/// reset). A FIN is passed on after the bytes before it; a reset or a failed send on one side resets both.
/// It does not retry the target: a target that cannot be reached resets the client.
/// </summary>
internal sealed class FaultConnection
{
    private const int Forwarding = 0;
    private const int BlackHoled = 1;
    private const int Aborted = 2;

    private readonly FaultProxy _proxy;
    private readonly Socket _client;
    private readonly Socket _target = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    private readonly CancellationTokenSource _abort = new();
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _state;

    public FaultConnection(FaultProxy proxy, Socket client)
    {
        _proxy = proxy;
        _client = client;
    }

    /// <summary>Ends when both sockets are closed and the proxy has forgotten the connection.</summary>
    public Task Completion => _done.Task;

    public bool IsBlackHoled => Volatile.Read(ref _state) == BlackHoled;

    public bool IsAborted => Volatile.Read(ref _state) == Aborted;

    public CancellationToken Aborting => _abort.Token;

    public async Task RunAsync(CancellationToken disposing)
    {
        using var registration = disposing.Register(Abort);
        try
        {
            try
            {
                await _target.ConnectAsync(_proxy.Target, _abort.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                Abort(); // the target is unreachable: the client sees a reset
                return;
            }
            await Task.WhenAll(
                new Pump(this, _client, _target, _proxy.ToTarget).RunAsync(),
                new Pump(this, _target, _client, _proxy.ToClient).RunAsync()).ConfigureAwait(false);
            if (IsBlackHoled)
            {
                // Both ends have stopped sending, and a dead router closes nothing: wait for a reset or disposal.
                await Task.Delay(Timeout.Infinite, _abort.Token).ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
            }
        }
        finally
        {
            if (!IsAborted)
            {
                _client.Dispose();
                _target.Dispose();
            }
            _proxy.Forget(this);
            _done.TrySetResult();
        }
    }

    /// <summary>Bytes are discarded from now on (a connection already aborted stays so).</summary>
    public void BlackHole() => Interlocked.CompareExchange(ref _state, BlackHoled, Forwarding);

    /// <summary>Resets both sockets (RST both ways) and stops the pumps.</summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _state, Aborted) == Aborted)
        {
            return;
        }
        FaultProxy.ResetAndClose(_client);
        FaultProxy.ResetAndClose(_target);
        _abort.Cancel();
    }

    /// <summary>
    /// One direction: a read loop that sends at once while nothing is queued and there is no delay (no allocation, no
    /// hop), and otherwise queues timestamped chunks for a write loop that sends each when it is due, in order.
    /// </summary>
    private sealed class Pump(FaultConnection connection, Socket from, Socket to, FaultDirection direction)
    {
        private readonly Channel<Chunk> _queue = Channel.CreateBounded<Chunk>(new BoundedChannelOptions(64) { SingleReader = true, SingleWriter = true });
        private int _queued; // chunks queued or being sent by the write loop

        public async Task RunAsync()
        {
            var writing = WriteLoopAsync();
            try
            {
                await ReadLoopAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (IsConnectionError(ex))
            {
                connection.FailedOrReset();
            }
            finally
            {
                _queue.Writer.TryComplete();
            }
            await writing.ConfigureAwait(false);
            while (_queue.Reader.TryRead(out var left))
            {
                ArrayPool<byte>.Shared.Return(left.Buffer);
            }
        }

        private async Task ReadLoopAsync()
        {
            var buffer = ArrayPool<byte>.Shared.Rent(FaultProxy.ChunkSize);
            try
            {
                while (true)
                {
                    var n = await from.ReceiveAsync(buffer.AsMemory(0, FaultProxy.ChunkSize), SocketFlags.None, connection.Aborting).ConfigureAwait(false);
                    direction.AddReceived(n);
                    if (connection.IsBlackHoled)
                    {
                        direction.AddDiscarded(n);
                        if (n == 0)
                        {
                            return; // no FIN passed on
                        }
                        continue;
                    }
                    if (Volatile.Read(ref _queued) == 0 && direction.Delay == TimeSpan.Zero)
                    {
                        await ForwardAsync(buffer, n).ConfigureAwait(false);
                    }
                    else
                    {
                        Interlocked.Increment(ref _queued);
                        await _queue.Writer.WriteAsync(new Chunk(buffer, n, direction.DueTimestamp()), connection.Aborting).ConfigureAwait(false);
                        buffer = ArrayPool<byte>.Shared.Rent(FaultProxy.ChunkSize);
                    }
                    if (n == 0)
                    {
                        return;
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private async Task WriteLoopAsync()
        {
            try
            {
                while (await _queue.Reader.WaitToReadAsync(connection.Aborting).ConfigureAwait(false))
                {
                    while (_queue.Reader.TryRead(out var chunk))
                    {
                        try
                        {
                            await direction.WaitUntilAsync(chunk.Due, connection.Aborting).ConfigureAwait(false);
                            await ForwardAsync(chunk.Buffer, chunk.Length).ConfigureAwait(false);
                        }
                        finally
                        {
                            ArrayPool<byte>.Shared.Return(chunk.Buffer);
                            Interlocked.Decrement(ref _queued);
                        }
                    }
                }
            }
            catch (Exception ex) when (IsConnectionError(ex))
            {
                connection.FailedOrReset();
            }
        }

        /// <summary>Sends <paramref name="n"/> bytes (0: a FIN) within the rate, or discards them once black-holed.</summary>
        private async ValueTask ForwardAsync(byte[] buffer, int n)
        {
            if (n == 0)
            {
                if (!connection.IsBlackHoled)
                {
                    to.Shutdown(SocketShutdown.Send);
                }
                return;
            }
            var offset = 0;
            while (offset < n)
            {
                if (connection.IsBlackHoled)
                {
                    direction.AddDiscarded(n - offset);
                    return;
                }
                var piece = direction.Piece(n - offset);
                await direction.TakeAsync(piece, connection.Aborting).ConfigureAwait(false);
                var sent = await to.SendAsync(buffer.AsMemory(offset, piece), SocketFlags.None, connection.Aborting).ConfigureAwait(false);
                direction.AddForwarded(sent);
                offset += sent;
            }
        }
    }

    /// <summary>A socket of this connection failed (a reset from one end, a send that failed) or was closed by an abort.</summary>
    private void FailedOrReset()
    {
        if (!IsBlackHoled)
        {
            Abort(); // pass the reset on; a dead router passes nothing on
        }
    }

    private static bool IsConnectionError(Exception ex) => ex is SocketException or ObjectDisposedException or OperationCanceledException or ChannelClosedException;

    private readonly record struct Chunk(byte[] Buffer, int Length, long Due);
}

using System.Buffers;
using System.Runtime.InteropServices;
using System.Net.Sockets;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>How a relay ended.</summary>
public readonly record struct RelayResult(bool Clean, string? Error, ProtocolErrorCode ResetCode);

/// <summary>
/// Moves bytes between an application socket and a <see cref="MuxStream"/>, both ways, until both halves are
/// closed. Half-close is end to end (socket EOF → FIN; FIN → socket shutdown(send)); a reset either side aborts
/// both (the application socket gets an RST). Idle connections hold no buffer: a zero-byte receive waits for data
/// before a buffer is rented. It does not open sockets or streams.
/// </summary>
public static class Relay
{
    public static async Task<RelayResult> RunAsync(Socket socket, MuxStream stream, int chunkSize, CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var up = SocketToStreamAsync(socket, stream, chunkSize, abort);
        var down = StreamToSocketAsync(stream, socket, abort);
        await Task.WhenAll(up, down).ConfigureAwait(false);
        var upError = up.Result;
        var downError = down.Result;
        if (upError is null && downError is null && !stream.IsReset)
        {
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            socket.Dispose();
            return new RelayResult(true, null, ProtocolErrorCode.None);
        }
        Abort(socket);
        var error = stream.IsReset ? stream.ResetReason : (upError ?? downError);
        return new RelayResult(false, error, stream.IsReset ? stream.ResetCode : ProtocolErrorCode.ConnectionReset);
    }

    /// <summary>Closes a socket with an RST (linger 0), so the application sees a reset, not a clean end.</summary>
    public static void Abort(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    private static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> memory, CancellationToken token)
    {
        while (!memory.IsEmpty)
        {
            var sent = await socket.SendAsync(memory, SocketFlags.None, token).ConfigureAwait(false);
            memory = memory[sent..];
        }
    }

    private static async Task<string?> SocketToStreamAsync(Socket socket, MuxStream stream, int chunkSize, CancellationTokenSource abort)
    {
        var token = abort.Token;
        try
        {
            while (true)
            {
                // Wait for data without holding a buffer (idle connections cost no memory), then for credit; room in the
                // link's send queue is reserved only for what was read (the read may still wait: a zero-byte receive
                // can return before data is there).
                await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, token).ConfigureAwait(false);
                var credit = await stream.WaitForWindowAsync(chunkSize, token).ConfigureAwait(false);
                var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
                int n;
                try
                {
                    n = await socket.ReceiveAsync(buffer.AsMemory(FrameHeader.Size, credit), SocketFlags.None, token).ConfigureAwait(false);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }
                if (n == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    stream.SendFin();
                    return null;
                }
                await stream.SendDataAsync(buffer, n, token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is StreamResetException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return Stop(ex, stream, abort, socketToAbort: null); // a reset's reason is on the stream
        }
    }

    private static async Task<string?> StreamToSocketAsync(MuxStream stream, Socket socket, CancellationTokenSource abort)
    {
        var input = stream.Input;
        var token = abort.Token;
        List<ArraySegment<byte>>? gather = null;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var length = (int)buffer.Length;
                try
                {
                    if (buffer.IsSingleSegment)
                    {
                        await SendAllAsync(socket, buffer.First, token).ConfigureAwait(false);
                    }
                    else
                    {
                        // several pipe segments: one gathered send instead of one send per segment
                        gather ??= new List<ArraySegment<byte>>(8);
                        gather.Clear();
                        foreach (var segment in buffer)
                        {
                            if (!MemoryMarshal.TryGetArray(segment, out var array))
                            {
                                throw new InvalidOperationException("pipe memory is not array-backed");
                            }
                            gather.Add(array);
                        }
                        var sent = await socket.SendAsync(gather, SocketFlags.None).ConfigureAwait(false);
                        if (sent < length)
                        {
                            foreach (var segment in buffer.Slice(sent))
                            {
                                await SendAllAsync(socket, segment, token).ConfigureAwait(false);
                            }
                        }
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.End);
                }
                if (length > 0)
                {
                    stream.Consumed(length);
                }
                if (result.IsCompleted)
                {
                    socket.Shutdown(SocketShutdown.Send);
                    await input.CompleteAsync().ConfigureAwait(false);
                    return null;
                }
            }
        }
        catch (Exception ex) when (ex is StreamResetException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return Stop(ex, stream, abort, socketToAbort: socket);
        }
    }

    /// <summary>
    /// Ends one direction after a failure. A reset stream stops the other direction too (and, from the stream side,
    /// aborts the socket so the application sees the reset). A cancellation means the tunnel stopped; a socket error
    /// resets the stream so the far end closes its side. Returns the error to record, or null for a reset whose
    /// reason the stream carries.
    /// </summary>
    private static string? Stop(Exception ex, MuxStream stream, CancellationTokenSource abort, Socket? socketToAbort)
    {
        switch (ex)
        {
            case StreamResetException:
                abort.Cancel();
                if (socketToAbort is not null)
                {
                    Abort(socketToAbort);
                }
                return null;
            case OperationCanceledException:
                stream.Reset(ProtocolErrorCode.TunnelStopped, "the tunnel was stopped");
                return "the tunnel was stopped";
            default:
                var reason = ex is SocketException se ? $"application connection failed: {se.SocketErrorCode}" : "application connection closed";
                stream.Reset(ProtocolErrorCode.ConnectionReset, reason);
                abort.Cancel();
                return reason;
        }
    }
}

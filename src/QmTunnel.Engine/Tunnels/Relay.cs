using System.Buffers;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>How a relay ended.</summary>
public readonly record struct RelayResult(bool Clean, string? Error, ProtocolErrorCode ResetCode);

/// <summary>
/// Moves bytes between an application connection (<see cref="AppConnection"/>: TCP, Unix socket, pipe) and a
/// <see cref="MuxStream"/>, both ways, until both halves are closed. Half-close is end to end where the connection has
/// one (EOF → FIN; FIN → shutdown(send)); a reset either side aborts both (a TCP application gets an RST). Idle
/// connections hold no buffer where the transport allows it (<see cref="AppConnection.WaitForDataAsync"/>). It does not
/// open connections or streams, and carries byte streams only (datagram associations have their own relay).
/// </summary>
public static class Relay
{
    public static async Task<RelayResult> RunAsync(AppConnection connection, MuxStream stream, int chunkSize, CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var up = ConnectionToStreamAsync(connection, stream, chunkSize, abort);
        var down = StreamToConnectionAsync(stream, connection, abort);
        await Task.WhenAll(up, down).ConfigureAwait(false);
        var upError = up.Result;
        var downError = down.Result;
        if (upError is null && downError is null && !stream.IsReset)
        {
            connection.Dispose();
            return new RelayResult(true, null, ProtocolErrorCode.None);
        }
        connection.Abort();
        var error = stream.IsReset ? stream.ResetReason : (upError ?? downError);
        return new RelayResult(false, error, stream.IsReset ? stream.ResetCode : ProtocolErrorCode.ConnectionReset);
    }

    private static async Task<string?> ConnectionToStreamAsync(AppConnection connection, MuxStream stream, int chunkSize, CancellationTokenSource abort)
    {
        var token = abort.Token;
        try
        {
            while (true)
            {
                // Wait for data without holding a buffer (idle connections cost no memory), then for credit; room in the
                // link's send queue is reserved only for what was read (the read may still wait: the wait can return
                // before data is there).
                await connection.WaitForDataAsync(token).ConfigureAwait(false);
                var credit = await stream.WaitForWindowAsync(chunkSize, token).ConfigureAwait(false);
                var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
                int n;
                try
                {
                    n = await connection.ReceiveAsync(buffer.AsMemory(FrameHeader.Size, credit), token).ConfigureAwait(false);
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
        catch (Exception ex) when (IsRelayFailure(ex))
        {
            return Stop(ex, stream, abort, connectionToAbort: null); // a reset's reason is on the stream
        }
    }

    private static async Task<string?> StreamToConnectionAsync(MuxStream stream, AppConnection connection, CancellationTokenSource abort)
    {
        var input = stream.Input;
        var token = abort.Token;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var length = (int)buffer.Length;
                try
                {
                    if (length > 0)
                    {
                        await connection.SendAsync(buffer, token).ConfigureAwait(false);
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
                    connection.ShutdownSend();
                    await input.CompleteAsync().ConfigureAwait(false);
                    return null;
                }
            }
        }
        catch (Exception ex) when (IsRelayFailure(ex))
        {
            return Stop(ex, stream, abort, connectionToAbort: connection);
        }
    }

    private static bool IsRelayFailure(Exception ex) =>
        ex is StreamResetException or OperationCanceledException or SocketException or ObjectDisposedException or IOException;

    /// <summary>
    /// Ends one direction after a failure. A reset stream stops the other direction too (and, from the stream side,
    /// aborts the connection so the application sees the reset). A cancellation means the tunnel stopped; a connection
    /// error resets the stream so the far end closes its side. Returns the error to record, or null for a reset whose
    /// reason the stream carries.
    /// </summary>
    private static string? Stop(Exception ex, MuxStream stream, CancellationTokenSource abort, AppConnection? connectionToAbort)
    {
        switch (ex)
        {
            case StreamResetException:
                abort.Cancel();
                connectionToAbort?.Abort();
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

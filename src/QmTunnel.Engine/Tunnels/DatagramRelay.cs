using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Moves datagrams between a datagram <see cref="AppConnection"/> (a UDP association: <see cref="AppConnection.IsDatagram"/>)
/// and a Udp <see cref="MuxStream"/>, both ways, framed by <see cref="DatagramFrame"/>. UDP semantics: a datagram
/// for which the stream has no credit is DROPPED and counted, never waited for, so a slow association loses its own
/// datagrams and stalls nobody (the listener's socket keeps reading for every client). At the tunnel's owner an idle
/// timer (<see cref="DatagramIdleTimer"/>, traffic either way) ends the association: Fin, and the last server answers
/// with Fin and closes its socket; whichever end reads the other's Fin ends its side too. A hostile frame (length 0,
/// over 65,507, cut off by Fin) resets the stream (MalformedFrame). It opens nothing.
/// </summary>
internal sealed partial class DatagramRelay
{
    /// <summary>How long an owner whose association ended waits for the far end's Fin before resetting the stream.</summary>
    public static readonly TimeSpan FinWait = TimeSpan.FromSeconds(10);

    private readonly AppConnection _connection;
    private readonly MuxStream _stream;
    private readonly DatagramCounters _counters;
    private readonly CancellationTokenSource _abort;
    private readonly CancellationTokenSource _upStop;
    private readonly TimeProvider _time;
    private DatagramIdleTimer? _idle;
    private ITimer? _finWait;
    private volatile bool _expired, _finWaitOver;

    private DatagramRelay(AppConnection connection, MuxStream stream, DatagramCounters counters, TimeProvider time, CancellationToken cancellationToken)
    {
        _connection = connection;
        _stream = stream;
        _counters = counters;
        _time = time;
        _abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _upStop = CancellationTokenSource.CreateLinkedTokenSource(_abort.Token);
    }

    /// <summary>
    /// Relays until the association ends: <paramref name="idleTimeout"/> without a datagram either way (the owner's
    /// side; null at the last server, which ends at the owner's Fin), a Fin or reset from the far end, or
    /// <paramref name="cancellationToken"/> (the tunnel or server stopping: the stream is reset).
    /// </summary>
    public static async Task<RelayResult> RunAsync(AppConnection connection, MuxStream stream, DatagramCounters counters, TimeProvider time,
        TimeSpan? idleTimeout, CancellationToken cancellationToken)
    {
        var relay = new DatagramRelay(connection, stream, counters, time, cancellationToken);
        try
        {
            return await relay.RunAsync(idleTimeout).ConfigureAwait(false);
        }
        finally
        {
            relay._idle?.Dispose();
            relay._finWait?.Dispose();
            relay._upStop.Dispose();
            relay._abort.Dispose();
        }
    }

    private async Task<RelayResult> RunAsync(TimeSpan? idleTimeout)
    {
        if (idleTimeout is { } timeout)
        {
            _idle = new DatagramIdleTimer(_time, timeout, Expire);
        }
        var up = Task.Run(UpAsync);
        var down = DownAsync();
        await Task.WhenAll(up, down).ConfigureAwait(false);
        var error = up.Result ?? down.Result;
        if (error is null && !_stream.IsReset)
        {
            _connection.Dispose();
            return new RelayResult(true, null, ProtocolErrorCode.None);
        }
        _connection.Abort();
        return new RelayResult(false, _stream.IsReset ? _stream.ResetReason ?? error : error, _stream.IsReset ? _stream.ResetCode : ProtocolErrorCode.ConnectionReset);
    }

    /// <summary>The idle time passed with no datagram either way: Fin to the far end, the association closed here.</summary>
    private void Expire()
    {
        _expired = true;
        try
        {
            _upStop.Cancel();
            _connection.Dispose(); // the listener forgets the client: its next datagram starts a new association
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>At the owner: the far end has <see cref="FinWait"/> to answer this side's Fin, then the stream is reset.</summary>
    private void StartFinWait()
    {
        if (_idle is null)
        {
            return;
        }
        _finWait = _time.CreateTimer(_ =>
        {
            _finWaitOver = true;
            try
            {
                _abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }, null, FinWait, Timeout.InfiniteTimeSpan);
    }

    private async Task<string?> DownAsync()
    {
        var input = _stream.Input;
        var token = _abort.Token;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var consumed = 0;
                try
                {
                    while (DatagramFrame.TryRead(ref buffer, out var datagram))
                    {
                        consumed += DatagramFrame.LengthSize + (int)datagram.Length;
                        await SendToApplicationAsync(datagram, token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, result.Buffer.End);
                }
                if (consumed > 0)
                {
                    _stream.Consumed(consumed);
                }
                if (result.IsCompleted)
                {
                    if (buffer.Length > 0)
                    {
                        throw new InvalidDataException($"the stream ended inside a datagram frame ({buffer.Length} bytes of it)");
                    }
                    await input.CompleteAsync().ConfigureAwait(false);
                    _upStop.Cancel(); // the far end ended the association: end this side too
                    return null;
                }
            }
        }
        catch (InvalidDataException ex)
        {
            var reason = $"protocol error in a Udp stream: {ex.Message}";
            _stream.Reset(ProtocolErrorCode.MalformedFrame, reason);
            _abort.Cancel();
            return reason;
        }
        catch (OperationCanceledException) when (_finWaitOver)
        {
            var reason = $"the far end did not end the association within {FinWait.TotalSeconds:0} s of this side's Fin";
            _stream.Reset(ProtocolErrorCode.ConnectionReset, reason);
            return reason;
        }
        catch (Exception ex) when (IsRelayFailure(ex))
        {
            return Stop(ex, connectionToAbort: _connection);
        }
    }

    private async ValueTask SendToApplicationAsync(ReadOnlySequence<byte> datagram, CancellationToken token)
    {
        if (_expired)
        {
            _counters.AddDropped();
            return;
        }
        // Touched before the send (so before the count too): the client may read the datagram (and its user move on)
        // before the send returns here; an idle check in between must see this datagram's traffic, not expire the
        // association and drop the next one, and whoever sees the datagram counted sees the idle time restarted.
        _idle?.Touch();
        try
        {
            await _connection.SendAsync(datagram, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException && !token.IsCancellationRequested)
        {
            _counters.AddDropped(); // the network refused it (no route, ICMP error...): UDP drops
            return;
        }
        _counters.AddOut((int)datagram.Length);
    }

    private static bool IsTransientUdpError(SocketException ex) =>
        ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset or SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.MessageSize;

    private static bool IsRelayFailure(Exception ex) =>
        ex is StreamResetException or OperationCanceledException or SocketException or ObjectDisposedException or IOException;

    /// <summary>As <see cref="Relay"/>: a reset stops both ways; a cancellation is the tunnel stopping; an application error resets the stream.</summary>
    private string? Stop(Exception ex, AppConnection? connectionToAbort)
    {
        switch (ex)
        {
            case StreamResetException:
                _abort.Cancel();
                connectionToAbort?.Abort();
                return null;
            case OperationCanceledException:
                _stream.Reset(ProtocolErrorCode.TunnelStopped, "the tunnel was stopped");
                return "the tunnel was stopped";
            default:
                var reason = ex is SocketException se ? $"application connection failed: {se.SocketErrorCode}" : "application connection closed";
                _stream.Reset(ProtocolErrorCode.ConnectionReset, reason);
                _abort.Cancel();
                return reason;
        }
    }
}

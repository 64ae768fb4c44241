using System.Buffers;
using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The application-to-stream direction. Datagrams that are waiting together go out as ONE Data frame (each still
/// its own u16-framed datagram, docs/protocol.md "UDP associations"): at the listener's side the burst the listener
/// queued before it woke the relay, at the last server's side what its socket receives without waiting. One frame
/// per burst is one write on the link instead of one per datagram. Each datagram is checked against the stream's
/// credit on its own (what the frame already holds counted): one without credit is dropped and counted, as before.
/// </summary>
internal sealed partial class DatagramRelay
{
    /// <summary>Payload bytes a coalesced Data frame holds at most (a larger datagram goes alone).</summary>
    internal const int MaxCoalescedPayload = 16 * 1024;

    private async Task<string?> UpAsync()
    {
        var token = _upStop.Token;
        try
        {
            if (_connection is UdpAssociation association)
            {
                await UpFromListenerAsync(association, token).ConfigureAwait(false);
            }
            else
            {
                await UpFromSocketAsync(token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_upStop.IsCancellationRequested && !_abort.IsCancellationRequested)
        {
            // ended normally: expired here, or the far end's Fin was read
        }
        catch (Exception ex) when (IsRelayFailure(ex))
        {
            return Stop(ex, connectionToAbort: null);
        }
        _stream.SendFin();
        StartFinWait();
        return null;
    }

    /// <summary>
    /// The listener's side: its datagrams lie in buffers laid out as Data frames already. A lone datagram goes in its
    /// own buffer (no copy); several queued together are copied into one frame.
    /// </summary>
    private async Task UpFromListenerAsync(UdpAssociation association, CancellationToken token)
    {
        var taken = new List<(byte[] Buffer, int Length)>();
        while (true)
        {
            await association.WaitForDataAsync(token).ConfigureAwait(false);
            var payload = 0;
            var credit = _stream.SendCredit;
            while (true)
            {
                var next = association.NextLength;
                if (next == 0 || (taken.Count > 0 && payload + DatagramFrame.LengthSize + next > MaxCoalescedPayload))
                {
                    break;
                }
                if (!association.TryTake(out var queued, out var length))
                {
                    break;
                }
                _idle?.Touch();
                if (credit - payload < DatagramFrame.LengthSize + length)
                {
                    ArrayPool<byte>.Shared.Return(queued);
                    _counters.AddDropped();
                    continue;
                }
                taken.Add((queued, length));
                payload += DatagramFrame.LengthSize + length;
            }
            if (taken.Count == 0)
            {
                if (association.IsClosed && association.NextLength == 0)
                {
                    return;
                }
                continue;
            }
            byte[] frame;
            if (taken.Count == 1)
            {
                frame = taken[0].Buffer;
                DatagramFrame.WriteLength(frame.AsSpan(FrameHeader.Size), taken[0].Length);
            }
            else
            {
                frame = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + payload);
                var at = FrameHeader.Size;
                foreach (var (buffer, length) in taken)
                {
                    DatagramFrame.WriteLength(frame.AsSpan(at), length);
                    buffer.AsSpan(UdpAssociation.DataOffset, length).CopyTo(frame.AsSpan(at + DatagramFrame.LengthSize));
                    at += DatagramFrame.LengthSize + length;
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
            var datagrams = taken.Count;
            taken.Clear();
            await _stream.SendDataAsync(frame, payload, token).ConfigureAwait(false);
            _counters.AddIn(datagrams, payload - (datagrams * DatagramFrame.LengthSize));
        }
    }

    /// <summary>
    /// The last server's side (and any other datagram connection): receives into one buffer and gathers datagrams into
    /// a frame while receives complete at once; the first receive that would wait sends the frame, then waits.
    /// </summary>
    private async Task UpFromSocketAsync(CancellationToken token)
    {
        // The wait holds no buffer (a UDP socket's zero-byte receive would take the datagram away: it peeks).
        await _connection.WaitForDataAsync(token).ConfigureAwait(false);
        var scratch = ArrayPool<byte>.Shared.Rent(DatagramFrame.MaxDatagram + 1);
        var scratchInUse = false; // a receive into it may still be under way: never back to the pool then
        byte[]? frame = null;
        int payload = 0, datagrams = 0;
        try
        {
            while (true)
            {
                int n;
                try
                {
                    var receive = _connection.ReceiveAsync(scratch, token);
                    if (!receive.IsCompleted && datagrams > 0)
                    {
                        var (gathered, bytes, count) = (frame!, payload, datagrams);
                        (frame, payload, datagrams) = (null, 0, 0);
                        scratchInUse = true;
                        await SendFrameAsync(gathered, bytes, count, token).ConfigureAwait(false);
                        scratchInUse = false;
                    }
                    n = await receive.ConfigureAwait(false);
                }
                catch (SocketException ex) when (IsTransientUdpError(ex))
                {
                    continue; // an ICMP error for an earlier datagram (port unreachable...): UDP goes on
                }
                if (n == 0)
                {
                    break; // the association was closed here (expired, or the listener stopped)
                }
                _idle?.Touch();
                var size = DatagramFrame.LengthSize + n;
                if (n > DatagramFrame.MaxDatagram || _stream.SendCredit - payload < size)
                {
                    _counters.AddDropped();
                    continue;
                }
                if (datagrams > 0 && payload + size > MaxCoalescedPayload)
                {
                    var (gathered, bytes, count) = (frame!, payload, datagrams);
                    (frame, payload, datagrams) = (null, 0, 0);
                    await SendFrameAsync(gathered, bytes, count, token).ConfigureAwait(false);
                }
                frame ??= ArrayPool<byte>.Shared.Rent(FrameHeader.Size + Math.Max(size, MaxCoalescedPayload));
                DatagramFrame.WriteLength(frame.AsSpan(FrameHeader.Size + payload), n);
                scratch.AsSpan(0, n).CopyTo(frame.AsSpan(FrameHeader.Size + payload + DatagramFrame.LengthSize));
                payload += size;
                datagrams++;
            }
            if (datagrams > 0)
            {
                var (gathered, bytes, count) = (frame!, payload, datagrams);
                frame = null;
                await SendFrameAsync(gathered, bytes, count, token).ConfigureAwait(false);
            }
        }
        finally
        {
            if (!scratchInUse)
            {
                ArrayPool<byte>.Shared.Return(scratch);
            }
            if (frame is not null)
            {
                ArrayPool<byte>.Shared.Return(frame);
            }
        }
    }

    /// <summary>
    /// Sends a gathered frame (its buffer's ownership passes on). A small frame in a large buffer is copied into one
    /// of its size first: the link keeps a frame until the peer acknowledges it, and counts it by its length.
    /// </summary>
    private async ValueTask SendFrameAsync(byte[] frame, int payload, int datagrams, CancellationToken token)
    {
        if (frame.Length > 2 * (FrameHeader.Size + payload))
        {
            var exact = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + payload);
            frame.AsSpan(FrameHeader.Size, payload).CopyTo(exact.AsSpan(FrameHeader.Size));
            ArrayPool<byte>.Shared.Return(frame);
            frame = exact;
        }
        await _stream.SendDataAsync(frame, payload, token).ConfigureAwait(false);
        _counters.AddIn(datagrams, payload - (datagrams * DatagramFrame.LengthSize));
    }
}

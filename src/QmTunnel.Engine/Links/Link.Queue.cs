using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// The send queue of a link and its bound (docs/security.md, "Limits"). Every queued frame is counted with its bytes
/// plus <see cref="FrameOverhead"/> from the moment it is queued until the socket took it. Data waits for room
/// (<see cref="LinkOptions.MaxQueuedBytes"/>, reserved for data in hand: a relay reserves after its read); control frames are never
/// refused, but when the queue holds more than the bound plus <see cref="LinkOptions.QueueSlackBytes"/> the reader loop
/// stops reading from the peer until it has drained. Every change of the count is made in the server's total too
/// (<see cref="LinkLimits.MaxBufferedBytes"/>, shared by the links of a server): a Data reservation takes its room from
/// both, and waits while either is full. It does not decide what is sent first: frames leave in order.
/// </summary>
public sealed partial class Link
{
    /// <summary>What a queued frame costs in memory beyond its bytes (its array's header, the queue's slot).</summary>
    internal const int FrameOverhead = 64;

    /// <summary>A Data reservation is made for at least this much of a chunk when the queue is not empty (no tiny frames).</summary>
    private const int MinimumGrant = 16 * 1024;

    private long _queued, _queuedPeak, _readPauses;
    private TaskCompletionSource? _roomWaiter;
    private readonly object _roomLock = new();

    /// <summary>Bytes counted in the send queue now (frames + overhead + Data reservations).</summary>
    internal long QueuedBytes => Interlocked.Read(ref _queued);

    /// <summary>The most <see cref="QueuedBytes"/> ever held on this link.</summary>
    internal long QueuedBytesPeak => Interlocked.Read(ref _queuedPeak);

    /// <summary>How many times the reader stopped reading from the peer because the send queue was full.</summary>
    public long ReadPauses => Interlocked.Read(ref _readPauses);

    private static long Cost(int frameLength) => frameLength + FrameOverhead;

    internal void EnqueueFrame(FrameHeader header, byte[] rentedBuffer)
    {
        header.Write(rentedBuffer);
        Enqueue(new OutFrame(rentedBuffer, FrameHeader.Size + header.Length));
    }

    internal void EnqueueEmpty(FrameHeader header)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size);
        header.Write(buffer);
        Enqueue(new OutFrame(buffer, FrameHeader.Size));
    }

    internal void EnqueueWindowUpdate(uint streamId, int increment)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 4);
        new FrameHeader(FrameType.WindowUpdate, FrameFlags.None, streamId, 4).Write(buffer);
        BinaryPrimitives.WriteInt32BigEndian(buffer.AsSpan(FrameHeader.Size), increment);
        Enqueue(new OutFrame(buffer, FrameHeader.Size + 4));
    }

    internal void EnqueueControl(uint streamId, ControlMessage message)
    {
        var payload = ControlCodec.ToArray(message);
        var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + payload.Length);
        new FrameHeader(message.FrameType, FrameFlags.None, streamId, payload.Length).Write(buffer);
        payload.CopyTo(buffer.AsSpan(FrameHeader.Size));
        Enqueue(new OutFrame(buffer, FrameHeader.Size + payload.Length));
    }

    /// <summary>Queues a Data frame whose room the stream reserved (<paramref name="reserved"/> bytes, 0 for none).</summary>
    internal void EnqueueData(FrameHeader header, byte[] rentedBuffer, long reserved, MuxStream? stream = null)
    {
        (header, rentedBuffer) = CompressData(header, rentedBuffer, stream); // smaller when compressed: the difference is given back below
        header.Write(rentedBuffer);
        var frame = new OutFrame(rentedBuffer, FrameHeader.Size + header.Length);
        var cost = Cost(frame.Length);
        AddQueued(cost - reserved);
        if (!_out.Writer.TryWrite(frame))
        {
            ArrayPool<byte>.Shared.Return(rentedBuffer);
            AddQueued(-cost);
            return;
        }
        Interlocked.Add(ref _unwritten, cost);
    }

    private void Enqueue(OutFrame frame)
    {
        var cost = Cost(frame.Length);
        AddQueued(cost);
        if (!_out.Writer.TryWrite(frame))
        {
            ArrayPool<byte>.Shared.Return(frame.Buffer);
            AddQueued(-cost);
            return;
        }
        Interlocked.Add(ref _unwritten, cost);
    }

    /// <summary>Adds to (or, negative, takes from) the queue count; taking wakes whoever waits for room.</summary>
    private void AddQueued(long delta)
    {
        if (delta == 0)
        {
            return;
        }
        var now = Interlocked.Add(ref _queued, delta);
        Options.Limits.AddBuffered(delta); // every byte of a link's queue counts in the server's budget too
        if (delta > 0)
        {
            UpdatePeak(now);
        }
        else if (Volatile.Read(ref _roomWaiter) is not null)
        {
            SignalRoom();
        }
    }

    private void UpdatePeak(long now)
    {
        var peak = Interlocked.Read(ref _queuedPeak);
        while (now > peak)
        {
            var seen = Interlocked.CompareExchange(ref _queuedPeak, now, peak);
            if (seen == peak)
            {
                return;
            }
            peak = seen;
        }
    }

    /// <summary>Gives back a Data reservation that was not used.</summary>
    internal void ReleaseReservation(long reserved) => AddQueued(-reserved);

    private void SignalRoom()
    {
        TaskCompletionSource? waiter;
        lock (_roomLock)
        {
            waiter = _roomWaiter;
            _roomWaiter = null;
        }
        waiter?.TrySetResult();
    }

    /// <summary>A task that completes at the next drop of the queue count (or teardown). Register, then re-check.</summary>
    private Task RoomChanged()
    {
        lock (_roomLock)
        {
            return (_roomWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>
    /// Reserves room for one Data frame of at most <paramref name="max"/> payload bytes when the queue has it and the
    /// server's budget too (<see cref="LinkLimits.MaxBufferedBytes"/>); returns the payload granted and the bytes
    /// reserved (payload + header + overhead). An empty queue always grants, budget permitting.
    /// </summary>
    internal bool TryReserveSend(int max, out int granted, out long reserved) => TryReserveSend(max, out granted, out reserved, out _);

    private bool TryReserveSend(int max, out int granted, out long reserved, out bool budgetFull)
    {
        var limit = (long)Options.MaxQueuedBytes;
        var want = Math.Min(max, MinimumGrant);
        while (true)
        {
            var queued = Interlocked.Read(ref _queued);
            var room = limit - queued - FrameHeader.Size - FrameOverhead;
            budgetFull = false;
            if (room < want && queued > 0)
            {
                granted = 0;
                reserved = 0;
                return false;
            }
            granted = (int)Math.Min(max, Math.Max(room, want));
            // The server's budget first (it may cut the grant down), then this link's count.
            if (!Options.Limits.TryTakeData(want, ref granted))
            {
                budgetFull = true;
                granted = 0;
                reserved = 0;
                return false;
            }
            reserved = Cost(FrameHeader.Size + granted);
            if (Interlocked.CompareExchange(ref _queued, queued + reserved, queued) == queued)
            {
                UpdatePeak(queued + reserved);
                return true;
            }
            Options.Limits.AddBuffered(-reserved); // the link's count moved meanwhile: give the budget back, look again
        }
    }

    /// <summary>
    /// Waits for room in the send queue and the server's budget (see <see cref="TryReserveSend(int, out int, out long)"/>).
    /// A closed link throws StreamResetException(LinkLost).
    /// </summary>
    internal async ValueTask<(int Granted, long Reserved)> ReserveSendAsync(int max, CancellationToken cancellationToken)
    {
        var counted = false;
        while (true)
        {
            ThrowIfClosedForSending();
            if (TryReserveSend(max, out var granted, out var reserved, out var budgetFull))
            {
                return (granted, reserved);
            }
            var changed = RoomChanged();
            var budget = budgetFull ? Options.Limits.BufferChanged() : null;
            if (TryReserveSend(max, out granted, out reserved, out budgetFull))
            {
                return (granted, reserved);
            }
            if (budgetFull && budget is null)
            {
                continue; // the budget filled meanwhile: look again, waiting for it this time
            }
            ThrowIfClosedForSending();
            await WaitForRoomAsync(changed, budget, ref counted, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits for room for one Data frame of exactly <paramref name="payload"/> bytes (data already read) in the send
    /// queue and the server's budget, and reserves it; an empty queue always has room, budget permitting. Returns the
    /// bytes reserved. A closed link throws StreamResetException(LinkLost).
    /// </summary>
    internal async ValueTask<long> ReserveSendExactAsync(int payload, CancellationToken cancellationToken)
    {
        var cost = Cost(FrameHeader.Size + payload);
        var limit = (long)Options.MaxQueuedBytes;
        bool TryReserve(out bool budgetFull)
        {
            while (true)
            {
                budgetFull = false;
                var queued = Interlocked.Read(ref _queued);
                if (queued + cost > limit && queued > 0)
                {
                    return false;
                }
                var exact = payload;
                if (!Options.Limits.TryTakeData(payload, ref exact))
                {
                    budgetFull = true;
                    return false;
                }
                if (Interlocked.CompareExchange(ref _queued, queued + cost, queued) == queued)
                {
                    UpdatePeak(queued + cost);
                    return true;
                }
                Options.Limits.AddBuffered(-cost);
            }
        }
        var counted = false;
        while (true)
        {
            ThrowIfClosedForSending();
            if (TryReserve(out var budgetFull))
            {
                return cost;
            }
            var changed = RoomChanged();
            var budget = budgetFull ? Options.Limits.BufferChanged() : null;
            if (TryReserve(out budgetFull))
            {
                return cost;
            }
            if (budgetFull && budget is null)
            {
                continue; // the budget filled meanwhile: look again, waiting for it this time
            }
            ThrowIfClosedForSending();
            await WaitForRoomAsync(changed, budget, ref counted, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A sender's wait: for this link's room, or, when the server's budget was found full (<paramref name="serverRoom"/>
    /// registered), for whichever frees first (room anywhere on the server, or this link's room or closing). A wait for
    /// the budget is counted once per reservation, and logged once per episode. Registering for the budget only when it
    /// is full keeps the server-wide signal off while nobody waits for it.
    /// </summary>
    private Task WaitForRoomAsync(Task linkRoom, Task? serverRoom, ref bool counted, CancellationToken cancellationToken)
    {
        if (serverRoom is null)
        {
            return linkRoom.WaitAsync(cancellationToken);
        }
        if (!counted)
        {
            counted = true;
            if (Options.Limits.StartBufferWait())
            {
                LinkLog.BufferFull(_logger, RemoteEndPoint, User ?? "?", Options.Limits.BufferedBytes, Options.Limits.MaxBufferedBytes);
            }
        }
        return Task.WhenAny(linkRoom, serverRoom).WaitAsync(cancellationToken);
    }

    private void ThrowIfClosedForSending()
    {
        if (IsClosed)
        {
            throw new StreamResetException(ProtocolErrorCode.LinkLost, $"the link to {RemoteEndPoint} closed{(CloseReason is null ? "" : ": " + CloseReason)}");
        }
    }

    /// <summary>Reader loop: waits until the frames not yet written have drained to <see cref="LinkOptions.MaxQueuedBytes"/> (or the link closes).</summary>
    private async Task WaitForQueueToDrainAsync(CancellationToken cancellationToken)
    {
        var resumeAt = (long)Options.MaxQueuedBytes;
        while (Interlocked.Read(ref _unwritten) > resumeAt)
        {
            var changed = RoomChanged();
            if (Interlocked.Read(ref _unwritten) <= resumeAt)
            {
                return;
            }
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// True when the reader should stop reading: frames not yet written (control frames above all) have filled the
    /// slack above the bound. Frames written and waiting for their Ack do not count here: reading brings the Acks.
    /// </summary>
    private bool SendQueueOverflowing => Interlocked.Read(ref _unwritten) > (long)Options.MaxQueuedBytes + Options.QueueSlackBytes;
}

using System.Buffers;
using System.IO.Pipelines;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// One application connection multiplexed on a <see cref="Link"/>. Sending is credit based: the sender may have at
/// most the peer's window in flight and waits for WindowUpdate frames; received data lands in <see cref="Input"/>
/// (bounded by the window this side granted) and <see cref="Consumed"/> returns credit. Half-close each way with
/// <see cref="SendFin"/> / <see cref="Input"/> completing. It does not touch sockets: relays do.
/// </summary>
public sealed class MuxStream
{
    private readonly Link _link;
    private readonly Pipe _receive;
    private readonly int _window;
    private long _sendCredit;
    private int _receiveCredit;   // bytes the peer may still send before our next WindowUpdate
    private int _unreported;      // consumed bytes not yet returned as credit
    private int _finSent, _finReceived, _reset, _inputDiscarded;
    private long _reserved;       // room of the link's send queue reserved for this stream's next Data frame
    private TaskCompletionSource? _creditWaiter;
    private readonly object _creditLock = new();
    private readonly TaskCompletionSource<bool> _opened = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal MuxStream(Link link, uint id, int receiveWindow, int sendCredit, TrafficCounters counters)
    {
        _link = link;
        Id = id;
        _window = receiveWindow;
        _receiveCredit = receiveWindow;
        _sendCredit = sendCredit;
        Counters = counters;
        _receive = new Pipe(new PipeOptions(readerScheduler: PipeScheduler.Inline, pauseWriterThreshold: 0, resumeWriterThreshold: 0, minimumSegmentSize: 64 * 1024, useSynchronizationContext: false));
    }

    public uint Id { get; }
    /// <summary>Compression back-off of this stream's one sender (Link.Compression.cs): frames to send untried, misses in a row.</summary>
    internal int CompressSkip, CompressMisses;
    public Link Link => _link;
    public TrafficCounters Counters { get; }
    /// <summary>Data from the peer. Completes at the peer's FIN; fails with <see cref="StreamResetException"/> on reset.</summary>
    public PipeReader Input => _receive.Reader;
    /// <summary>True when the far end confirmed the target (OpenAck); false when the stream was reset first.</summary>
    public Task<bool> Opened => _opened.Task;
    public bool IsReset => Volatile.Read(ref _reset) != 0;
    public ProtocolErrorCode ResetCode { get; private set; }
    public string? ResetReason { get; private set; }
    internal bool FinSent => Volatile.Read(ref _finSent) != 0;
    internal bool FinReceived => Volatile.Read(ref _finReceived) != 0;
    /// <summary>Bytes this side may still send before the peer's next WindowUpdate.</summary>
    internal long SendCredit => Interlocked.Read(ref _sendCredit);
    /// <summary>Bytes the peer may still send before this side's next WindowUpdate (equals the peer's <see cref="SendCredit"/> when nothing is in flight).</summary>
    internal int ReceiveCredit => Volatile.Read(ref _receiveCredit);

    /// <summary>
    /// Waits until the peer grants credit and the link's send queue has room (docs/security.md, "Limits"); returns how
    /// many bytes may be sent now (at most <paramref name="max"/>) with the next <see cref="SendData"/>, for which that
    /// room stays reserved.
    /// </summary>
    public ValueTask<int> WaitForCreditAsync(int max, CancellationToken cancellationToken)
    {
        ReleaseReservation();
        var credit = Interlocked.Read(ref _sendCredit);
        if (credit > 0 && !IsReset && _link.TryReserveSend((int)Math.Min(credit, max), out var granted, out var reserved))
        {
            return Keep(granted, reserved) ? ValueTask.FromResult(granted) : ValueTask.FromException<int>(ResetError());
        }
        return WaitSlowAsync(max, cancellationToken);
    }

    private async ValueTask<int> WaitSlowAsync(int max, CancellationToken cancellationToken)
    {
        var credit = await WaitForStreamCreditAsync(max, cancellationToken).ConfigureAwait(false);
        var (granted, reserved) = await _link.ReserveSendAsync(credit, cancellationToken).ConfigureAwait(false);
        return Keep(granted, reserved) ? granted : throw ResetError();
    }

    /// <summary>Keeps a reservation for the next Data frame; false (and nothing kept) when the stream was reset meanwhile.</summary>
    private bool Keep(int granted, long reserved)
    {
        Interlocked.Exchange(ref _reserved, reserved);
        if (IsReset)
        {
            ReleaseReservation();
            return false;
        }
        return true;
    }

    private StreamResetException ResetError() => new(ResetCode, ResetReason ?? "stream reset");

    /// <summary>Gives the link back the room reserved for a Data frame that was not sent.</summary>
    private void ReleaseReservation()
    {
        var reserved = Interlocked.Exchange(ref _reserved, 0);
        if (reserved > 0)
        {
            _link.ReleaseReservation(reserved);
        }
    }

    /// <summary>
    /// Waits until the peer grants credit and returns how much (at most <paramref name="max"/>), without reserving
    /// room in the link's send queue: for a sender whose data is not in hand yet and may take a while to come (a relay
    /// about to read its socket), which reserves room for exactly what it got with <see cref="SendDataAsync"/>. Holding
    /// a reservation while a socket is idle would lend the link's room to a connection that sends nothing.
    /// </summary>
    public ValueTask<int> WaitForWindowAsync(int max, CancellationToken cancellationToken)
    {
        var credit = Interlocked.Read(ref _sendCredit);
        return credit > 0 && !IsReset ? ValueTask.FromResult((int)Math.Min(credit, max)) : WaitForStreamCreditAsync(max, cancellationToken);
    }

    /// <summary>
    /// Sends <paramref name="count"/> bytes read after <see cref="WaitForWindowAsync"/> (placed at offset
    /// <see cref="FrameHeader.Size"/> of a buffer rented from <see cref="ArrayPool{T}.Shared"/>, whose ownership passes
    /// here): waits for room for them in the link's send queue first. On a reset or cancellation the buffer is returned
    /// and the exception thrown.
    /// </summary>
    public async ValueTask SendDataAsync(byte[] rentedBuffer, int count, CancellationToken cancellationToken)
    {
        long reserved;
        try
        {
            reserved = await _link.ReserveSendExactAsync(count, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(rentedBuffer);
            throw;
        }
        ReleaseReservation();
        if (!Keep(count, reserved))
        {
            ArrayPool<byte>.Shared.Return(rentedBuffer);
            throw ResetError();
        }
        SendData(rentedBuffer, count);
    }

    private async ValueTask<int> WaitForStreamCreditAsync(int max, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_creditLock)
            {
                if (IsReset)
                {
                    throw new StreamResetException(ResetCode, ResetReason ?? "stream reset");
                }
                var credit = Interlocked.Read(ref _sendCredit);
                if (credit > 0)
                {
                    return (int)Math.Min(credit, max);
                }
                _creditWaiter ??= new TaskCompletionSource();
                wait = _creditWaiter.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Sends <paramref name="count"/> bytes that the caller placed at offset <see cref="FrameHeader.Size"/> of a buffer
    /// rented from <see cref="ArrayPool{T}.Shared"/>; ownership of the buffer passes to the link. The caller must have
    /// obtained the credit from <see cref="WaitForCreditAsync"/>.
    /// </summary>
    public void SendData(byte[] rentedBuffer, int count)
    {
        if (IsReset || FinSent)
        {
            ArrayPool<byte>.Shared.Return(rentedBuffer);
            ReleaseReservation();
            return;
        }
        Interlocked.Add(ref _sendCredit, -count);
        Counters.AddAppIn(count);
        Counters.AddLinkSent(FrameHeader.Size + count);
        _link.EnqueueData(new FrameHeader(FrameType.Data, FrameFlags.None, Id, count), rentedBuffer, Interlocked.Exchange(ref _reserved, 0), this);
    }

    /// <summary>Sends small control-sized payloads (queries, management): waits for credit, copies, frames. Not for bulk data.</summary>
    public async Task SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            var n = await WaitForCreditAsync(Math.Min(data.Length, _link.Options.ChunkSize), cancellationToken).ConfigureAwait(false);
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + n);
            data.Span[..n].CopyTo(buffer.AsSpan(FrameHeader.Size));
            SendData(buffer, n);
            data = data[n..];
        }
    }

    /// <summary>
    /// Reads everything the peer sends until its Fin (at most <paramref name="maxBytes"/>; more is an
    /// InvalidDataException). A reset throws <see cref="StreamResetException"/>.
    /// </summary>
    public async Task<byte[]> ReadToEndAsync(int maxBytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result;
            try
            {
                result = await Input.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception) when (IsReset)
            {
                throw new StreamResetException(ResetCode, ResetReason ?? "stream reset");
            }
            if (result.Buffer.Length > maxBytes)
            {
                Input.AdvanceTo(result.Buffer.Start);
                throw new InvalidDataException($"the peer sent more than {maxBytes} bytes");
            }
            if (result.IsCompleted || IsReset)
            {
                if (IsReset)
                {
                    throw new StreamResetException(ResetCode, ResetReason ?? "stream reset");
                }
                var bytes = result.Buffer.ToArray();
                Input.AdvanceTo(result.Buffer.End);
                Consumed(bytes.Length);
                return bytes;
            }
            Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    /// <summary>Half-closes the sending direction (the peer's application sees end of stream after all data).</summary>
    public void SendFin()
    {
        ReleaseReservation();
        if (IsReset || Interlocked.Exchange(ref _finSent, 1) != 0)
        {
            return;
        }
        Counters.AddLinkSent(FrameHeader.Size);
        _link.EnqueueEmpty(new FrameHeader(FrameType.Data, FrameFlags.Fin, Id, 0));
        _link.MaybeForget(this);
    }

    public void SendOpenAck()
    {
        if (!IsReset)
        {
            _link.EnqueueEmpty(new FrameHeader(FrameType.OpenAck, FrameFlags.None, Id, 0));
            _opened.TrySetResult(true);
        }
    }

    /// <summary>Aborts the stream both ways and tells the peer why. Idempotent.</summary>
    public void Reset(ProtocolErrorCode code, string reason)
    {
        if (MarkReset(code, reason))
        {
            _link.EnqueueControl(Id, new ResetMessage(code, reason));
        }
    }

    /// <summary>The application side consumed <paramref name="count"/> bytes of <see cref="Input"/>: return credit in batches.</summary>
    public void Consumed(int count)
    {
        Counters.AddAppOut(count);
        var pending = Interlocked.Add(ref _unreported, count);
        if (pending >= _window / 4 && !FinReceived && !IsReset)
        {
            var grant = Interlocked.Exchange(ref _unreported, 0);
            if (grant > 0)
            {
                Interlocked.Add(ref _receiveCredit, grant);
                _link.EnqueueWindowUpdate(Id, grant);
            }
        }
    }

    /// <summary>
    /// The application side will not read <see cref="Input"/> again: what is buffered goes back to the pool and what
    /// the peer still sends is dropped. Called by the link when a stream's handler ended after its Fin.
    /// </summary>
    internal void DiscardInput()
    {
        if (Interlocked.Exchange(ref _inputDiscarded, 1) != 0)
        {
            return;
        }
        try
        {
            while (Input.TryRead(out var result))
            {
                Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
            Input.Complete();
        }
        catch (InvalidOperationException)
        {
            // the handler completed the input itself
        }
    }

    // ---- called by the link's reader loop (one thread) ----

    internal ValueTask<FlushResult> OnDataAsync(ReadOnlySequence<byte> payload, bool fin)
    {
        var length = (int)payload.Length;
        if (Interlocked.Add(ref _receiveCredit, -length) < 0)
        {
            throw new ProtocolException(ProtocolErrorCode.FlowControlViolation,
                $"stream {Id} received {length} bytes beyond the window it granted");
        }
        Counters.AddLinkReceived(FrameHeader.Size + length);
        if (IsReset || Volatile.Read(ref _inputDiscarded) != 0)
        {
            if (fin)
            {
                OnFin();
            }
            return ValueTask.FromResult(default(FlushResult));
        }
        var writer = _receive.Writer;
        foreach (var segment in payload)
        {
            writer.Write(segment.Span);
        }
        if (fin)
        {
            if (length > 0)
            {
                var flushed = writer.FlushAsync();
                if (!flushed.IsCompleted)
                {
                    throw new InvalidOperationException("receive pipe flush must not block (pause threshold is off)");
                }
                flushed.GetAwaiter().GetResult();
            }
            OnFin();
            return ValueTask.FromResult(default(FlushResult));
        }
        return length > 0 ? writer.FlushAsync() : ValueTask.FromResult(default(FlushResult));
    }

    private void OnFin()
    {
        if (Interlocked.Exchange(ref _finReceived, 1) == 0)
        {
            _receive.Writer.Complete();
            _link.MaybeForget(this);
        }
    }

    internal void OnWindowUpdate(int increment)
    {
        Interlocked.Add(ref _sendCredit, increment);
        TaskCompletionSource? waiter;
        lock (_creditLock)
        {
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        waiter?.TrySetResult();
    }

    internal void OnOpenAck() => _opened.TrySetResult(true);

    internal void OnReset(ProtocolErrorCode code, string reason) => MarkReset(code, reason);

    private bool MarkReset(ProtocolErrorCode code, string reason)
    {
        if (Interlocked.Exchange(ref _reset, 1) != 0)
        {
            return false;
        }
        ResetCode = code;
        ResetReason = reason;
        ReleaseReservation();
        _opened.TrySetResult(false);
        if (Interlocked.Exchange(ref _finReceived, 1) == 0)
        {
            _receive.Writer.Complete(new StreamResetException(code, reason));
        }
        TaskCompletionSource? waiter;
        lock (_creditLock)
        {
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        waiter?.TrySetResult();
        _link.Forget(this);
        return true;
    }
}

using System.Buffers;
using System.Net;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// One client of a <c>udp://</c> listener (its source address): datagrams the listener queued for it are read one
/// per receive; each send is one datagram back to that address from the listener's socket. Dispose ends it (its
/// relay reads the end, the listener forgets the address: the client's next datagram starts a new association).
/// </summary>
internal sealed class UdpAssociation : AppConnection
{
    private readonly UdpAssociationListener _listener;
    /// <summary>Where a queued datagram starts in its buffer: room for a Data frame's header and the datagram's length before it.</summary>
    internal const int DataOffset = Protocol.FrameHeader.Size + Tunnels.DatagramFrame.LengthSize;

    // Each datagram is kept where a Data frame needs it (DataOffset), so the relay sends the buffer as it is.
    private readonly Queue<(byte[] Data, int Length)> _queue = new();
    private readonly object _gate = new();
    private TaskCompletionSource? _waiter;
    private bool _closed;

    public UdpAssociation(UdpAssociationListener listener, SocketAddress address, string remote)
    {
        _listener = listener;
        Address = address;
        Remote = remote;
    }

    public SocketAddress Address { get; }

    public override string Remote { get; }

    public override bool IsDatagram => true;

    /// <summary>This association's datagram counts; the listener adds the ones it had to drop for it.</summary>
    public Tunnels.DatagramCounters Counters { get; } = new();

    /// <summary>Set and cleared by the listener's loop only: this association is on its list of relays to wake.</summary>
    internal bool WakePending { get; set; }

    /// <summary>Queues a copy of <paramref name="datagram"/> (false when closed or full); the relay is woken by <see cref="Wake"/>.</summary>
    internal bool TryEnqueue(ReadOnlySpan<byte> datagram)
    {
        lock (_gate)
        {
            if (_closed || _queue.Count >= UdpAssociationListener.MaxQueuedPerAssociation)
            {
                return false;
            }
            var copy = ArrayPool<byte>.Shared.Rent(DataOffset + datagram.Length);
            datagram.CopyTo(copy.AsSpan(DataOffset));
            _queue.Enqueue((copy, datagram.Length));
            _listener.AddQueued(datagram.Length);
        }
        return true;
    }

    /// <summary>Wakes the relay if it waits for datagrams.</summary>
    internal void Wake()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.TrySetResult();
    }

    /// <summary>Datagrams queued for the relay now.</summary>
    internal int QueuedCount
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>The length of the next queued datagram, or 0 when none is queued.</summary>
    internal int NextLength
    {
        get
        {
            lock (_gate)
            {
                return _queue.TryPeek(out var item) ? item.Length : 0;
            }
        }
    }

    public override async ValueTask WaitForDataAsync(CancellationToken cancellationToken)
    {
        Task wait;
        lock (_gate)
        {
            if (_queue.Count > 0 || _closed)
            {
                return;
            }
            // Completed inline by the listener's loop: the relay's next step (frame, enqueue on the link) runs there
            // without a thread hop; it returns to the loop at its next wait.
            _waiter ??= new TaskCompletionSource();
            wait = _waiter.Task;
        }
        await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The next queued datagram as it lies in its pooled buffer (at <see cref="DataOffset"/>, <paramref name="length"/>
    /// bytes; the buffer passes to the caller), or false when none is queued.
    /// </summary>
    internal bool TryTake(out byte[] buffer, out int length)
    {
        lock (_gate)
        {
            if (_queue.TryDequeue(out var item))
            {
                _listener.AddQueued(-item.Length);
                (buffer, length) = item;
                return true;
            }
        }
        (buffer, length) = (Array.Empty<byte>(), 0);
        return false;
    }

    /// <summary>Whether the association was closed (nothing more will be queued).</summary>
    internal bool IsClosed
    {
        get
        {
            lock (_gate)
            {
                return _closed;
            }
        }
    }

    /// <summary>The next datagram (copied into <paramref name="buffer"/>, which holds 65,507 bytes), or 0 once closed.</summary>
    public override async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            lock (_gate)
            {
                if (_queue.TryDequeue(out var item))
                {
                    var n = Math.Min(item.Length, buffer.Length);
                    item.Data.AsSpan(DataOffset, n).CopyTo(buffer.Span);
                    ArrayPool<byte>.Shared.Return(item.Data);
                    _listener.AddQueued(-item.Length);
                    return n;
                }
                if (_closed)
                {
                    return 0;
                }
            }
            await WaitForDataAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>One datagram back to the client, sent at once (never waits: a full socket buffer throws, the relay counts a drop).</summary>
    public override ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        if (data.IsSingleSegment)
        {
            _listener.SendTo(data.FirstSpan, Address);
            return ValueTask.CompletedTask;
        }
        var length = (int)data.Length;
        var copy = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            data.CopyTo(copy);
            _listener.SendTo(copy.AsSpan(0, length), Address);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>UDP has no half-close: nothing to do.</summary>
    public override void ShutdownSend()
    {
    }

    public override void Abort() => Dispose();

    /// <summary>Ends the association: queued datagrams are dropped (and counted), the listener forgets the address.</summary>
    public override void Dispose()
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }
            _closed = true;
            while (_queue.TryDequeue(out var item))
            {
                ArrayPool<byte>.Shared.Return(item.Data);
                _listener.AddQueued(-item.Length);
                Counters.AddDropped();
            }
            waiter = _waiter;
            _waiter = null;
        }
        _listener.Forget(this);
        waiter?.TrySetResult();
    }
}

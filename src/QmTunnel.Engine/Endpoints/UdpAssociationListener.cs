using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// A <c>udp://</c> listener: ONE socket, read by one loop that never waits for anybody. Each client source address is
/// an association (<see cref="UdpAssociation"/>), handed out by <see cref="AcceptAsync"/> when its first datagram
/// comes; its datagrams are queued for it (bounded: <see cref="MaxQueuedPerAssociation"/> each, <see cref="MaxQueuedBytes"/>
/// for all), so one slow association loses its own datagrams and never stalls another. Bounds against a flood of
/// (spoofed) sources: associations not yet accepted are at most the backlog; the tunnel closes those over its
/// MaxConnections at once. Every datagram not queued is counted in <see cref="Dropped"/> (or its association's).
/// </summary>
internal sealed class UdpAssociationListener : IAppListener
{
    /// <summary>Datagrams one association may have waiting for its relay; more are dropped.</summary>
    public const int MaxQueuedPerAssociation = 256;
    /// <summary>Bytes of datagrams all associations of this listener may have waiting; more are dropped.</summary>
    public const long MaxQueuedBytes = 16L * 1024 * 1024;

    private readonly Dictionary<SocketAddress, UdpAssociation> _associations = [];
    private readonly object _gate = new();
    private readonly Channel<UdpAssociation> _accepts;
    private readonly CancellationTokenSource _stop = new();
    private readonly IPEndPoint _template;
    /// <summary>Datagrams the loop takes before it wakes the relays even though more are waiting (latency under a flood).</summary>
    internal const int MaxBurst = 64;

    private long _queuedBytes, _dropped;
    // The receive loop's own: associations with datagrams queued since it last woke their relays, and how many.
    private readonly List<UdpAssociation> _toWake = [];
    private int _burst;

    public UdpAssociationListener(Socket socket, EndpointUri bound, int backlog)
    {
        Socket = socket;
        Bound = bound;
        _template = socket.AddressFamily == AddressFamily.InterNetworkV6 ? new IPEndPoint(IPAddress.IPv6Any, 0) : new IPEndPoint(IPAddress.Any, 0);
        _accepts = Channel.CreateBounded<UdpAssociation>(new BoundedChannelOptions(Math.Max(1, backlog)) { SingleReader = true, SingleWriter = true });
        _ = Task.Run(ReceiveLoopAsync);
    }

    public Socket Socket { get; }

    public EndpointUri Bound { get; }

    /// <summary>Datagrams dropped before they had an association: empty or oversized ones, and new clients over the backlog.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Associations open now (accepted or waiting to be).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _associations.Count;
            }
        }
    }

    public async ValueTask<AppConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _accepts.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException ex)
        {
            throw new ObjectDisposedException(nameof(UdpAssociationListener), ex);
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = GC.AllocateUninitializedArray<byte>(65_536, pinned: true);
        var address = new SocketAddress(Socket.AddressFamily);
        try
        {
            while (true)
            {
                int n;
                try
                {
                    // A receive that does not complete at once means the socket is drained: only then are the relays
                    // of the associations that got datagrams woken, so each takes its burst as one Data frame (and the
                    // link writes them in one send). A flood is bounded by MaxBurst.
                    var receive = Socket.ReceiveFromAsync(buffer, SocketFlags.None, address, _stop.Token);
                    if (!receive.IsCompleted || _burst >= MaxBurst)
                    {
                        WakeReceivers();
                    }
                    n = await receive.ConfigureAwait(false);
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.MessageSize or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
                {
                    continue; // an ICMP error for a datagram sent earlier (Windows reports it here): the socket goes on
                }
                Deliver(buffer.AsSpan(0, n), address);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        finally
        {
            _accepts.Writer.TryComplete();
            UdpAssociation[] open;
            lock (_gate)
            {
                open = [.. _associations.Values];
            }
            foreach (var association in open)
            {
                association.Dispose(); // their relays read the end
            }
        }
    }

    private void Deliver(ReadOnlySpan<byte> datagram, SocketAddress from)
    {
        if (datagram.Length is 0 or > Tunnels.DatagramFrame.MaxDatagram)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        UdpAssociation? association;
        lock (_gate)
        {
            if (!_associations.TryGetValue(from, out association))
            {
                var key = new SocketAddress(from.Family, from.Size);
                from.Buffer.Span[..from.Size].CopyTo(key.Buffer.Span);
                association = new UdpAssociation(this, key, _template.Create(key).ToString() ?? "?");
                if (!_accepts.Writer.TryWrite(association))
                {
                    Interlocked.Increment(ref _dropped); // the backlog of new clients is full: a flood, or a tunnel stopping
                    return;
                }
                _associations[key] = association;
            }
        }
        if (Interlocked.Read(ref _queuedBytes) + datagram.Length > MaxQueuedBytes || !association.TryEnqueue(datagram))
        {
            association.Counters.AddDropped();
            return;
        }
        _burst++;
        if (!association.WakePending)
        {
            association.WakePending = true;
            _toWake.Add(association);
        }
    }

    /// <summary>Wakes the relays of the associations that got datagrams since the last call (the receive loop's own list).</summary>
    private void WakeReceivers()
    {
        _burst = 0;
        if (_toWake.Count == 0)
        {
            return;
        }
        foreach (var association in _toWake)
        {
            association.WakePending = false;
            association.Wake(); // inline: the relay frames its burst and hands it to the link, then returns here
        }
        _toWake.Clear();
    }

    internal void AddQueued(long bytes) => Interlocked.Add(ref _queuedBytes, bytes);

    internal void Forget(UdpAssociation association)
    {
        lock (_gate)
        {
            if (_associations.TryGetValue(association.Address, out var current) && ReferenceEquals(current, association))
            {
                _associations.Remove(association.Address);
            }
        }
    }

    internal ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, SocketAddress to, CancellationToken cancellationToken) =>
        Socket.SendToAsync(datagram, SocketFlags.None, to, cancellationToken);

    public void Dispose()
    {
        _stop.Cancel();
        Socket.Dispose();
    }
}

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

    public override async ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        if (data.IsSingleSegment)
        {
            await _listener.SendToAsync(data.First, Address, cancellationToken).ConfigureAwait(false);
            return;
        }
        var length = (int)data.Length;
        var copy = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            data.CopyTo(copy);
            await _listener.SendToAsync(copy.AsMemory(0, length), Address, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
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

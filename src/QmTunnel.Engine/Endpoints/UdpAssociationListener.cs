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

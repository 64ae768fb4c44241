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
/// Two ways to read the socket, chosen by how the process's socket completions run
/// (<see cref="Diagnostics.SocketTuning.InlineCompletionsOn"/>): with inline completions (the daemon) an awaited receive
/// loop (<see cref="ReceiveLoopAsync"/>) whose completions run on the epoll thread; without (pwsh) a thread of its own
/// (<see cref="ReceiveLoop"/>), since there every awaited completion hops to the thread pool (bench: in pwsh the thread
/// costs about a quarter less CPU per datagram; in the daemon it cost a third of the datagram rate).
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
    private readonly Thread? _thread;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopping;
    private volatile Exception? _fault;
    /// <summary>How long the receive thread's wait lasts at most before it looks at the stop flag again (0.5 s).</summary>
    private const int StopPollMicroseconds = 500_000;
    private readonly IPEndPoint _template;
    /// <summary>Datagrams the loop takes before it wakes the relays even though more are waiting (latency under a flood).</summary>
    internal const int MaxBurst = 64;

    private long _queuedBytes, _dropped;
    // The receive loop's own: associations with datagrams queued since it last woke their relays, and how many.
    private readonly List<UdpAssociation> _toWake = [];
    private int _burst;

    /// <param name="receiveThread">Read the socket on a thread of its own (without inline socket completions) or with
    /// awaited receives (with them).</param>
    public UdpAssociationListener(Socket socket, EndpointUri bound, int backlog, bool receiveThread)
    {
        Socket = socket;
        Bound = bound;
        _template = socket.AddressFamily == AddressFamily.InterNetworkV6 ? new IPEndPoint(IPAddress.IPv6Any, 0) : new IPEndPoint(IPAddress.Any, 0);
        _accepts = Channel.CreateBounded<UdpAssociation>(new BoundedChannelOptions(Math.Max(1, backlog)) { SingleReader = true, SingleWriter = true });
        socket.Blocking = false; // sends never wait for a full socket buffer (the datagram is dropped), the receive thread polls
        if (receiveThread)
        {
            _thread = new Thread(ReceiveLoop) { IsBackground = true, Name = $"qmt-udp {bound.Port}" };
            _thread.Start();
        }
        else
        {
            _ = Task.Run(ReceiveLoopAsync);
        }
    }

    /// <summary>The thread that reads the socket (ends when the listener is disposed); null when receives are awaited.</summary>
    internal Thread? ReceiveThread => _thread;

    /// <summary>Completes when the socket is no longer read (and the associations there were are ended).</summary>
    internal Task Stopped => _stopped.Task;

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
            if (_fault is { } fault)
            {
                throw new AppAcceptException($"the udp:// listener {Bound} stopped reading its socket: {fault.GetType().Name}: {fault.Message}", false, fault);
            }
            throw new ObjectDisposedException(nameof(UdpAssociationListener), ex);
        }
    }

    /// <summary>
    /// The receive thread. The socket is non-blocking: the thread takes datagrams while the kernel holds some
    /// (<see cref="Socket.Available"/>), and only when it holds none wakes the relays of the associations that got
    /// datagrams (each takes its burst as one Data frame; a flood is bounded by <see cref="MaxBurst"/>) and waits in
    /// <see cref="Socket.Poll(int, SelectMode)"/>. No thread-pool hop and no allocation per datagram, with or without
    /// inline socket completions (pwsh has none); <see cref="Dispose"/> shuts the socket down, which ends the wait.
    /// </summary>
    private void ReceiveLoop()
    {
        var buffer = GC.AllocateUninitializedArray<byte>(65_536, pinned: true);
        var address = new SocketAddress(Socket.AddressFamily);
        try
        {
            while (!_stopping)
            {
                if (Socket.Available == 0)
                {
                    WakeReceivers();
                    // A bounded wait: Dispose's shutdown ends it at once where the platform wakes a poll for it (Linux),
                    // the flag within StopPollMicroseconds elsewhere.
                    if (!Socket.Poll(StopPollMicroseconds, SelectMode.SelectRead) || _stopping)
                    {
                        continue;
                    }
                }
                int n;
                try
                {
                    n = Socket.ReceiveFrom(buffer, SocketFlags.None, address);
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.ConnectionReset or SocketError.MessageSize
                    or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
                {
                    continue; // nothing after all, or an ICMP error for a datagram sent earlier (Windows reports it here)
                }
                if (_stopping)
                {
                    break;
                }
                Deliver(buffer.AsSpan(0, n), address);
                if (_burst >= MaxBurst)
                {
                    WakeReceivers();
                }
            }
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException && _stopping)
        {
        }
        catch (Exception ex)
        {
            // Never out of the thread (that would end the process, pwsh with it): the tunnel's accepts report it.
            _fault = ex;
        }
        finally
        {
            EndAssociations();
        }
    }

    /// <summary>
    /// The awaited receive loop (inline socket completions: the daemon). A receive that does not complete at once means
    /// the socket is drained: only then are the relays of the associations that got datagrams woken, so each takes its
    /// burst as one Data frame (and the link writes them in one send); a flood is bounded by <see cref="MaxBurst"/>.
    /// </summary>
    private async Task ReceiveLoopAsync()
    {
        var buffer = GC.AllocateUninitializedArray<byte>(65_536, pinned: true);
        var address = new SocketAddress(Socket.AddressFamily);
        try
        {
            while (!_stopping)
            {
                int n;
                try
                {
                    var receive = Socket.ReceiveFromAsync(buffer, SocketFlags.None, address);
                    if (!receive.IsCompleted || _burst >= MaxBurst)
                    {
                        WakeReceivers();
                    }
                    n = await receive.ConfigureAwait(false);
                }
                catch (SocketException ex) when (!_stopping && ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.MessageSize
                    or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
                {
                    continue; // an ICMP error for a datagram sent earlier (Windows reports it here): the socket goes on
                }
                if (_stopping)
                {
                    break;
                }
                Deliver(buffer.AsSpan(0, n), address);
            }
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException or OperationCanceledException && _stopping)
        {
        }
        catch (Exception ex)
        {
            _fault = ex; // the tunnel's accepts report it
        }
        finally
        {
            EndAssociations();
        }
    }

    private void EndAssociations()
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
        _toWake.Clear(); // the loop's own list (this runs at its end)
        _stopped.TrySetResult();
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

    /// <summary>
    /// Sends one datagram to a client, synchronously: the socket is non-blocking, so this never waits (a full socket
    /// buffer throws <see cref="SocketError.WouldBlock"/>: the caller counts the datagram as dropped).
    /// </summary>
    internal void SendTo(ReadOnlySpan<byte> datagram, SocketAddress to) => Socket.SendTo(datagram, SocketFlags.None, to);

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }
        _stopping = true;
        try
        {
            Socket.Shutdown(SocketShutdown.Both); // wakes the receive thread's poll now (a UDP socket reports ENOTCONN and wakes it all the same; .NET's Dispose does it too on Linux)
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        Socket.Dispose();
    }
}

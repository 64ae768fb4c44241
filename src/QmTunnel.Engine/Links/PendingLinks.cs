using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Links;

/// <summary>
/// The connections a server accepted that have not logged in yet ("pending links"), with two caps: at most
/// <see cref="MaxPerSource"/> from one source (an IPv4 address, an IPv6 /64) — a new one over it is refused at once —
/// and at most <see cref="MaxTotal"/> in all — a new one over it makes room by evicting the OLDEST pending connection,
/// so a flood cannot keep out a peer that completes its handshake quickly. It counts and decides; it does not close
/// sockets itself (the caller aborts what it is handed back) and knows nothing of TLS or the handshake.
/// </summary>
internal sealed class PendingLinks(int maxTotal, int maxPerSource)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<PendingLink> _byAge = new();
    private readonly Dictionary<SourceKey, int> _perSource = [];
    private long _peak, _refused, _evicted;

    public int MaxTotal { get; } = maxTotal;
    public int MaxPerSource { get; } = maxPerSource;

    /// <summary>Pending connections now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _byAge.Count;
            }
        }
    }

    /// <summary>The most pending connections there ever were at once.</summary>
    public long Peak => Interlocked.Read(ref _peak);
    /// <summary>New connections closed at once because their source had <see cref="MaxPerSource"/> pending.</summary>
    public long Refused => Interlocked.Read(ref _refused);
    /// <summary>Pending connections closed to make room for a new one (<see cref="MaxTotal"/> reached).</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    /// <summary>
    /// Admits <paramref name="link"/>, or refuses it (false) when its source is at its cap. When the total is at its cap,
    /// the oldest pending link is taken out and returned in <paramref name="evicted"/> for the caller to abort.
    /// </summary>
    public bool TryAdd(PendingLink link, out PendingLink? evicted)
    {
        evicted = null;
        lock (_lock)
        {
            _perSource.TryGetValue(link.Source, out var fromSource);
            if (fromSource >= MaxPerSource)
            {
                _refused++;
                return false;
            }
            if (_byAge.Count >= MaxTotal && _byAge.First is { } oldest)
            {
                RemoveLocked(oldest.Value);
                _evicted++;
                evicted = oldest.Value;
            }
            _perSource[link.Source] = fromSource + 1;
            link.Node = _byAge.AddLast(link);
            if (_byAge.Count > _peak)
            {
                _peak = _byAge.Count;
            }
            return true;
        }
    }

    /// <summary>
    /// Takes a link out (it logged in, failed, or was aborted). False when it was no longer in: evicted or removed
    /// with <see cref="RemoveAll"/>, so whoever took it out aborts it.
    /// </summary>
    public bool Remove(PendingLink link)
    {
        lock (_lock)
        {
            return RemoveLocked(link);
        }
    }

    /// <summary>The pending links now, oldest first (for tests and diagnostics).</summary>
    public PendingLink[] Snapshot()
    {
        lock (_lock)
        {
            return [.. _byAge];
        }
    }

    /// <summary>Takes every pending link out (the server stops), for the caller to abort.</summary>
    public PendingLink[] RemoveAll()
    {
        lock (_lock)
        {
            var all = _byAge.ToArray();
            foreach (var link in all)
            {
                RemoveLocked(link);
            }
            return all;
        }
    }

    private bool RemoveLocked(PendingLink link)
    {
        if (link.Node is not { } node)
        {
            return false;
        }
        _byAge.Remove(node);
        link.Node = null;
        if (_perSource.TryGetValue(link.Source, out var n) && n > 1)
        {
            _perSource[link.Source] = n - 1;
        }
        else
        {
            _perSource.Remove(link.Source);
        }
        return true;
    }
}

/// <summary>
/// One accepted connection before its login: the socket, the token that ends its handshake (time-out, eviction, server
/// stop) and its source. <see cref="Abort"/> closes it with a reset, so nothing lingers on either side.
/// </summary>
internal sealed class PendingLink(Socket socket, IPAddress address, string peer, CancellationTokenSource handshake)
{
    public Socket Socket { get; } = socket;
    public SourceKey Source { get; } = SourceKey.Of(address);
    /// <summary>"address:port" of the peer, for logs.</summary>
    public string Peer { get; } = peer;
    public CancellationTokenSource Handshake { get; } = handshake;
    public DateTimeOffset AcceptedAt { get; init; }
    /// <summary>Set when it was closed to make room for a newer one (logged then, not again when its handshake ends).</summary>
    public bool Evicted
    {
        get => Volatile.Read(ref _evicted);
        set => Volatile.Write(ref _evicted, value);
    }
    private bool _evicted;
    /// <summary>The stream under its TLS, once the TLS handshake started (null on a plain connection).</summary>
    public CoalescingStream? Transport { get; set; }

    /// <summary>Logged in: out of the pending table (nothing evicts it any more), its handshake finishing.</summary>
    public bool LoggedIn { get; set; }
    internal LinkedListNode<PendingLink>? Node { get; set; }

    /// <summary>Ends the handshake and closes the socket with a reset (no FIN, no TIME_WAIT).</summary>
    public void Abort()
    {
        try
        {
            Handshake.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        AbortSocket(Socket);
    }

    /// <summary>Closes <paramref name="socket"/> with a reset.</summary>
    public static void AbortSocket(Socket socket)
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
}

/// <summary>
/// Where a connection comes from, for the per-source cap: an IPv4 address (an IPv4-mapped IPv6 address counts as its
/// IPv4 address), or the /64 network of an IPv6 address (one host, or one site, usually holds a whole /64).
/// </summary>
internal readonly record struct SourceKey(ulong High, ulong Low)
{
    public static SourceKey Of(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        Span<byte> bytes = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            // ::ffff:a.b.c.d — never equal to an IPv6 /64 key, whose low half is always 0.
            bytes[10] = 0xff;
            bytes[11] = 0xff;
            address.TryWriteBytes(bytes[12..], out _);
            return new SourceKey(0, BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
        }
        address.TryWriteBytes(bytes, out _);
        return new SourceKey(BinaryPrimitives.ReadUInt64BigEndian(bytes), 0);
    }

    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, High);
        BinaryPrimitives.WriteUInt64BigEndian(bytes[8..], Low);
        return Low != 0 ? new IPAddress(bytes[12..]).ToString() : new IPAddress(bytes) + "/64";
    }
}

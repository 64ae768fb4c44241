using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tunnels;

/// <summary>One application connection of a tunnel while it lives and for a while after.</summary>
internal sealed class ConnectionRecord(long id, string client, string target, DateTimeOffset connectedAt, TrafficCounters? counters = null, bool reverse = false)
{
    public long Id { get; } = id;
    public string Client { get; } = client;
    /// <summary>The target the connection's handler chose (the tunnel's, or one a SOCKS client named).</summary>
    public string Target { get; set; } = target;
    public DateTimeOffset ConnectedAt { get; } = connectedAt;
    /// <summary>The stream's counters. A reverse tunnel's record (at its owner) counts the far client's bytes as the stream's output.</summary>
    public TrafficCounters Counters { get; } = counters ?? new();
    public bool Reverse { get; } = reverse;
    /// <summary>A UDP association's datagram counts (null for a byte-stream connection).</summary>
    public DatagramCounters? Datagrams { get; set; }
    public long BytesFromClient => Datagrams?.BytesIn ?? (Reverse ? Counters.AppBytesOut : Counters.AppBytesIn);
    public long BytesToClient => Datagrams?.BytesOut ?? (Reverse ? Counters.AppBytesIn : Counters.AppBytesOut);
    public volatile ConnectionState State = ConnectionState.Connecting;
    public DateTimeOffset? DisconnectedAt;
    public string? Error;

    public ConnectionInfo Snapshot(string tunnel) => new()
    {
        Id = Id,
        Tunnel = tunnel,
        Client = Client,
        Target = Target,
        State = State,
        Direction = Reverse ? TunnelDirection.RemoteToLocal : TunnelDirection.LocalToRemote,
        BytesFromClient = BytesFromClient,
        BytesToClient = BytesToClient,
        DatagramsFromClient = Datagrams?.DatagramsIn,
        DatagramsToClient = Datagrams?.DatagramsOut,
        DatagramsDropped = Datagrams?.Dropped,
        ConnectedAt = ConnectedAt,
        DisconnectedAt = DisconnectedAt,
        Error = Error,
    };
}

/// <summary>
/// The per-connection list of a tunnel, as in the original: at most <see cref="MaxEntries"/> entries; closed ones
/// are kept for <see cref="KeepClosed"/>. When full, the oldest closed entry goes first, then the oldest open one
/// (its bytes still count in the tunnel's statistics). Thread-safe; time from the injected TimeProvider.
/// </summary>
internal sealed class ConnectionLog(TimeProvider time, int maxEntries = ConnectionLog.MaxEntries)
{
    public const int MaxEntries = 200;
    public static readonly TimeSpan KeepClosed = TimeSpan.FromHours(1);
    private readonly LinkedList<ConnectionRecord> _entries = new();
    private readonly object _gate = new();
    private long _nextId;

    public ConnectionRecord Add(string client, string target, TrafficCounters? counters = null, bool reverse = false)
    {
        var record = new ConnectionRecord(Interlocked.Increment(ref _nextId), client, target, time.GetUtcNow(), counters, reverse);
        lock (_gate)
        {
            Prune();
            if (_entries.Count >= maxEntries)
            {
                var victim = _entries.First;
                for (var node = _entries.First; node is not null; node = node.Next)
                {
                    if (node.Value.State is ConnectionState.Closed or ConnectionState.Failed)
                    {
                        victim = node;
                        break;
                    }
                }
                _entries.Remove(victim!);
            }
            _entries.AddLast(record);
        }
        return record;
    }

    public void Close(ConnectionRecord record, string? error)
    {
        lock (_gate)
        {
            record.Error = error;
            record.DisconnectedAt = time.GetUtcNow();
            record.State = error is null ? ConnectionState.Closed : ConnectionState.Failed;
        }
    }

    public IReadOnlyList<ConnectionInfo> Snapshot(string tunnel)
    {
        lock (_gate)
        {
            Prune();
            return _entries.Select(e => e.Snapshot(tunnel)).ToList();
        }
    }

    private void Prune()
    {
        var cutoff = time.GetUtcNow() - KeepClosed;
        var node = _entries.First;
        while (node is not null)
        {
            var next = node.Next;
            if (node.Value.DisconnectedAt is { } at && at < cutoff)
            {
                _entries.Remove(node);
            }
            node = next;
        }
    }
}

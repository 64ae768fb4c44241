using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The Bind streams this server opened, per link (docs/protocol.md, "Reverse tunnels"): the owner of a reverse tunnel
/// registers its Bind, a gateway the Bind it passes on. A Reverse stream the peer opens is taken only when it names a
/// Bind registered on the very link it came on, so stream ids (scoped per link) cannot be forged from another link, and
/// only while fewer than the Bind's MaxConnections Reverse streams of it are open. A registration ends with its Bind.
/// </summary>
internal sealed class ReverseBinds
{
    private readonly ConditionalWeakTable<Link, ConcurrentDictionary<uint, Entry>> _links = new();

    /// <summary>What a Reverse stream of a registered Bind is handed to: the stream, its Open, the server's shutdown.</summary>
    internal delegate Task Accept(MuxStream reverse, OpenMessage open, CancellationToken cancellationToken);

    /// <summary>One registered Bind: its limit and how many of its Reverse streams are open.</summary>
    internal sealed class Entry(string tunnel, int max, Accept accept)
    {
        private int _open;
        public string Tunnel { get; } = tunnel;
        public int Max { get; } = max;
        public Accept Handler { get; } = accept;
        public int Open => Volatile.Read(ref _open);

        public bool TryEnter()
        {
            while (true)
            {
                var open = Volatile.Read(ref _open);
                if (open >= Max)
                {
                    return false;
                }
                if (Interlocked.CompareExchange(ref _open, open + 1, open) == open)
                {
                    return true;
                }
            }
        }

        public void Leave() => Interlocked.Decrement(ref _open);
    }

    /// <summary>
    /// Registers <paramref name="bind"/> (a stream this server opened, from <see cref="Link.OpenStream(OpenMessage, TrafficCounters, int, Action{MuxStream})"/>'s
    /// callback, before its Open is sent) until the returned registration is disposed.
    /// </summary>
    public IDisposable Register(MuxStream bind, string tunnel, int max, Accept accept)
    {
        var binds = _links.GetValue(bind.Link, _ => new ConcurrentDictionary<uint, Entry>());
        binds[bind.Id] = new Entry(tunnel, max, accept);
        return new Registration(binds, bind.Id);
    }

    /// <summary>Ends the registration of <paramref name="bind"/> (nothing when it has none).</summary>
    public void Unregister(MuxStream bind)
    {
        if (_links.TryGetValue(bind.Link, out var binds))
        {
            binds.TryRemove(bind.Id, out _);
        }
    }

    /// <summary>Binds registered now on <paramref name="link"/> (tests, diagnostics).</summary>
    public int CountOn(Link link) => _links.TryGetValue(link, out var binds) ? binds.Count : 0;

    /// <summary>
    /// The Bind a Reverse stream on <paramref name="link"/> names, entered (one more of its streams open: call
    /// <see cref="Entry.Leave"/> when it ends); or null with the refusal's code and reason.
    /// </summary>
    public (Entry? Entry, ProtocolErrorCode Code, string? Refusal) TryEnter(Link link, uint bindStreamId, string serverName)
    {
        if (!_links.TryGetValue(link, out var binds) || !binds.TryGetValue(bindStreamId, out var entry))
        {
            return (null, ProtocolErrorCode.PermissionDenied,
                $"{serverName} takes a Reverse stream only for a Bind it opened on the same link, and stream {bindStreamId} of the link from {link.Peer.ServerName} is none (no reverse tunnel of {serverName} listens there now).");
        }
        if (!entry.TryEnter())
        {
            return (null, ProtocolErrorCode.StreamLimit,
                $"{serverName}: reverse tunnel '{entry.Tunnel}' already has {entry.Max} connections open through this Bind (its MaxConnections); the client is refused.");
        }
        return (entry, ProtocolErrorCode.None, null);
    }

    private sealed class Registration(ConcurrentDictionary<uint, Entry> binds, uint id) : IDisposable
    {
        public void Dispose() => binds.TryRemove(id, out _);
    }
}

using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tunnels;

/// <summary>A tunnel's counters, summed on demand, and their carrying over to a runtime made for changed settings.</summary>
internal sealed partial class TunnelRuntime
{
    /// <summary>The counters now, with <paramref name="hops"/> (<see cref="GetHopsAsync"/>) when given, else no hops.</summary>
    public TunnelStats GetStats(HopSnapshot? hops = null)
    {
        lock (_statsGate)
        {
            long appIn = _closedIn, appOut = _closedOut, linkSent = _closedLinkSent, linkReceived = _closedLinkReceived;
            foreach (var record in _open)
            {
                appIn += record.BytesFromClient;
                appOut += record.BytesToClient;
                linkSent += record.Counters.LinkBytesSent;
                linkReceived += record.Counters.LinkBytesReceived;
            }
            var datagrams = new DatagramCounters();
            datagrams.Add(_closedDatagrams);
            foreach (var record in _open)
            {
                if (record.Datagrams is { } open)
                {
                    datagrams.Add(open);
                }
            }
            if (_listen.IsDatagram)
            {
                appIn = datagrams.BytesIn; // payload bytes, without the 2-byte frame lengths
                appOut = datagrams.BytesOut;
                datagrams.AddDropped(_listenerDropped + ((_listener as UdpAssociationListener)?.Dropped ?? 0));
            }
            var link = IsRunning ? _links.TryGet(_firstHop, _firstLogin, Session) : null;
            link?.RefreshRoundTrip(TimeSpan.FromSeconds(1));
            return new TunnelStats
            {
                Name = Profile.Name,
                State = State,
                Direction = Profile.Direction,
                BytesFromClients = appIn,
                BytesToClients = appOut,
                LinkBytesSent = linkSent,
                LinkBytesReceived = linkReceived,
                ConnectionsTotal = _total,
                ConnectionsCurrent = _open.Count,
                FailedConnections = Interlocked.Read(ref _failed),
                RejectedConnections = _rejected,
                DatagramsFromClients = datagrams.DatagramsIn,
                DatagramsToClients = datagrams.DatagramsOut,
                DatagramsDropped = datagrams.Dropped,
                LinkLatency = link?.LastRoundTrip,
                Hops = hops?.Hops ?? [],
                EndToEndLatency = hops?.EndToEndLatency,
                StartedAt = IsRunning ? StartedAt : null,
                LastError = LastError,
                LastErrorAt = LastErrorAt,
            };
        }
    }

    /// <summary>Carries counters and the connection list over to a runtime made for a changed profile.</summary>
    public void CopyHistoryFrom(TunnelRuntime previous)
    {
        lock (previous._statsGate)
        {
            _total = previous._total;
            _failed = previous._failed;
            _rejected = previous._rejected;
            _closedIn = previous._closedIn;
            _closedOut = previous._closedOut;
            _closedLinkSent = previous._closedLinkSent;
            _closedLinkReceived = previous._closedLinkReceived;
            _closedDatagrams.Add(previous._closedDatagrams);
            _listenerDropped = previous._listenerDropped;
            LastError = previous.LastError;
            LastErrorAt = previous.LastErrorAt;
        }
    }
}

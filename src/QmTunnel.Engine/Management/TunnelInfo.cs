using QmTunnel.Engine.Errors;
namespace QmTunnel.Engine.Management;

/// <summary>
/// What Get-QmTunnel shows: a tunnel's profile and its state on the owning server. A snapshot, not live.
/// Type name <c>QmTunnel.Engine.Management.TunnelInfo</c> is keyed by the module's format file.
/// </summary>
public sealed class TunnelInfo : QmTunnelObject
{
    /// <summary>
    /// A snapshot of a tunnel. The hop logins of <paramref name="profile"/> are reduced to <see cref="Hops"/> (who logs
    /// in where, and how): the keys stay in the engine and are in no output object.
    /// </summary>
    public TunnelInfo(TunnelProfile profile, TunnelState state, string? boundListen, string? lastError)
        : this(profile, state, boundListen, lastError, TunnelHopInfo.For(profile))
    {
    }

    internal TunnelInfo(TunnelProfile profile, TunnelState state, string? boundListen, string? lastError, IReadOnlyList<TunnelHopInfo> hops)
    {
        Profile = profile.Credentials.Count == 0 ? profile : profile with { Credentials = [] };
        State = state;
        BoundListen = boundListen;
        LastError = lastError;
        Hops = hops;
    }

    /// <summary>The tunnel's settings, without its hop logins (see <see cref="Hops"/>).</summary>
    public TunnelProfile Profile { get; }
    /// <summary>Each server of <see cref="Via"/>, with the user the tunnel logs in as there and how (never the keys).</summary>
    public IReadOnlyList<TunnelHopInfo> Hops { get; }
    public string Name => Profile.Name;
    public TunnelState State { get; }
    public string Listen => Profile.Listen;
    /// <summary>The address actually listened on while running (shows the port picked for port 0).</summary>
    public string? BoundListen { get; }
    public IReadOnlyList<string> Via => Profile.Via;
    public string Target => Profile.Target;
    public TunnelDirection Direction => Profile.Direction;
    public TunnelProtocol Protocol => Profile.Protocol;
    public int MaxConnections => Profile.MaxConnections;
    public TimeSpan ConnectTimeout => Profile.ConnectTimeout;
    public bool NoDelay => Profile.NoDelay;
    public bool KeepAlive => Profile.KeepAlive;
    public int BufferSize => Profile.BufferSize;
    public bool Persistent => Profile.Persistent;
    /// <summary>When the chain is held up: PerConnection, Permanent or OnDemand.</summary>
    public TunnelMode Mode => Profile.Mode;
    /// <summary>OnDemand: no client for this long takes the chain down (the setting is kept in the other modes too).</summary>
    public TimeSpan IdleTimeout => Profile.IdleTimeout;
    /// <summary>How long a broken link's session waits for its transport before the application connections are closed.</summary>
    public TimeSpan FailureTolerance => Profile.FailureTolerance;
    /// <summary>udp:// tunnels: an association with no datagram either way for this long ends.</summary>
    public TimeSpan UdpIdleTimeout => Profile.UdpIdleTimeout;
    public bool AutoStart => Profile.AutoStart;
    public string Description => Profile.Description;
    public DateTimeOffset CreatedAt => Profile.CreatedAt;
    public DateTimeOffset ModifiedAt => Profile.ModifiedAt;
    /// <summary>The user who created the tunnel (it sees and changes it; so do its group's and all administrators).</summary>
    public string Owner => Profile.Owner;
    public string OwnerGroup => Profile.OwnerGroup;
    public string? LastError { get; }

    public override string ToString() => Name;
}

/// <summary>How a tunnel logs in to one server of its chain.</summary>
public enum HopLoginKind
{
    /// <summary>No login is kept for this hop.</summary>
    None,
    /// <summary>Keys derived from the user's password for that server (the password itself is kept nowhere).</summary>
    Password,
    /// <summary>A client certificate file on the owning server.</summary>
    Certificate,
}

/// <summary>One server of a tunnel's chain as output objects show it: its address and who logs in there, never a key.</summary>
public sealed record TunnelHopInfo(string Server, string? User, HopLoginKind Login)
{
    /// <summary>The hops of <paramref name="profile"/> (one per Via entry).</summary>
    public static IReadOnlyList<TunnelHopInfo> For(TunnelProfile profile) =>
        profile.Via.Select((via, i) =>
        {
            var credential = i < profile.Credentials.Count ? profile.Credentials[i] : null;
            var kind = credential is null ? HopLoginKind.None : credential.HasKeys ? HopLoginKind.Password : HopLoginKind.Certificate;
            try
            {
                var uri = Endpoints.EndpointUri.ParseServer(via, "Via");
                return new TunnelHopInfo((uri with { User = null }).ToString(), credential?.User ?? uri.User, kind);
            }
            catch (QmTunnelException)
            {
                return new TunnelHopInfo(via, credential?.User, kind);
            }
        }).ToList();

    public override string ToString() => User is null ? Server : $"{User} at {Server}";
}

/// <summary>Counters of one tunnel on its owning server, read at one moment. Counters reset when the server restarts.</summary>
public sealed class TunnelStats : QmTunnelObject
{
    public required string Name { get; init; }
    public required TunnelState State { get; init; }
    /// <summary>Application bytes received from clients and sent into the tunnel.</summary>
    public long BytesFromClients { get; init; }
    /// <summary>Application bytes that came out of the tunnel and were sent to clients.</summary>
    public long BytesToClients { get; init; }
    /// <summary>Bytes this tunnel's streams put on the link to the first hop (frames with headers).</summary>
    public long LinkBytesSent { get; init; }
    /// <summary>Bytes this tunnel's streams took off the link from the first hop (frames with headers).</summary>
    public long LinkBytesReceived { get; init; }
    public long ConnectionsTotal { get; init; }
    public long ConnectionsCurrent { get; init; }
    /// <summary>Connections whose target (or a hop) could not be reached; each client was reset.</summary>
    public long FailedConnections { get; init; }
    /// <summary>Clients refused because MaxConnections were already open.</summary>
    public long RejectedConnections { get; init; }
    /// <summary>udp:// tunnels: datagrams from clients carried into the tunnel (BytesFromClients counts their payload).</summary>
    public long DatagramsFromClients { get; init; }
    /// <summary>udp:// tunnels: datagrams out of the tunnel sent to clients.</summary>
    public long DatagramsToClients { get; init; }
    /// <summary>
    /// udp:// tunnels: datagrams dropped, either way: no credit in the association's stream, its queue full, a new client
    /// over MaxConnections or the backlog, an empty datagram, one the network refused (UDP semantics: never waited for).
    /// </summary>
    public long DatagramsDropped { get; init; }
    /// <summary>Round trip of the link to the first hop (a Ping, refreshed at most once a second when stats are read); null while no link is up.</summary>
    public TimeSpan? LinkLatency { get; init; }
    /// <summary>
    /// Each hop of the chain, in order: its server, link state, latency, reconnects, resumes and link bytes (hop 1 from
    /// this server's own link, the others asked of the gateways along the chain when the stats are read, each answer
    /// awaited 2 s at most). Empty while the tunnel is not running.
    /// </summary>
    public IReadOnlyList<TunnelHopStats> Hops { get; init; } = [];
    /// <summary>
    /// The round trip from this server to the last server of the chain: for one hop, its latency; for more, the round
    /// trip of the query to the last gateway (through every link but the last, and each gateway's handling of a stream,
    /// as a new connection's first bytes see them) plus the last hop's latency. The target's own network is not in it.
    /// Null when a hop is not up or did not answer.
    /// </summary>
    public TimeSpan? EndToEndLatency { get; init; }
    /// <summary>The Hops column of the table: "2 up", or how many hops are in the worst state ("1 down", "1 ?", "1 res").</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string HopSummary => TunnelHopStats.Summary(Hops);
    /// <summary>The tunnel's direction: RemoteToLocal for a reverse tunnel, whose clients connect to the last server of the chain.</summary>
    public TunnelDirection Direction { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public string? LastError { get; init; }
    public DateTimeOffset? LastErrorAt { get; init; }
}

/// <summary>State of one application connection in a tunnel's connection list.</summary>
public enum ConnectionState
{
    /// <summary>Accepted; the far end has not confirmed the target yet.</summary>
    Connecting,
    Open,
    Closed,
    Failed,
}

/// <summary>One application connection of a tunnel, as Get-QmTunnelConnection shows it. A snapshot.</summary>
public sealed class ConnectionInfo : QmTunnelObject
{
    public required long Id { get; init; }
    public required string Tunnel { get; init; }
    public required string Client { get; init; }
    public required string Target { get; init; }
    public required ConnectionState State { get; init; }
    /// <summary>
    /// RemoteToLocal: a connection of a reverse tunnel, whose client connected to the far listener on the last server of
    /// the chain (Client is the address that server saw) and whose target was dialed from the owning server.
    /// </summary>
    public TunnelDirection Direction { get; init; }
    public long BytesFromClient { get; init; }
    public long BytesToClient { get; init; }
    /// <summary>UDP associations: datagrams from the client into the tunnel (null for a byte-stream connection).</summary>
    public long? DatagramsFromClient { get; init; }
    /// <summary>UDP associations: datagrams out of the tunnel to the client.</summary>
    public long? DatagramsToClient { get; init; }
    /// <summary>UDP associations: datagrams dropped either way (no credit in the stream, a full queue, the network refused one).</summary>
    public long? DatagramsDropped { get; init; }
    public required DateTimeOffset ConnectedAt { get; init; }
    public DateTimeOffset? DisconnectedAt { get; init; }
    public string? Error { get; init; }
    public TimeSpan Duration => (DisconnectedAt ?? DateTimeOffset.UtcNow) - ConnectedAt;
}

/// <summary>A running qmTunnel server, as Start-/Get-QmTunnelServer show it.</summary>
public sealed class ServerInfo : QmTunnelObject
{
    public required string ServerId { get; init; }
    public required string ListenAddress { get; init; }
    public required int Port { get; init; }
    public required string DataPath { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    /// <summary>Process id for a daemon; null for the engine inside this pwsh process.</summary>
    public int? ProcessId { get; init; }
    private readonly bool? _isDaemon;
    /// <summary>True for qmtunnel-server (a separate process), false for an engine inside a pwsh process.</summary>
    public bool IsDaemon { get => _isDaemon ?? ProcessId is not null; init => _isDaemon = value; }
    public string Kind => IsDaemon ? "Daemon" : "InProcess";
    public int Tunnels { get; init; }
    /// <summary>Links up now: those other servers and sessions opened to this one, and those it dialed.</summary>
    public int Links { get; init; }
    public long TransitStreams { get; init; }
    public long ProtocolErrors { get; init; }
    /// <summary>SHA-256 of the server's TLS certificate (hex): what peers pin, and what openssl s_client shows.</summary>
    public string? CertificateThumbprint { get; init; }
    /// <summary>Whether unencrypted links (qmt+plain://) are accepted.</summary>
    public bool AllowPlainLinks { get; init; }
    /// <summary>Plain links refused because AllowPlainLinks is off.</summary>
    public long PlainLinksRefused { get; init; }
    /// <summary>Streams open now on all of the server's links (accepted and dialed): connections it carries, management requests.</summary>
    public int OpenStreams { get; init; }
    /// <summary>Connections accepted that have not logged in yet (at most ServerOptions.MaxPendingLinks).</summary>
    public int PendingLinks { get; init; }
    /// <summary>The most connections that were ever waiting for their login at once since the server started.</summary>
    public long PendingLinksPeak { get; init; }
    /// <summary>New connections closed at once because their source had MaxPendingLinksPerSource waiting already.</summary>
    public long PendingLinksRefused { get; init; }
    /// <summary>Connections closed before their login to make room for a new one (MaxPendingLinks reached; oldest first).</summary>
    public long PendingLinksEvicted { get; init; }
    /// <summary>Connections closed because they had not logged in within the handshake timeout (10 s) of connecting.</summary>
    public long PendingLinksTimedOut { get; init; }
    /// <summary>New links refused right after their login because the server held MaxLinks link sessions (GoAway LinkLimit).</summary>
    public long LinksRefused { get; init; }
    /// <summary>Streams refused because the peer already had MaxStreamsPerLink open on that link (Reset StreamLimit).</summary>
    public long StreamsRefused { get; init; }
    /// <summary>Bytes held now in the send queues of all links (queued, reserved, kept until acknowledged), at most MaxBufferedMB for data.</summary>
    public long BufferedBytes { get; init; }
    /// <summary>The most <see cref="BufferedBytes"/> held at once since the server started.</summary>
    public long BufferedBytesPeak { get; init; }
    /// <summary>Times a sender of data waited because the links together held MaxBufferedMB.</summary>
    public long BufferWaits { get; init; }
    public string Address => $"qmt://{(ListenAddress is "0.0.0.0" ? "127.0.0.1" : ListenAddress is "::" ? "[::1]" : ListenAddress.Contains(':', StringComparison.Ordinal) ? "[" + ListenAddress + "]" : ListenAddress)}:{Port}";
    /// <summary>The same server for unencrypted links (accepted only when AllowPlainLinks is on).</summary>
    public string PlainAddress => "qmt+plain" + Address[3..];
    public override string ToString() => Address;
}

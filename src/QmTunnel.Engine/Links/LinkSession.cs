using System.Collections.Concurrent;
using System.Security.Cryptography;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>State of a link session.</summary>
public enum LinkState
{
    /// <summary>A connection carries the session.</summary>
    Up,
    /// <summary>The connection was lost; the session waits (within its failure tolerance) for a new one.</summary>
    Resuming,
    /// <summary>The session ended.</summary>
    Closed,
}

/// <summary>
/// What a link session keeps through outages and how it watches its connection: the failure tolerance (how long it
/// waits for a new connection; Zero: it ends with its first one), the heartbeat interval and receive timeout both ends
/// run (Zero: off), the dialer's reconnect backoff, and, once agreed, the session's id and secret.
/// </summary>
public sealed record LinkSessionSettings
{
    /// <summary>No session kept, no heartbeats: a link that ends with its connection.</summary>
    public static LinkSessionSettings None { get; } = new() { FailureTolerance = TimeSpan.Zero, HeartbeatInterval = TimeSpan.Zero, ReceiveTimeout = TimeSpan.Zero };

    /// <summary>The defaults: 30 s of failure tolerance, a heartbeat every 10 s, dead after 15 s of silence.</summary>
    public static LinkSessionSettings Default { get; } = new();

    /// <summary>Default of <see cref="FailureTolerance"/>.</summary>
    public static TimeSpan DefaultFailureTolerance => TimeSpan.FromSeconds(30);

    public TimeSpan FailureTolerance { get; init; } = DefaultFailureTolerance;
    public TimeSpan HeartbeatInterval { get; init; } = LinkTiming.Default.HeartbeatInterval;
    public TimeSpan ReceiveTimeout { get; init; } = LinkTiming.Default.ReceiveTimeout;

    /// <summary>The dialer's reconnect backoff and per-attempt timeout.</summary>
    public LinkTiming Timing { get; init; } = LinkTiming.Default;

    /// <summary>
    /// The link's compression (docs/protocol.md, "Compression"): before the handshake what the dialer asks for (its hop's
    /// setting), after it what the Hellos agreed, with this side's level. Kept through resumes: a resumed session compresses
    /// as it did, and the frames it kept are resent as they were.
    /// </summary>
    public LinkCompression Compression { get; init; } = LinkCompression.None;

    /// <summary>The session id (16 bytes), empty until the acceptor gave one.</summary>
    public byte[] Id { get; init; } = [];

    /// <summary>The session secret (32 bytes), empty until the acceptor gave one.</summary>
    public byte[] Secret { get; init; } = [];

    /// <summary>True when the session survives the loss of its connection.</summary>
    public bool Resumable => FailureTolerance > TimeSpan.Zero;

    /// <summary>Settings for a hop's <paramref name="timing"/> and a tunnel's <paramref name="failureTolerance"/>.</summary>
    public static LinkSessionSettings For(LinkTiming timing, TimeSpan failureTolerance) => new()
    {
        FailureTolerance = failureTolerance,
        HeartbeatInterval = timing.HeartbeatInterval,
        ReceiveTimeout = timing.ReceiveTimeout,
        Timing = timing,
    };

    internal SessionStartMessage ToStartMessage() => new(Ms(FailureTolerance), Ms(HeartbeatInterval), Ms(ReceiveTimeout));

    /// <summary>
    /// The acceptor's settings from the dialer's SessionStart: the same heartbeats (each at least 100 ms when on), and
    /// the failure tolerance capped at <paramref name="maxTolerance"/> (a session kept waiting holds memory).
    /// </summary>
    internal static LinkSessionSettings FromStart(SessionStartMessage start, TimeSpan maxTolerance)
    {
        static TimeSpan Clamp(uint ms) => ms == 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Max(ms, 100u));
        var tolerance = TimeSpan.FromMilliseconds(start.FailureToleranceMs);
        return new LinkSessionSettings
        {
            FailureTolerance = tolerance > maxTolerance ? maxTolerance : tolerance,
            HeartbeatInterval = Clamp(start.HeartbeatIntervalMs),
            ReceiveTimeout = Clamp(start.ReceiveTimeoutMs),
        };
    }

    private static uint Ms(TimeSpan value) => (uint)Math.Clamp(value.TotalMilliseconds, 0, uint.MaxValue);

    // Printed without the secret.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("FailureTolerance = ").Append(FailureTolerance).Append(", HeartbeatInterval = ").Append(HeartbeatInterval)
            .Append(", ReceiveTimeout = ").Append(ReceiveTimeout).Append(", Compression = ").Append(Compression).Append(", secret hidden");
        return true;
    }
}

/// <summary>What an acceptor offers with a login: a session id and secret, should the dialer start a session, and a nonce for a Resume.</summary>
internal sealed record LinkSessionOffer(byte[] Id, byte[] Secret, byte[] Nonce)
{
    public static LinkSessionOffer Create() => new(RandomNumberGenerator.GetBytes(16), RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));

    /// <summary>HMAC-SHA256(secret, "qmtunnel resume" ‖ nonce ‖ id): what a Resume proves.</summary>
    public static byte[] Proof(byte[] secret, byte[] nonce, byte[] id) =>
        HMACSHA256.HashData(secret, (byte[])[.. "qmtunnel resume"u8, .. nonce, .. id]);
}

/// <summary>
/// The sessions an acceptor keeps for resumes, by id. A session leaves when it ends. It does not check proofs (the
/// link does) and holds nothing but the sessions themselves.
/// </summary>
internal sealed class LinkSessionRegistry
{
    private readonly ConcurrentDictionary<string, Link> _sessions = new(StringComparer.Ordinal);

    public int Count => _sessions.Count;

    /// <summary>Sessions waiting for their connection to come back.</summary>
    public int Resuming => _sessions.Values.Count(l => l.State == LinkState.Resuming);

    public void Register(Link link)
    {
        var key = Convert.ToHexString(link.Session.Id);
        _sessions[key] = link;
        _ = link.Completion.ContinueWith(_ => _sessions.TryRemove(new KeyValuePair<string, Link>(key, link)), TaskScheduler.Default);
    }

    public Link? TryGet(byte[] id) =>
        id.Length == 16 && _sessions.TryGetValue(Convert.ToHexString(id), out var link) && !link.IsClosed ? link : null;
}

using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace QmTunnel.Engine.Protocol;

/// <summary>A typed control message: the payload of a Hello, GoAway, Open or Reset frame.</summary>
public abstract record ControlMessage
{
    public abstract FrameType FrameType { get; }
}

/// <summary>
/// First frame each way. The dialer offers [MinVersion, MaxVersion]; the acceptor answers with a Hello whose Min
/// and Max are both the chosen version, or with a GoAway(UnsupportedVersion).
/// </summary>
public sealed record HelloMessage(ushort MinVersion, ushort MaxVersion, string ServerId, string ServerName, int MaxPayload, int InitialWindow)
    : ControlMessage
{
    public override FrameType FrameType => FrameType.Hello;

    /// <summary>
    /// Version 4 (docs/protocol.md, "Compression"): in the dialer's Hello the compression it asks for, in the acceptor's
    /// the one agreed (the same algorithm, or None) and the level the acceptor compresses with. Null for a Hello that ends
    /// before these two bytes (what a version 3 peer sends: refused as UnsupportedVersion, not as a malformed frame).
    /// </summary>
    public CompressionOffer? Compression { get; init; } = CompressionOffer.None;
}

/// <summary>
/// The two compression bytes of a Hello: the algorithm (<c>Links.CompressionAlgorithm</c>: 0 none, 1 LZ4, 2 Zstandard)
/// and a level, as raw bytes: a value this side does not know is answered with None, never a parse error.
/// </summary>
public readonly record struct CompressionOffer(byte Algorithm, byte Level)
{
    public static CompressionOffer None => default;
}

/// <summary>The sender closes the link: a code and a human-readable reason.</summary>
public sealed record GoAwayMessage(ProtocolErrorCode Code, string Reason) : ControlMessage
{
    public override FrameType FrameType => FrameType.GoAway;
}

/// <summary>How the dialer of a link logs in. Wire values.</summary>
public enum AuthMethod : byte
{
    /// <summary>SCRAM-SHA-256-style challenge-response (<see cref="Security.PasswordChallenge"/>): the password never crosses the link.</summary>
    Password = 1,
    /// <summary>The client certificate the dialer presented in the TLS handshake, mapped to a user by its SHA-256 thumbprint.</summary>
    Certificate = 2,
}

/// <summary>The dialer's login request, sent right behind its Hello. <see cref="ClientNonce"/> is empty for certificates.</summary>
public sealed record AuthStartMessage(AuthMethod Method, string User, byte[] ClientNonce) : ControlMessage
{
    public override FrameType FrameType => FrameType.AuthStart;
}

/// <summary>The acceptor's answer to a password AuthStart: its nonce and the user's salt and PBKDF2 iteration count.</summary>
public sealed record AuthChallengeMessage(byte[] ServerNonce, byte[] Salt, int Iterations) : ControlMessage
{
    public override FrameType FrameType => FrameType.AuthChallenge;
}

/// <summary>The dialer's proof that it knows the password (32 bytes).</summary>
public sealed record AuthProofMessage(byte[] ClientProof) : ControlMessage
{
    public override FrameType FrameType => FrameType.AuthProof;
}

/// <summary>
/// The login succeeded: the user and group the link acts as, and for passwords the server signature proving the
/// acceptor holds the user's verifier (empty for certificates).
/// </summary>
public sealed record AuthOkMessage(string User, string Group, byte[] ServerSignature) : ControlMessage
{
    public override FrameType FrameType => FrameType.AuthOk;

    /// <summary>
    /// The id (16 bytes) of the link session this login starts, should the dialer start one (<see cref="SessionStartMessage"/>).
    /// Empty when the acceptor keeps no sessions.
    /// </summary>
    public byte[] SessionId { get; init; } = [];

    /// <summary>The secret (32 bytes) that proves, in a later <see cref="ResumeMessage"/>, that the dialer holds this session.</summary>
    public byte[] SessionSecret { get; init; } = [];

    /// <summary>A fresh 32-byte nonce: a <see cref="ResumeMessage"/> on this connection proves its secret over it.</summary>
    public byte[] ResumeNonce { get; init; } = [];

    // Printed without the secret.
    protected override bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("User = ").Append(User).Append(", Group = ").Append(Group).Append(", secrets hidden");
        return true;
    }
}

/// <summary>
/// Dialer → acceptor, right behind the login: start a new link session on this connection. The dialer's settings the
/// acceptor follows: how long it keeps the session when the connection is lost (0: not at all), and the heartbeat
/// interval and receive timeout both ends run (0: off).
/// </summary>
public sealed record SessionStartMessage(uint FailureToleranceMs, uint HeartbeatIntervalMs, uint ReceiveTimeoutMs) : ControlMessage
{
    public override FrameType FrameType => FrameType.SessionStart;
}

/// <summary>
/// Dialer → acceptor, right behind the login: carry on the session <see cref="SessionId"/> on this connection.
/// <see cref="Proof"/> is HMAC-SHA256(session secret, "qmtunnel resume" ‖ ResumeNonce of this connection's AuthOk ‖ id);
/// <see cref="Received"/> counts the numbered frames the dialer received on the session so far.
/// </summary>
public sealed record ResumeMessage(byte[] SessionId, byte[] Proof, ulong Received) : ControlMessage
{
    public override FrameType FrameType => FrameType.Resume;
}

/// <summary>Acceptor → dialer: the session is resumed; <see cref="Received"/> counts the numbered frames the acceptor received.</summary>
public sealed record ResumedMessage(ulong Received) : ControlMessage
{
    public override FrameType FrameType => FrameType.Resumed;
}

/// <summary>Application protocol of a stream. Wire values.</summary>
public enum StreamProtocol : byte
{
    /// <summary>Application bytes to a TCP target.</summary>
    Tcp = 1,
    /// <summary>
    /// Checks a tunnel's route without touching its target: every server authenticates the next and applies its rights
    /// and allow-rules; the last answers OpenAck (allowed) or Reset (PermissionDenied and the reason). No data.
    /// </summary>
    Check = 2,
    /// <summary>
    /// Asks for the login parameters (salt, iterations) a server of the tunnel's chain gives a user: the Open describes
    /// the whole tunnel as for <see cref="Tcp"/> (so every server checks it the same way) and
    /// <see cref="OpenMessage.QueryDepth"/> says how many route entries are linked through first; the server reached
    /// then makes a login query (no login) to the next entry, <c>qmt://user@host:port</c>, and answers OpenAck and one
    /// data payload (u16 salt length, salt, i32 iterations), then Fin. Lets the owner of a tunnel derive keys for a
    /// server it cannot reach itself.
    /// </summary>
    AuthQuery = 3,
    /// <summary>A management request of the link's user (docs/protocol.md, "Management"); no target, no route.</summary>
    Management = 4,
    /// <summary>
    /// Holds a tunnel's chain up (permanent and on-demand tunnels): the Open describes the tunnel exactly as for
    /// <see cref="Tcp"/> and every server admits it the same way (rights and allow-rules); each gateway opens a Hold to
    /// the next server; the last answers OpenAck without touching the target and keeps the stream open, with no data,
    /// until the owner's Fin (answered with Fin) or a Reset (a broken link: LinkLost; a server stopping: Shutdown). So
    /// an acknowledged, open Hold means every link of the chain is up and the last server accepts the tunnel.
    /// </summary>
    Hold = 5,
    /// <summary>
    /// Asks a server of the tunnel's chain about its link to the next one (Get-QmTunnelStats' hops): the Open describes
    /// the whole tunnel as for <see cref="Tcp"/> (so every server admits it the same way) and
    /// <see cref="OpenMessage.QueryDepth"/> says how many route entries it is carried through first, over links that are
    /// up only (a gateway never dials for it). The server reached answers OpenAck, one <see cref="LinkInfoRecord"/>
    /// describing its link to the next route entry, and Fin; a gateway whose next link is not up answers the same way
    /// for that link, with the depth it did not reach.
    /// </summary>
    LinkInfo = 6,
    /// <summary>
    /// A reverse tunnel's listener (docs/protocol.md, "Reverse tunnels"): the Open describes the tunnel as for a Hold,
    /// with <see cref="OpenOptions.RemoteToLocal"/> and <see cref="OpenMessage.MaxConnections"/>; every server admits it
    /// (rights and R# allow-rules), each gateway passes it on, and the last server listens on
    /// <see cref="OpenMessage.Listen"/>, answers OpenAck and one Data payload (u16 length, the bound endpoint as UTF-8)
    /// and keeps the listener while the stream is open. Each client it accepts comes back as a <see cref="Reverse"/> stream.
    /// </summary>
    Bind = 7,
    /// <summary>
    /// One client of a reverse tunnel's far listener, opened toward the tunnel's owner on the link a Bind came in on,
    /// naming that Bind's id on this link (<see cref="OpenMessage.BindStreamId"/>); accepted only for a Bind the receiver
    /// opened on that very link. Carries the client's bytes like a Tcp stream; the owner connects to its target.
    /// </summary>
    Reverse = 8,
    /// <summary>
    /// One UDP association (version 4, docs/protocol.md "UDP associations"): the Open describes the tunnel as for
    /// <see cref="Tcp"/> with a <c>udp://</c> target; the last server dials it with a UDP socket. Data carries datagrams
    /// framed as u16 length (1 to 65,507) + payload, so boundaries are kept end to end; Fin ends the association.
    /// </summary>
    Udp = 9,
}

/// <summary>
/// A login the receiver of an Open uses for the next server of its route: the user and SCRAM keys derived for that
/// server's salt and iteration count (password-equivalent for that server only: sent only inside TLS).
/// </summary>
public sealed record RouteCredential(string User, byte[] Salt, int Iterations, byte[] ClientKey, byte[] ServerKey)
{
    // Printed (logs, test names) with the user only: the keys log in as that user on that server.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("User = ").Append(User).Append(", keys hidden");
        return true;
    }
}

/// <summary>Socket options the far end applies to its outgoing connection. Wire values.</summary>
[Flags]
public enum OpenOptions : byte
{
    None = 0,
    NoDelay = 0x01,
    KeepAlive = 0x02,
    /// <summary>
    /// The Open describes a reverse (RemoteToLocal) tunnel: <see cref="OpenMessage.Listen"/> is on the last server and
    /// <see cref="OpenMessage.Target"/> is reached from the owner; allow-rules see it as <c>R#target#servers…#listen</c>.
    /// </summary>
    RemoteToLocal = 0x04,
}

/// <summary>
/// Opens a stream: carry it to <see cref="Target"/>, through the servers in <see cref="Route"/> first (empty when
/// the receiver is the last hop). <see cref="Tunnel"/> and <see cref="Client"/> are informational (logs, stats).
/// </summary>
public sealed record OpenMessage(StreamProtocol Protocol, string Tunnel, string Target, IReadOnlyList<string> Route,
    int ConnectTimeoutMs, OpenOptions Options, string Client) : ControlMessage
{
    public override FrameType FrameType => FrameType.Open;

    /// <summary>The tunnel's listening endpoint on its first server (host:port), for allow-rules.</summary>
    public string Listen { get; init; } = string.Empty;

    /// <summary>Every server of the tunnel's chain after the first (host:port), for allow-rules.</summary>
    public IReadOnlyList<string> Servers { get; init; } = [];

    /// <summary>One login per <see cref="Route"/> entry (null: none given), or empty.</summary>
    public IReadOnlyList<RouteCredential?> RouteCredentials { get; init; } = [];

    /// <summary>
    /// <see cref="StreamProtocol.AuthQuery"/> and <see cref="StreamProtocol.LinkInfo"/> only (0 otherwise): how many
    /// <see cref="Route"/> entries are linked through before the server reached answers about the next one (a login
    /// query; its link's state). Less than the route's length.
    /// </summary>
    public byte QueryDepth { get; init; }

    /// <summary><see cref="StreamProtocol.Reverse"/> only (0 otherwise): the id, on this link, of the Bind stream whose listener accepted this client.</summary>
    public uint BindStreamId { get; init; }

    /// <summary><see cref="StreamProtocol.Bind"/> only (0 otherwise): how many Reverse streams of this Bind may be open at once (the tunnel's MaxConnections).</summary>
    public uint MaxConnections { get; init; }
}

/// <summary>Aborts a stream both ways, with a code and reason (e.g. the target refused the connection).</summary>
public sealed record ResetMessage(ProtocolErrorCode Code, string Reason) : ControlMessage
{
    public override FrameType FrameType => FrameType.Reset;
}

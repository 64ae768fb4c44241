namespace QmTunnel.Engine.Protocol;

/// <summary>Why a link or stream was closed. Wire values (u32 in GoAway and Reset): never renumber.</summary>
public enum ProtocolErrorCode : uint
{
    None = 0,
    /// <summary>Link: a frame could not be parsed.</summary>
    MalformedFrame = 1,
    /// <summary>Link: a frame type this version does not know.</summary>
    UnknownFrameType = 2,
    /// <summary>Link: a payload larger than the limit.</summary>
    FrameTooLarge = 3,
    /// <summary>Link: no common protocol version.</summary>
    UnsupportedVersion = 4,
    /// <summary>Link: the peer did not start with the preamble and a Hello.</summary>
    HandshakeFailed = 5,
    /// <summary>Link: the peer sent more data than the credit it was given.</summary>
    FlowControlViolation = 6,
    /// <summary>Link or stream: the sender is shutting down.</summary>
    Shutdown = 7,
    /// <summary>Link: a frame referred to a stream in a state that does not allow it.</summary>
    StreamStateError = 8,
    /// <summary>Link: this server accepts only TLS links (qmt://) and the peer dialed a plain one.</summary>
    PlainLinkRefused = 9,
    /// <summary>Link: the login failed (unknown user, wrong password, disabled user, unmapped client certificate).</summary>
    AuthenticationFailed = 10,
    /// <summary>Link: the session a Resume names is unknown here or expired (the dialer starts a new one).</summary>
    SessionExpired = 11,
    /// <summary>Link: a Resume with a wrong proof, or for a session of another user.</summary>
    ResumeRefused = 12,
    /// <summary>Link: the acceptor already holds as many link sessions as it allows (MaxLinks); sent right after the login, never to a Resume.</summary>
    LinkLimit = 13,
    /// <summary>Stream: the target could not be reached (refused, unreachable, timed out, name not resolved).</summary>
    TargetConnectFailed = 100,
    /// <summary>Stream: the application connection was reset or failed.</summary>
    ConnectionReset = 101,
    /// <summary>Stream: the open request was invalid.</summary>
    OpenRejected = 102,
    /// <summary>Stream: the tunnel was stopped.</summary>
    TunnelStopped = 103,
    /// <summary>Stream: the link that carried it is gone.</summary>
    LinkLost = 104,
    /// <summary>Stream: the user of the link lacks the right, or no allow-rule of its group matches the tunnel.</summary>
    PermissionDenied = 105,
    /// <summary>Stream: a later server of the route refused the login given for it.</summary>
    HopAuthenticationFailed = 106,
    /// <summary>Stream: the link already carries as many streams as the receiver allows at once (MaxStreamsPerLink).</summary>
    StreamLimit = 107,
    /// <summary>Stream (local only): the link session ended because its connection did not come back within the failure tolerance.</summary>
    LinkSessionExpired = 108,
    /// <summary>Stream: the last server of a reverse tunnel cannot listen where the Bind asks: the port is in use there (the reason names the server and port).</summary>
    PortInUse = 109,
    /// <summary>Stream: the last server of a reverse tunnel cannot listen where the Bind asks for another reason (not an address of that host, no right to the port).</summary>
    BindFailed = 110,
    // 120-123: TargetConnectFailed told apart (version 4), so a SOCKS5 listener can answer with the matching reply code.
    /// <summary>Stream: the target refused the connection (nothing listens there).</summary>
    TargetRefused = 120,
    /// <summary>Stream: the target host is unreachable, or its name did not resolve at the last server.</summary>
    TargetHostUnreachable = 121,
    /// <summary>Stream: the last server has no route to the target's network.</summary>
    TargetNetworkUnreachable = 122,
    /// <summary>Stream: the target did not answer within the tunnel's ConnectTimeout.</summary>
    TargetTimedOut = 123,
}

/// <summary>Groups of <see cref="ProtocolErrorCode"/>s.</summary>
public static class ProtocolErrorCodes
{
    /// <summary>Whether <paramref name="code"/> says the target could not be reached (TargetConnectFailed or one of its refinements).</summary>
    public static bool IsTargetFailure(ProtocolErrorCode code) =>
        code is ProtocolErrorCode.TargetConnectFailed or ProtocolErrorCode.TargetRefused or ProtocolErrorCode.TargetHostUnreachable
            or ProtocolErrorCode.TargetNetworkUnreachable or ProtocolErrorCode.TargetTimedOut;
}

/// <summary>A protocol violation by the peer. Closes the link with a GoAway carrying <see cref="Code"/>.</summary>
public sealed class ProtocolException(ProtocolErrorCode code, string message) : Exception(message)
{
    public ProtocolErrorCode Code { get; } = code;
}

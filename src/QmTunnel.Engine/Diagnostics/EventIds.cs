namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// Every log event id of qmTunnel (engine and daemon), in one list so no two events share an id: an id names one kind
/// of event in the daemon's log, the journal and the Windows event log, so scripts and alerts can match on it. Each
/// area owns a range; add a new event at the next free id of its range (noted per range) and never reuse one.
/// <c>tests/QmTunnel.Engine.Tests/Diagnostics/EventIdTests.cs</c> checks that every [LoggerMessage] uses an id of this
/// list and that the ids are unique.
/// </summary>
public static class EventIds
{
    // ---- engine lifecycle and tunnel management, 1-49. Next free: 9.
    public const int ServerStarted = 1;
    public const int ServerStopped = 2;
    public const int LinkRefused = 3;
    public const int TargetUnreachable = 4;
    public const int TunnelNotRestored = 5;
    public const int TunnelChanged = 6;
    public const int TunnelDenied = 7;
    public const int AdminCreated = 8;

    // ---- engine: server control and the daemon's status socket, 50-99. Next free: 53.
    public const int ServerStopRequested = 50;
    public const int StatusChannelUnavailable = 51;
    public const int StatusPeerRefused = 52;

    // ---- links and the accept side, 100-129. Next free: 109.
    public const int LinkProtocolViolation = 100;
    public const int StreamHandlerFailed = 101;
    public const int LinkClosed = 102;
    public const int LinkUp = 103;
    public const int PendingLinkRefused = 104;
    public const int PendingLinkEvicted = 105;
    public const int AcceptFailing = 106;
    public const int AcceptRecovered = 107;
    public const int LinkHandshakeCrashed = 108;
    // ---- links: send-queue bound, stream limit, idle links, sessions and resume, link and buffer limits, 130-199 (140-149:
    // compression, below). Next free: 150.
    public const int LinkStreamLimit = 130;
    public const int LinkReadPaused = 131;
    public const int LinkIdleClosed = 132;
    public const int LinkTransportLost = 133;
    public const int LinkResumed = 134;
    public const int LinkSessionExpired = 135;
    public const int LinkResumeRefused = 136;
    public const int LinkReconnectFailed = 137;
    public const int LinkLimitReached = 138;
    public const int LinkBufferFull = 139;
    // ---- links: compression, 140-149. Next free: 141.
    public const int LinkCompressionRefused = 140;

    // ---- tunnel runtime, 200-299. Next free: 206.
    public const int TunnelStarted = 200;
    public const int TunnelStopped = 201;
    public const int TunnelError = 202;
    public const int TunnelDraining = 203;
    public const int TunnelChainUp = 204;
    public const int TunnelChainIdle = 205;

    // ---- reverse tunnels (far listeners, Bind and Reverse streams), 230-249. Next free: 236.
    public const int ReverseRefused = 230;
    public const int ReverseListening = 231;
    public const int ReverseListenerClosed = 232;
    public const int ReverseBindRefused = 233;
    public const int ReverseBindReplaced = 234;
    public const int ReverseClientRefused = 235;

    // ---- tunnel runtime: SOCKS5 listeners, 270-279. Next free: 271.
    /// <summary>Debug: a SOCKS5 client's greeting or request was refused (malformed, unsupported, too slow).</summary>
    public const int SocksClientRefused = 270;

    // ---- logins, 300-349. Next free: 302.
    public const int LoggedIn = 300;
    public const int LoginFailed = 301;

    // ---- management sessions and their limits, 350-399. Next free: 355.
    public const int ManagementRequest = 350;
    public const int ManagementSessionRefused = 351;
    public const int ManagementSessionIdleClosed = 352;
    public const int ManagementRequestLimit = 353;
    public const int ManagementRequestTimedOut = 354;

    // ---- storage and data path, 400-449. Next free: 404.
    public const int DataPathTightened = 400;
    public const int DatabaseCreated = 401;
    public const int DatabaseLogRecovered = 402;
    public const int DatabaseWriteDropped = 403;

    // ---- the daemon (qmtunnel-server), 900-999. Next free: 905.
    public const int DaemonStartFailed = 900;
    public const int DaemonStopping = 901;
    public const int DaemonInitialPassword = 902;
    /// <summary>Written straight to the log (not through a logger) when an unhandled exception ends the daemon.</summary>
    public const int DaemonDying = 903;
    public const int DaemonUnobservedTaskException = 904;
}

using System.Buffers;
using System.IO.Pipelines;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>Counters a stream adds to (a tunnel's, or the server's transit counters). Thread-safe.</summary>
public sealed class TrafficCounters
{
    private long _appIn, _appOut, _linkSent, _linkReceived;

    /// <summary>Application bytes that entered the tunnel (read from the application side).</summary>
    public long AppBytesIn => Volatile.Read(ref _appIn);
    /// <summary>Application bytes that left the tunnel (written to the application side).</summary>
    public long AppBytesOut => Volatile.Read(ref _appOut);
    public long LinkBytesSent => Volatile.Read(ref _linkSent);
    public long LinkBytesReceived => Volatile.Read(ref _linkReceived);

    internal void AddAppIn(long n) => Interlocked.Add(ref _appIn, n);
    internal void AddAppOut(long n) => Interlocked.Add(ref _appOut, n);
    internal void AddLinkSent(long n) => Interlocked.Add(ref _linkSent, n);
    internal void AddLinkReceived(long n) => Interlocked.Add(ref _linkReceived, n);
}

/// <summary>A stream was reset by the peer, by the link going away, or locally.</summary>
public sealed class StreamResetException(ProtocolErrorCode code, string reason) : IOException(reason)
{
    public ProtocolErrorCode Code { get; } = code;
}

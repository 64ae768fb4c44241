using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Compression of the application data a link carries (docs/protocol.md, "Compression"): each Data frame queued is
/// compressed by its sender's thread when the link agreed an algorithm, the payload has at least
/// <see cref="FrameCompression.MinPayload"/> bytes and the result is smaller; each compressed frame received is checked
/// (declared length within this side's MaxPayload and the stream's credit, before anything is allocated) and decoded
/// before it reaches its stream. Credit counts uncompressed bytes both ways. The counters give Get-QmTunnelStats' hops
/// their bytes before and after compression. It negotiates nothing (the handshake does).
/// </summary>
public sealed partial class Link
{
    private long _dataSent, _dataWireSent, _dataReceived, _dataWireReceived;

    /// <summary>The compression agreed for this link (this side's level); None when nothing is compressed.</summary>
    public LinkCompression Compression => Session.Compression;

    /// <summary>Application bytes this side sent in Data frames, before compression.</summary>
    public long DataBytesSent => Interlocked.Read(ref _dataSent);

    /// <summary>What the payloads of <see cref="DataBytesSent"/> took on the wire (compressed or not; headers not counted).</summary>
    public long DataWireBytesSent => Interlocked.Read(ref _dataWireSent);

    /// <summary>Application bytes this side received in Data frames, after decompression.</summary>
    public long DataBytesReceived => Interlocked.Read(ref _dataReceived);

    /// <summary>What the payloads of <see cref="DataBytesReceived"/> took on the wire.</summary>
    public long DataWireBytesReceived => Interlocked.Read(ref _dataWireReceived);

    /// <summary>Most frames of a stream sent as they are, without trying, after payloads that did not get smaller.</summary>
    internal const int MaxCompressSkip = 15;

    /// <summary>
    /// Sender, as a Data frame is queued: compresses its payload into a new buffer when that pays (the old one goes back
    /// to the pool) and returns the frame to queue; otherwise the frame as it was. After a payload of
    /// <paramref name="stream"/> that did not get smaller, its next 1, 3, 7, then 15 frames go as they are without a try
    /// (random or already compressed data costs a compression attempt in 16 frames, not in each); one that gets smaller
    /// ends the back-off.
    /// </summary>
    private (FrameHeader Header, byte[] Buffer) CompressData(FrameHeader header, byte[] buffer, MuxStream? stream)
    {
        var count = header.Length;
        Interlocked.Add(ref _dataSent, count);
        var compression = Session.Compression;
        if (!compression.Enabled || count < FrameCompression.MinPayload)
        {
            Interlocked.Add(ref _dataWireSent, count);
            return (header, buffer);
        }
        if (stream is { CompressSkip: > 0 })
        {
            stream.CompressSkip--;
            Interlocked.Add(ref _dataWireSent, count);
            return (header, buffer);
        }
        var packed = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + count);
        var written = FrameCompression.TryCompress(compression, buffer.AsSpan(FrameHeader.Size, count), packed.AsSpan(FrameHeader.Size, count));
        if (written == 0)
        {
            ArrayPool<byte>.Shared.Return(packed);
            Interlocked.Add(ref _dataWireSent, count);
            if (stream is not null)
            {
                stream.CompressMisses = Math.Min(stream.CompressMisses + 1, 4);
                stream.CompressSkip = Math.Min((1 << stream.CompressMisses) - 1, MaxCompressSkip);
            }
            return (header, buffer);
        }
        if (stream is not null)
        {
            stream.CompressMisses = 0;
        }
        ArrayPool<byte>.Shared.Return(buffer);
        Interlocked.Add(ref _dataWireSent, written);
        return (header with { Flags = header.Flags | FrameFlags.Compressed, Length = written }, packed);
    }

    /// <summary>
    /// Reader, for every Data frame before its stream is looked up: counts it, and for a compressed one checks that the
    /// link agreed compression and that the declared length is within this side's MaxPayload. Returns that declared
    /// length, or -1 for a payload sent as it is.
    /// </summary>
    private int ReceivedData(FrameHeader header, ReadOnlySequence<byte> payload)
    {
        Interlocked.Add(ref _dataWireReceived, header.Length);
        if ((header.Flags & FrameFlags.Compressed) == 0)
        {
            Interlocked.Add(ref _dataReceived, header.Length);
            return -1;
        }
        if (!Session.Compression.Enabled)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame,
                $"a compressed Data frame on stream {header.StreamId}, but this link agreed no compression");
        }
        var declared = FrameCompression.DeclaredLength(payload, Options.MaxPayload);
        Interlocked.Add(ref _dataReceived, declared);
        return declared;
    }

    /// <summary>
    /// Reader: a compressed payload of <paramref name="declared"/> bytes for <paramref name="stream"/>. Data beyond the
    /// stream's credit is refused before it is decoded; the decoded bytes go to the stream as a plain payload would.
    /// </summary>
    private ValueTask<FlushResult> OnCompressedData(MuxStream stream, int declared, ReadOnlySequence<byte> payload, bool fin)
    {
        if (declared > stream.ReceiveCredit)
        {
            throw new ProtocolException(ProtocolErrorCode.FlowControlViolation,
                $"stream {stream.Id} received a compressed payload of {declared} bytes beyond the window it granted");
        }
        var output = FrameCompression.Decompress(Session.Compression.Algorithm, payload, declared);
        try
        {
            // The stream copies the bytes into its pipe before this returns (its flush never waits: no pause threshold).
            return stream.OnDataAsync(new ReadOnlySequence<byte>(output, 0, declared), fin);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(output);
        }
    }
}

internal static partial class LinkLog
{
    [LoggerMessage(EventId = EventIds.LinkCompressionRefused, Level = LogLevel.Information,
        Message = "Link {Peer}: the dialer asked for compression {Asked}; the link is not compressed: {Reason}")]
    public static partial void CompressionRefused(ILogger logger, string peer, string asked, string reason);
}

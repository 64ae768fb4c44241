using System.Buffers.Binary;

namespace QmTunnel.Engine.Protocol;

/// <summary>State of a link as a <see cref="LinkInfoRecord"/> tells it. Wire values.</summary>
public enum LinkInfoState : byte
{
    /// <summary>The server has no link to the next one (it is never dialed for a query).</summary>
    Down = 0,
    /// <summary>A connection carries the link.</summary>
    Up = 1,
    /// <summary>The link lost its connection and waits for a new one within its failure tolerance.</summary>
    Resuming = 2,
}

/// <summary>
/// The one data payload that answers a <see cref="StreamProtocol.LinkInfo"/> stream: what a server of a tunnel's chain
/// knows of its link to the next server. Fixed size, big-endian:
/// <code>
///  0               1               2               3
/// +---------------+---------------+---------------+---------------+
/// | Version (1)   | Remaining (8) | State (8)     | RTT µs (32) ...
/// +---------------+---------------+---------------+---------------+
///   ... RTT µs    | Transports lost (64)                          ...
///   ... Resumes (64) ... Bytes sent (64) ... Bytes received (64)
///   Compression (8) ... Data sent (64) ... Data sent on the wire (64)
///   ... Data received (64) ... Data received on the wire (64)        (72 bytes in all)
/// </code>
/// Version 2 (link protocol 4) added the compression agreed on the link (<see cref="Links.CompressionAlgorithm"/>) and
/// the application bytes of its Data frames before and after compression, each way (docs/protocol.md, "Compression").
/// Remaining is 0 when the server asked answered; a gateway that could not carry the query on (its next link not up)
/// answers for that link with the depth it did not reach. RTT 0xFFFFFFFF: no round trip measured (also for Down).
/// <see cref="TryParse"/> never throws: any other length, version or state is a problem the caller shows as an unknown
/// hop. It does not read streams (the engine does) and knows nothing of <c>Link</c>.
/// </summary>
public readonly record struct LinkInfoRecord(byte Remaining, LinkInfoState State, TimeSpan? RoundTrip, long TransportsLost, long Resumes, long BytesSent, long BytesReceived)
{
    /// <summary>The format this code writes and reads.</summary>
    public const byte Version = 2;

    /// <summary>Bytes of a version-2 record.</summary>
    public const int Size = 72;

    /// <summary>The compression agreed on the link (None: its data goes as it is).</summary>
    public Links.CompressionAlgorithm Compression { get; init; }

    /// <summary>Application bytes sent in Data frames, before compression.</summary>
    public long DataBytesSent { get; init; }

    /// <summary>What those payloads took on the wire.</summary>
    public long DataWireBytesSent { get; init; }

    /// <summary>Application bytes received in Data frames, after decompression.</summary>
    public long DataBytesReceived { get; init; }

    /// <summary>What those payloads took on the wire.</summary>
    public long DataWireBytesReceived { get; init; }

    /// <summary>The most a reader buffers before it gives up on an answer: a record, with room to spare for a later version.</summary>
    public const int MaxAnswerBytes = 256;

    private const uint NoRoundTrip = uint.MaxValue;

    /// <summary>The record as sent. Negative counters are written as 0; a round trip is capped at about 71 minutes.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        bytes[0] = Version;
        bytes[1] = Remaining;
        bytes[2] = (byte)State;
        var micros = RoundTrip is { } rtt ? (uint)Math.Clamp(rtt.Ticks / TimeSpan.TicksPerMicrosecond, 0, NoRoundTrip - 1) : NoRoundTrip;
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(3), micros);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(7), (ulong)Math.Max(0, TransportsLost));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(15), (ulong)Math.Max(0, Resumes));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(23), (ulong)Math.Max(0, BytesSent));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(31), (ulong)Math.Max(0, BytesReceived));
        bytes[39] = (byte)Compression;
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(40), (ulong)Math.Max(0, DataBytesSent));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(48), (ulong)Math.Max(0, DataWireBytesSent));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(56), (ulong)Math.Max(0, DataBytesReceived));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(64), (ulong)Math.Max(0, DataWireBytesReceived));
        return bytes;
    }

    /// <summary>
    /// Reads an answer. False, with <paramref name="problem"/> saying what is wrong (for the user: the hop is shown
    /// Unknown with it), for anything but one version-2 record with a known state and compression; counters above long.MaxValue are
    /// capped. Never throws.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> bytes, out LinkInfoRecord record, out string? problem)
    {
        record = default;
        if (bytes.Length == 0)
        {
            problem = "the answer is empty";
            return false;
        }
        if (bytes[0] != Version)
        {
            problem = $"the answer is of format {bytes[0]}; this server reads format {Version} (check the versions of the servers of the chain)";
            return false;
        }
        if (bytes.Length != Size)
        {
            problem = $"the answer has {bytes.Length} bytes; format {Version} has {Size}";
            return false;
        }
        var state = (LinkInfoState)bytes[2];
        if (!Enum.IsDefined(state))
        {
            problem = $"the answer names link state {bytes[2]}, which is not one";
            return false;
        }
        var compression = (Links.CompressionAlgorithm)bytes[39];
        if (!Enum.IsDefined(compression))
        {
            problem = $"the answer names compression {bytes[39]}, which is not one";
            return false;
        }
        var micros = BinaryPrimitives.ReadUInt32BigEndian(bytes[3..]);
        static long Capped(ReadOnlySpan<byte> field) => (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(field), long.MaxValue);
        record = new LinkInfoRecord(bytes[1], state, micros == NoRoundTrip ? null : TimeSpan.FromTicks(micros * TimeSpan.TicksPerMicrosecond),
            Capped(bytes[7..]), Capped(bytes[15..]), Capped(bytes[23..]), Capped(bytes[31..]))
        {
            Compression = compression,
            DataBytesSent = Capped(bytes[40..]),
            DataWireBytesSent = Capped(bytes[48..]),
            DataBytesReceived = Capped(bytes[56..]),
            DataWireBytesReceived = Capped(bytes[64..]),
        };
        problem = null;
        return true;
    }
}

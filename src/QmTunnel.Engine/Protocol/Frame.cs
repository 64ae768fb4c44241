using System.Buffers;
using System.Buffers.Binary;

namespace QmTunnel.Engine.Protocol;

/// <summary>Frame types of the link protocol (version 4). Values are wire format: never renumber.</summary>
public enum FrameType : byte
{
    /// <summary>Stream 0. Control payload <see cref="HelloMessage"/>: first frame each way.</summary>
    Hello = 0x01,
    /// <summary>Stream 0. Control payload <see cref="GoAwayMessage"/>: the sender closes the link, with a reason.</summary>
    GoAway = 0x02,
    /// <summary>Stream 0. 8 opaque bytes; the peer answers with <see cref="Pong"/> carrying the same bytes.</summary>
    Ping = 0x03,
    /// <summary>Stream 0. Answer to <see cref="Ping"/>.</summary>
    Pong = 0x04,
    /// <summary>Stream 0, handshake only. Control payload <see cref="AuthStartMessage"/>: dialer → acceptor, right behind its Hello.</summary>
    AuthStart = 0x05,
    /// <summary>Stream 0, handshake only. Control payload <see cref="AuthChallengeMessage"/>: acceptor → dialer (password logins).</summary>
    AuthChallenge = 0x06,
    /// <summary>Stream 0, handshake only. Control payload <see cref="AuthProofMessage"/>: dialer → acceptor (password logins).</summary>
    AuthProof = 0x07,
    /// <summary>Stream 0, handshake only. Control payload <see cref="AuthOkMessage"/>: acceptor → dialer, the link is up.</summary>
    AuthOk = 0x08,
    /// <summary>Stream 0, handshake only. Control payload <see cref="SessionStartMessage"/>: dialer → acceptor, behind the login.</summary>
    SessionStart = 0x09,
    /// <summary>Stream 0, handshake only. Control payload <see cref="ResumeMessage"/>: dialer → acceptor, behind the login.</summary>
    Resume = 0x0A,
    /// <summary>Stream 0, handshake only. Payload: u64 count of numbered frames the acceptor received (<see cref="ResumedMessage"/>).</summary>
    Resumed = 0x0B,
    /// <summary>Opens stream N. Control payload <see cref="OpenMessage"/>.</summary>
    Open = 0x10,
    /// <summary>Stream N reached its target. Empty payload.</summary>
    OpenAck = 0x11,
    /// <summary>Application bytes for stream N (raw payload). Flag <see cref="FrameFlags.Fin"/>: sender's half closed.</summary>
    Data = 0x12,
    /// <summary>Stream N: u32 big-endian credit increment.</summary>
    WindowUpdate = 0x13,
    /// <summary>Stream N aborted both ways. Control payload <see cref="ResetMessage"/>.</summary>
    Reset = 0x14,
    /// <summary>Stream 0. u64 cumulative count of numbered frames received on this link session (docs/protocol.md, "Session resume").</summary>
    Ack = 0x20,
}

/// <summary>Frame flags. Unknown flags are a protocol error.</summary>
[Flags]
public enum FrameFlags : byte
{
    None = 0,
    /// <summary>On <see cref="FrameType.Data"/>: the sender will send no more data on this stream (half-close).</summary>
    Fin = 0x01,
    /// <summary>
    /// On <see cref="FrameType.Data"/>, on a link that agreed compression in its Hellos (version 4): the payload is a u32
    /// uncompressed length, then that data compressed (docs/protocol.md, "Compression"; <c>Links/FrameCompression</c>).
    /// </summary>
    Compressed = 0x02,
}

/// <summary>
/// The 12-byte frame header. All integers big-endian.
/// <code>
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +---------------+---------------+-------------------------------+
/// |  Type (8)     |  Flags (8)    |        Reserved (16) = 0      |
/// +---------------+---------------+-------------------------------+
/// |                        Stream Id (32)                         |
/// +---------------------------------------------------------------+
/// |                      Payload Length (32)                      |
/// +---------------------------------------------------------------+
/// |                   Payload (Length bytes) ...                  |
/// +---------------------------------------------------------------+
/// </code>
/// Stream 0 is the link itself. The dialing side of a link opens odd stream ids, the accepting side even ones.
/// </summary>
public readonly record struct FrameHeader(FrameType Type, FrameFlags Flags, uint StreamId, int Length)
{
    public const int Size = 12;

    public void Write(Span<byte> destination)
    {
        destination[0] = (byte)Type;
        destination[1] = (byte)Flags;
        destination[2] = 0;
        destination[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], StreamId);
        BinaryPrimitives.WriteInt32BigEndian(destination[8..], Length);
    }
}

/// <summary>
/// The one frame codec of the link protocol: parses headers off a buffered byte sequence, rejecting an oversize,
/// malformed or unknown frame before its payload is buffered. It does not interpret payloads (see
/// <see cref="ControlCodec"/>) and does no I/O.
/// </summary>
public static class FrameCodec
{
    /// <summary>Largest payload any version-1 peer may send, whatever it announces: 1 MiB.</summary>
    public const int HardMaxPayload = 1024 * 1024;

    /// <summary>Four bytes a dialer sends before its first frame, so a port can tell a link from anything else.</summary>
    public static ReadOnlySpan<byte> Preamble => "QMTL"u8;

    /// <summary>
    /// Tries to take one whole frame off the front of <paramref name="buffer"/>. Returns false when more bytes are
    /// needed (buffer untouched). Throws <see cref="ProtocolException"/> as soon as the header is known to be bad,
    /// so a hostile length is never waited for or allocated.
    /// </summary>
    /// <summary>
    /// Frames counted and kept until acknowledged on a link session (docs/protocol.md, "Session resume"): what streams
    /// carry. The rest (handshake, GoAway, Ping, Pong, Ack) belong to one connection and are never resent.
    /// </summary>
    public static bool IsNumbered(FrameType type) =>
        type is FrameType.Open or FrameType.OpenAck or FrameType.Data or FrameType.WindowUpdate or FrameType.Reset;

    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxPayload, out FrameHeader header, out ReadOnlySequence<byte> payload)
    {
        if (buffer.Length < FrameHeader.Size)
        {
            header = default;
            payload = default;
            return false;
        }
        Span<byte> raw = stackalloc byte[FrameHeader.Size];
        buffer.Slice(0, FrameHeader.Size).CopyTo(raw);
        header = ParseHeader(raw, maxPayload);
        if (buffer.Length < FrameHeader.Size + (long)header.Length)
        {
            payload = default;
            return false;
        }
        payload = buffer.Slice(FrameHeader.Size, header.Length);
        buffer = buffer.Slice(FrameHeader.Size + (long)header.Length);
        return true;
    }

    /// <summary>Parses and validates a 12-byte header.</summary>
    public static FrameHeader ParseHeader(ReadOnlySpan<byte> raw, int maxPayload)
    {
        var type = (FrameType)raw[0];
        var flags = (FrameFlags)raw[1];
        var reserved = BinaryPrimitives.ReadUInt16BigEndian(raw[2..]);
        var streamId = BinaryPrimitives.ReadUInt32BigEndian(raw[4..]);
        var length = BinaryPrimitives.ReadInt32BigEndian(raw[8..]);
        if (!Enum.IsDefined(type))
        {
            throw new ProtocolException(ProtocolErrorCode.UnknownFrameType, $"unknown frame type 0x{raw[0]:x2}");
        }
        if (reserved != 0)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"reserved header bits set (0x{reserved:x4})");
        }
        if ((flags & ~(FrameFlags.Fin | FrameFlags.Compressed)) != 0 || (flags != 0 && type != FrameType.Data))
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"flags 0x{raw[1]:x2} are not valid on a {type} frame");
        }
        if ((flags & FrameFlags.Compressed) != 0 && length >= 0 && length <= 4)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"a compressed Data frame of {length} bytes has no room for its 4-byte length and data");
        }
        if (length < 0 || length > Math.Min(maxPayload, HardMaxPayload))
        {
            throw new ProtocolException(ProtocolErrorCode.FrameTooLarge,
                $"{type} frame announces {(uint)length} payload bytes; the limit is {Math.Min(maxPayload, HardMaxPayload)}");
        }
        var linkFrame = type is FrameType.Hello or FrameType.GoAway or FrameType.Ping or FrameType.Pong or FrameType.Ack
            or FrameType.AuthStart or FrameType.AuthChallenge or FrameType.AuthProof or FrameType.AuthOk
            or FrameType.SessionStart or FrameType.Resume or FrameType.Resumed;
        if (linkFrame != (streamId == 0))
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame,
                linkFrame ? $"{type} frame on stream {streamId}; it belongs on stream 0" : $"{type} frame on stream 0");
        }
        var fixedLength = type switch
        {
            FrameType.Ping or FrameType.Pong or FrameType.Ack or FrameType.Resumed => 8,
            FrameType.SessionStart => 12,
            FrameType.WindowUpdate => 4,
            FrameType.OpenAck => 0,
            _ => -1,
        };
        if (fixedLength >= 0 && length != fixedLength)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{type} frame has {length} payload bytes; it must have {fixedLength}");
        }
        return new FrameHeader(type, flags, streamId, length);
    }
}

using System.Buffers;
using System.Buffers.Binary;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// How datagrams travel in a Udp stream (docs/protocol.md, "UDP associations"): each one as a u16 big-endian length
/// (1 to <see cref="MaxDatagram"/>) and that many bytes, so boundaries are kept end to end whatever the link does to
/// the byte stream. A length of 0 or over the maximum, or a frame cut off by the stream's end, is a protocol error of
/// that stream. Nothing is allocated from a length before it was checked.
/// </summary>
public static class DatagramFrame
{
    /// <summary>The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes): nothing larger can be received.</summary>
    public const int MaxDatagram = 65_507;

    /// <summary>Bytes of the length before each datagram.</summary>
    public const int LengthSize = 2;

    /// <summary>Writes the length of a <paramref name="length"/>-byte datagram at the start of <paramref name="destination"/>.</summary>
    public static void WriteLength(Span<byte> destination, int length)
    {
        if (length is < 1 or > MaxDatagram)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a datagram has 1 to {MaxDatagram} bytes");
        }
        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)length);
    }

    /// <summary>
    /// Takes the next whole datagram off the front of <paramref name="buffer"/>: true and the datagram (a slice of
    /// <paramref name="buffer"/>), or false when more bytes are needed. InvalidDataException for a length of 0 or
    /// over <see cref="MaxDatagram"/>.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> datagram)
    {
        datagram = default;
        if (buffer.Length < LengthSize)
        {
            return false;
        }
        Span<byte> prefix = stackalloc byte[LengthSize];
        buffer.Slice(0, LengthSize).CopyTo(prefix);
        var length = BinaryPrimitives.ReadUInt16BigEndian(prefix);
        if (length is 0 or > MaxDatagram)
        {
            throw new InvalidDataException($"a datagram frame of {length} bytes: a Udp stream carries 1 to {MaxDatagram} bytes per datagram");
        }
        if (buffer.Length < LengthSize + length)
        {
            return false;
        }
        datagram = buffer.Slice(LengthSize, length);
        buffer = buffer.Slice(LengthSize + length);
        return true;
    }
}

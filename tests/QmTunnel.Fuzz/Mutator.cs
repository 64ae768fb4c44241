using System.Buffers.Binary;

namespace QmTunnel.Fuzz;

/// <summary>
/// Byte-level mutations of an input: bit flips, byte inserts and deletes, truncation, boundary values written over
/// integers, splices of two inputs, repeated slices, and length-aware edits. The last find what looks like a u16 or u32
/// length prefix (a value that fits the bytes after it) and set it to a boundary value, or grow the field it prefixes
/// to a limit and one past it (strings 4096/4097, byte fields 256/257), or fill it with invalid UTF-8, keeping the
/// prefix true so the parser gets past it. Deterministic: everything comes from the given <see cref="Random"/>.
/// </summary>
public static class Mutator
{
    /// <summary>No mutation grows an input beyond this (a little over the 1 MiB caps, so "one past" is reachable).</summary>
    public const int MaxLength = 1024 * 1024 + 64 * 1024;

    private static readonly uint[] U16Boundaries = [0, 1, 2, 63, 64, 65, 255, 256, 257, 4095, 4096, 4097, 0x7fff, 0x8000, 0xfffe, 0xffff];

    private static readonly uint[] U32Boundaries =
    [
        0, 1, 2, 4, 8, 12, 1023, 1024, 16 * 1024, 16 * 1024 + 1, 256 * 1024, 256 * 1024 + 1, 1024 * 1024 - 1, 1024 * 1024,
        1024 * 1024 + 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff,
    ];

    /// <summary>Sequences a strict UTF-8 decoder must refuse: overlong, surrogate, out of range, lone and cut-off.</summary>
    private static readonly byte[][] InvalidUtf8 =
    [
        [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
        [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0x80], [0xBF], [0xE2, 0x82], [0xF0, 0x9F, 0x9A], [0xC3],
    ];

    /// <summary>Sizes a length-aware edit grows a field to: the codec's limits and one past them.</summary>
    private static readonly int[] FieldSizes = [0, 1, 23, 24, 25, 31, 32, 33, 255, 256, 257, 4095, 4096, 4097];

    /// <summary>1 to 4 stacked mutations of <paramref name="input"/>; <paramref name="other"/> is the partner of splices.</summary>
    public static byte[] Mutate(byte[] input, byte[] other, Random random)
    {
        var bytes = new List<byte>(input);
        var count = random.Next(4) switch { 0 or 1 => 1, 2 => 2, _ => random.Next(3, 5) };
        for (var i = 0; i < count; i++)
        {
            MutateOnce(bytes, other, random);
            if (bytes.Count > MaxLength)
            {
                bytes.RemoveRange(MaxLength, bytes.Count - MaxLength);
            }
        }
        return [.. bytes];
    }

    private static void MutateOnce(List<byte> bytes, byte[] other, Random random)
    {
        var n = bytes.Count;
        switch (random.Next(12))
        {
            case 0 when n > 0:
                for (var flips = random.Next(1, 9); flips > 0; flips--)
                {
                    var at = random.Next(n);
                    bytes[at] ^= (byte)(1 << random.Next(8));
                }
                break;
            case 1 when n > 0:
                bytes[random.Next(n)] = random.Next(3) == 0 ? (byte)random.Next(256) : (new byte[] { 0, 1, 0x7f, 0x80, 0xff })[random.Next(5)];
                break;
            case 2:
                var insert = new byte[random.Next(1, 17)];
                random.NextBytes(insert);
                bytes.InsertRange(random.Next(n + 1), insert);
                break;
            case 3 when n > 0:
                var from = random.Next(n);
                bytes.RemoveRange(from, random.Next(1, Math.Min(n - from, 16) + 1));
                break;
            case 4 when n > 0:
                var keep = random.Next(n);
                bytes.RemoveRange(keep, n - keep);
                break;
            case 5 when n >= 2:
                WriteBoundary(bytes, random.Next(n - 1), random.Next(2) == 0 ? 2 : Math.Min(4, n), random);
                break;
            case 6 or 7:
                LengthAware(bytes, random);
                break;
            case 8 when n > 0:
                // Repeated fields: a slice written again up to 70 times (lists over the limit of 64).
                var start = random.Next(n);
                var slice = bytes.GetRange(start, random.Next(1, Math.Min(n - start, 64) + 1));
                var times = random.Next(3) == 0 ? random.Next(60, 71) : random.Next(1, 5);
                for (var t = 0; t < times && bytes.Count + slice.Count <= MaxLength; t++)
                {
                    bytes.InsertRange(start, slice);
                }
                break;
            case 9:
                // Splice: this input's head, the other's tail.
                var head = random.Next(n + 1);
                var tail = other.Length == 0 ? 0 : random.Next(other.Length);
                bytes.RemoveRange(head, n - head);
                bytes.AddRange(other.AsSpan(tail).ToArray());
                break;
            case 10 when n > 0:
                // Two inputs back to back (several frames or messages in one read).
                bytes.AddRange(random.Next(2) == 0 ? bytes.ToArray() : other);
                break;
            default:
                if (n > 0)
                {
                    bytes[random.Next(n)] = (byte)random.Next(256);
                }
                break;
        }
    }

    private static void WriteBoundary(List<byte> bytes, int at, int width, Random random)
    {
        Span<byte> value = stackalloc byte[4];
        if (width == 2 || bytes.Count - at < 4)
        {
            var v = random.Next(4) == 0 ? (uint)random.Next(0x10000) : U16Boundaries[random.Next(U16Boundaries.Length)];
            BinaryPrimitives.WriteUInt16BigEndian(value, (ushort)v);
            bytes[at] = value[0];
            bytes[at + 1] = value[1];
            return;
        }
        BinaryPrimitives.WriteUInt32BigEndian(value, U32Boundaries[random.Next(U32Boundaries.Length)]);
        for (var i = 0; i < 4; i++)
        {
            bytes[at + i] = value[i];
        }
    }

    /// <summary>Finds a plausible u16/u32 length prefix and edits it or the field behind it.</summary>
    private static void LengthAware(List<byte> bytes, Random random)
    {
        var candidates = new List<(int At, int Width, int Length)>();
        // A window of at most 2 KiB: large inputs stay cheap to mutate.
        var first = bytes.Count > 2048 ? random.Next(bytes.Count - 2048) : 0;
        for (var p = first; p + 2 <= bytes.Count && p < first + 2048; p++)
        {
            var v16 = (bytes[p] << 8) | bytes[p + 1];
            if (v16 <= bytes.Count - p - 2)
            {
                candidates.Add((p, 2, v16));
            }
            if (p + 4 <= bytes.Count)
            {
                var v32 = ((long)bytes[p] << 24) | ((long)bytes[p + 1] << 16) | ((long)bytes[p + 2] << 8) | bytes[p + 3];
                if (v32 > 0xffff && v32 <= bytes.Count - p - 4)
                {
                    candidates.Add((p, 4, (int)v32));
                }
            }
        }
        if (candidates.Count == 0)
        {
            return;
        }
        var (at, width, length) = candidates[random.Next(candidates.Count)];
        var body = at + width;
        switch (random.Next(3))
        {
            case 0:
                WriteBoundary(bytes, at, width, random);
                return;
            case 1:
                // Grow or shrink the field to a limit (or one past it), prefix kept true.
                var size = random.Next(4) == 0 ? random.Next(300) : FieldSizes[random.Next(FieldSizes.Length)];
                var fill = new byte[size];
                if (random.Next(2) == 0)
                {
                    random.NextBytes(fill);
                }
                else
                {
                    Array.Fill(fill, (byte)('a' + random.Next(26)));
                }
                bytes.RemoveRange(body, length);
                bytes.InsertRange(body, fill);
                SetLength(bytes, at, width, size);
                return;
            default:
                // Invalid UTF-8 somewhere in the field, prefix kept true.
                var bad = InvalidUtf8[random.Next(InvalidUtf8.Length)];
                bytes.InsertRange(body + random.Next(length + 1), bad);
                SetLength(bytes, at, width, length + bad.Length);
                return;
        }
    }

    private static void SetLength(List<byte> bytes, int at, int width, int length)
    {
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(value, (uint)length);
        for (var i = 0; i < width; i++)
        {
            bytes[at + i] = value[4 - width + i];
        }
    }
}

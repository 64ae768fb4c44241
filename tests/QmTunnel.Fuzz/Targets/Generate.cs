using System.Buffers;
using System.Collections;
using System.Reflection;
using System.Text;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// Random values for generators: strings (ASCII, multi-byte, surrogate pairs, up to a byte limit), byte arrays, and
/// byte sequences split into segments (parsers must not depend on where a read ended). Also a canonical text of any
/// message (public properties, recursively; byte arrays in hex), so round trips compare values, not references.
/// </summary>
public static class Generate
{
    private static readonly string[] Pieces = ["a", "Z", "0", "-", ".", ":", "/", "@", " ", "é", "ü", "€", "東", "京", "🚇", "👋", "\0", "\u200b"];

    /// <summary>A string of at most <paramref name="maxUtf8Bytes"/> UTF-8 bytes; sometimes exactly at the limit.</summary>
    public static string Text(Random random, int maxUtf8Bytes = 4096)
    {
        var target = random.Next(8) switch
        {
            0 => 0,
            1 => maxUtf8Bytes,
            2 => random.Next(maxUtf8Bytes + 1),
            _ => random.Next(Math.Min(24, maxUtf8Bytes) + 1),
        };
        var builder = new StringBuilder();
        var bytes = 0;
        while (bytes < target)
        {
            var piece = Pieces[random.Next(Pieces.Length)];
            var size = Encoding.UTF8.GetByteCount(piece);
            if (bytes + size > target)
            {
                piece = "a";
                size = 1;
            }
            builder.Append(piece);
            bytes += size;
        }
        return builder.ToString();
    }

    /// <summary>A string a strict writer must refuse or that is over the limit: a lone surrogate, or 4097 bytes.</summary>
    public static string BadText(Random random) => random.Next(3) switch
    {
        0 => "ab\uD800cd",
        1 => "\uDC00" + Text(random, 8),
        _ => new string('x', 4097),
    };

    public static byte[] Bytes(Random random, int max = 256)
    {
        var length = random.Next(6) switch
        {
            0 => 0,
            1 => Math.Min(24, max),
            2 => Math.Min(32, max),
            3 => max,
            _ => random.Next(max + 1),
        };
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>The bytes as a sequence of segments cut where the input's own bytes say (deterministic per input).</summary>
    public static ReadOnlySequence<byte> Segmented(byte[] input)
    {
        if (input.Length < 2 || input[^1] % 3 != 0)
        {
            return new ReadOnlySequence<byte>(input);
        }
        var step = 1 + input[0] % 13;
        Segment? first = null, last = null;
        for (var at = 0; at < input.Length;)
        {
            var memory = input.AsMemory(at, Math.Min(step, input.Length - at));
            last = last is null ? first = new Segment(memory, 0) : last.Append(memory);
            at += memory.Length;
            step = step * 2 + 1;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>Every public property, recursively, in name order: equal texts mean equal messages.</summary>
    public static string Canonical(object? value)
    {
        var builder = new StringBuilder();
        Append(builder, value, 0);
        return builder.ToString();
    }

    private static void Append(StringBuilder builder, object? value, int depth)
    {
        switch (value)
        {
            case null:
                builder.Append("null");
                return;
            case string s:
                builder.Append('"').Append(s.Replace("\\", "\\\\").Replace("\"", "\\\"")).Append('"');
                return;
            case byte[] b:
                builder.Append("0x").Append(Convert.ToHexString(b));
                return;
            case Enum or IFormattable:
                builder.Append(value.GetType().Name).Append(':').Append(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture));
                return;
            case IEnumerable list:
                builder.Append('[');
                foreach (var item in list)
                {
                    Append(builder, item, depth + 1);
                    builder.Append(',');
                }
                builder.Append(']');
                return;
        }
        if (depth > 8)
        {
            throw new InvalidOperationException("message nested too deep to compare");
        }
        builder.Append(value.GetType().Name).Append('{');
        foreach (var property in value.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract").OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            builder.Append(property.Name).Append('=');
            Append(builder, property.GetValue(value), depth + 1);
            builder.Append(';');
        }
        builder.Append('}');
    }
}

using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// <see cref="ControlCodec.Read"/> on any frame type: the input is one type byte and the payload. Refusals are
/// <see cref="ProtocolException"/> only; an accepted payload must write back to the same bytes (Write(Read(x)) == x) and
/// read back to the same message (Read(Write(m)) == m). Allocation budget: the fields of the message, at most 16 bytes
/// per payload byte (a one-byte string costs 3 input bytes and a 32-byte string object; a route credential of 13 bytes
/// an object and three arrays), plus the slack of a refusal: never a length read from the input before it is checked.
/// </summary>
public sealed class ControlReadTarget : FuzzTarget
{
    public const int BytesPerInputByte = 16;

    public override string Name => "control";

    public override byte[] Generate(Random random)
    {
        var message = ControlGenerators.Any(random, valid: true);
        return [(byte)message.FrameType, .. ControlCodec.ToArray(message)];
    }

    public override IEnumerable<byte[]> Seeds()
    {
        foreach (var type in Enum.GetValues<FrameType>())
        {
            yield return [(byte)type];
        }
        yield return [];
        yield return [0xff, 0, 0];
        // An Open whose route announces 65 servers and carries them; one that announces 0xffff and carries none.
        yield return OpenWithRouteCount(65, 65);
        yield return OpenWithRouteCount(0xffff, 0);
        yield return OpenWithRouteCount(64, 64);
        // A string of 4097 bytes, a byte field of 257.
        yield return [(byte)FrameType.GoAway, 0, 0, 0, 7, 0x10, 0x01, .. new byte[4097]];
        yield return [(byte)FrameType.AuthProof, 0x01, 0x01, .. new byte[257]];
        yield return [(byte)FrameType.AuthProof, 0xff, 0xff];
    }

    private static byte[] OpenWithRouteCount(int announced, int carried)
    {
        var head = ControlCodec.ToArray(new OpenMessage(StreamProtocol.Tcp, "t", "tcp://h:1", [], 1000, OpenOptions.None, "c"));
        // protocol (1) + "t" (3) + "tcp://h:1" (11), then the route count
        var bytes = new List<byte> { (byte)FrameType.Open };
        bytes.AddRange(head.AsSpan(0, 15).ToArray());
        bytes.Add((byte)(announced >> 8));
        bytes.Add((byte)announced);
        for (var i = 0; i < carried; i++)
        {
            bytes.AddRange([0, 3, (byte)'q', (byte)'m', (byte)'t']);
        }
        bytes.AddRange(head.AsSpan(17).ToArray());
        return [.. bytes];
    }

    public override void Execute(byte[] input)
    {
        if (input.Length == 0)
        {
            return;
        }
        var type = (FrameType)input[0];
        var payload = Targets.Generate.Segmented(input[1..]);
        ControlMessage? message = null;
        var before = AllocatedBytes();
        try
        {
            message = ControlCodec.Read(type, payload);
        }
        catch (ProtocolException)
        {
        }
        CheckAllocation(before, AllocationSlack + BytesPerInputByte * (long)(input.Length - 1), "ControlCodec.Read", input.Length - 1);
        Outcome(message is null ? "refused" : "read " + type);
        if (message is null)
        {
            return;
        }
        if (message.FrameType != type)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"a {type} payload was read as a {message.FrameType} message");
        }
        byte[] written;
        try
        {
            written = ControlCodec.ToArray(message);
        }
        catch (ArgumentException ex)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the reader accepted a {type} message the writer refuses: {ex.Message}", ex);
        }
        if (!written.AsSpan().SequenceEqual(input.AsSpan(1)))
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"Write(Read(x)) != x for a {type} payload of {input.Length - 1} bytes ({written.Length} written)");
        }
        CheckSameMessage(message, ControlCodec.Read(type, new ReadOnlySequence<byte>(written)));
    }

    /// <summary>Fails unless both messages have the same values (public properties, recursively).</summary>
    public static void CheckSameMessage(ControlMessage expected, ControlMessage actual)
    {
        var (a, b) = (Targets.Generate.Canonical(expected), Targets.Generate.Canonical(actual));
        if (a != b)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"Read(Write(m)) != m:\n  m  = {Cut(a)}\n  m' = {Cut(b)}");
        }
    }

    private static string Cut(string s) => s.Length > 600 ? s[..600] + "…" : s;
}

/// <summary>
/// <see cref="ControlCodec.Write"/> on generated messages, valid or not (the input's first 8 bytes seed the generator):
/// the writer refuses with <see cref="ArgumentException"/>, before writing a byte, what the reader would refuse or
/// could not read back equal; what it writes reads back to the same message (Read(Write(m)) == m).
/// </summary>
public sealed class ControlWriteTarget : FuzzTarget
{
    public override string Name => "control-write";

    public override byte[] Generate(Random random)
    {
        var seed = new byte[8];
        random.NextBytes(seed);
        return seed;
    }

    public override void Execute(byte[] input)
    {
        Span<byte> seed = stackalloc byte[8];
        input.AsSpan(0, Math.Min(8, input.Length)).CopyTo(seed);
        var random = new Random((int)(BinaryPrimitives.ReadUInt64LittleEndian(seed) % int.MaxValue));
        var message = ControlGenerators.Any(random, valid: random.Next(2) == 0);
        var output = new ArrayBufferWriter<byte>();
        try
        {
            ControlCodec.Write(message, output);
        }
        catch (ArgumentException)
        {
            if (output.WrittenCount != 0)
            {
                throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the writer refused a {message.FrameType} message after writing {output.WrittenCount} bytes");
            }
            Outcome("refused");
            return;
        }
        ControlMessage read;
        try
        {
            read = ControlCodec.Read(message.FrameType, new ReadOnlySequence<byte>(output.WrittenMemory));
        }
        catch (ProtocolException ex)
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the writer wrote a {message.FrameType} message the reader refuses: {ex.Message}", ex);
        }
        ControlReadTarget.CheckSameMessage(message, read);
        Outcome("written " + message.FrameType);
    }
}

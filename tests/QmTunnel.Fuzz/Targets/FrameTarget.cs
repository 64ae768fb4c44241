using System.Buffers;
using System.Buffers.Binary;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// <see cref="FrameCodec.TryReadFrame"/> over a byte stream of frames, with the handshake's limit (16 KiB) and the
/// hard cap (<see cref="FrameCodec.HardMaxPayload"/>). Refusals are <see cref="ProtocolException"/> only; it allocates
/// nothing (the slack covers a refusal); a frame it returns is the input's bytes (header written back equal, payload the
/// very bytes, never over the limit); when it asks for more bytes it leaves the buffer untouched, and never waits for
/// the payload of a header it would refuse.
/// </summary>
public sealed class FrameTarget : FuzzTarget
{
    private static readonly int[] Limits = [16 * 1024, FrameCodec.HardMaxPayload];

    public override string Name => "frame";

    public override byte[] Generate(Random random)
    {
        var frames = new List<byte>();
        for (var count = random.Next(1, 5); count > 0; count--)
        {
            frames.AddRange(ValidFrame(random));
        }
        return [.. frames];
    }

    /// <summary>
    /// One valid frame (payload at most 16 KiB, so valid under both limits); with <paramref name="fewStreams"/> its stream
    /// id is one of the first few a dialer opens (1, 3, 5), so frames of a sequence meet the same streams.
    /// </summary>
    public static byte[] ValidFrame(Random random, bool fewStreams = false)
    {
        var types = Enum.GetValues<FrameType>();
        var type = types[random.Next(types.Length)];
        byte[] payload = type switch
        {
            FrameType.Ping or FrameType.Pong or FrameType.Ack => new byte[8],
            FrameType.WindowUpdate => new byte[4],
            FrameType.OpenAck => [],
            FrameType.Data => new byte[random.Next(3) == 0 ? 16 * 1024 : random.Next(64)],
            _ => ControlGeneratorFor(type, random),
        };
        random.NextBytes(type is FrameType.Hello or FrameType.GoAway or FrameType.Open or FrameType.Reset or FrameType.AuthStart
            or FrameType.AuthChallenge or FrameType.AuthProof or FrameType.AuthOk or FrameType.SessionStart or FrameType.Resume
            or FrameType.Resumed ? [] : payload);
        var linkFrame = type is FrameType.Hello or FrameType.GoAway or FrameType.Ping or FrameType.Pong or FrameType.Ack
            or FrameType.AuthStart or FrameType.AuthChallenge or FrameType.AuthProof or FrameType.AuthOk
            or FrameType.SessionStart or FrameType.Resume or FrameType.Resumed;
        var stream = linkFrame ? 0u : fewStreams ? (uint)(1 + 2 * random.Next(3)) : (uint)random.Next(1, int.MaxValue);
        var flags = type == FrameType.Data && random.Next(2) == 0 ? FrameFlags.Fin : FrameFlags.None;
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(type, flags, stream, payload.Length).Write(bytes);
        payload.CopyTo(bytes, FrameHeader.Size);
        return bytes;
    }

    private static byte[] ControlGeneratorFor(FrameType type, Random random)
    {
        var bytes = ControlGenerators.ByFrameType.TryGetValue(type, out var generator) ? ControlCodec.ToArray(generator(random, true)) : [];
        return bytes.Length <= 16 * 1024 ? bytes : [];
    }

    public override IEnumerable<byte[]> Seeds()
    {
        yield return [];
        yield return new byte[11];
        foreach (var length in new uint[] { 0, 1, 8, 16 * 1024, 16 * 1024 + 1, 256 * 1024, 1024 * 1024, 1024 * 1024 + 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff })
        {
            yield return Header(FrameType.Data, 0, 1, length);
            yield return Header(FrameType.Hello, 0, 0, length);
            yield return Header(FrameType.Ping, 0, 0, length);
        }
        yield return Header(FrameType.Data, 0x02, 1, 0);
        yield return Header(FrameType.Hello, 0x01, 0, 0);
        yield return Header(FrameType.Data, 0, 0, 0);
        yield return Header(FrameType.Hello, 0, 1, 0);
        yield return Header((FrameType)0x00, 0, 0, 0);
        yield return Header((FrameType)0xff, 0, 0, 0);
        byte[] reserved = Header(FrameType.OpenAck, 0, 1, 0);
        reserved[3] = 1;
        yield return reserved;
    }

    private static byte[] Header(FrameType type, byte flags, uint stream, uint length)
    {
        var bytes = new byte[FrameHeader.Size];
        bytes[0] = (byte)type;
        bytes[1] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), stream);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), length);
        return bytes;
    }

    public override void Execute(byte[] input)
    {
        foreach (var limit in Limits)
        {
            var buffer = Targets.Generate.Segmented(input);
            var frames = 0;
            var refused = false;
            var before = AllocatedBytes();
            try
            {
                while (FrameCodec.TryReadFrame(ref buffer, limit, out _, out _))
                {
                    frames++;
                }
            }
            catch (ProtocolException)
            {
                refused = true;
            }
            CheckAllocation(before, AllocationSlack, "FrameCodec.TryReadFrame", input.Length);
            Outcome(refused ? (frames == 0 ? "refused" : "frames, then refused") : frames == 0 ? "needs more" : "frames");
            CheckFrames(input, limit);
        }
    }

    /// <summary>The frames read are the input's bytes; "need more" leaves the buffer as it was and has a valid header.</summary>
    private static void CheckFrames(byte[] input, int limit)
    {
        var buffer = Targets.Generate.Segmented(input);
        var offset = 0L;
        Span<byte> written = stackalloc byte[FrameHeader.Size];
        try
        {
            while (true)
            {
                var start = buffer;
                if (!FrameCodec.TryReadFrame(ref buffer, limit, out var header, out var payload))
                {
                    if (!buffer.Start.Equals(start.Start) || buffer.Length != start.Length)
                    {
                        throw new FuzzFailure(FuzzFailureKind.RoundTrip, "TryReadFrame returned false but moved the buffer");
                    }
                    if (buffer.Length >= FrameHeader.Size)
                    {
                        // It waits for this payload: its header must be one it accepts.
                        try
                        {
                            FrameCodec.ParseHeader(input.AsSpan((int)offset, FrameHeader.Size), limit);
                        }
                        catch (ProtocolException ex)
                        {
                            throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"TryReadFrame waits for the payload of a header it refuses ({ex.Message})");
                        }
                    }
                    return;
                }
                if (header.Length > limit || header.Length > FrameCodec.HardMaxPayload)
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"a frame of {header.Length} bytes passed the limit of {limit}");
                }
                header.Write(written);
                if (!written.SequenceEqual(input.AsSpan((int)offset, FrameHeader.Size)))
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the header at {offset} does not write back to its bytes");
                }
                if (!payload.ToArray().AsSpan().SequenceEqual(input.AsSpan((int)offset + FrameHeader.Size, header.Length)))
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"the payload of the frame at {offset} is not the input's bytes");
                }
                offset += FrameHeader.Size + header.Length;
                if (buffer.Length != input.Length - offset)
                {
                    throw new FuzzFailure(FuzzFailureKind.RoundTrip, $"after the frame at {offset}, {buffer.Length} bytes are left instead of {input.Length - offset}");
                }
            }
        }
        catch (ProtocolException)
        {
            // refused: checked by the measured pass already
        }
    }
}

using QmTunnel.Engine.Protocol;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// One generator per control message type. A new message (the Resume and Session frames of version 3, say) is covered
/// by adding its line here: the control targets draw every type listed, and a test fails while a
/// <see cref="ControlMessage"/> subclass of the engine has no generator. With <c>valid</c> false a generator may also
/// make what the writer must refuse (over-long strings and lists, lone surrogates, a zero timeout, a bad query depth).
/// </summary>
public static class ControlGenerators
{
    public static readonly IReadOnlyDictionary<Type, Func<Random, bool, ControlMessage>> All = new Dictionary<Type, Func<Random, bool, ControlMessage>>
    {
        [typeof(HelloMessage)] = (r, valid) => new HelloMessage(U16(r), U16(r), Str(r, valid), Str(r, valid), I32(r), I32(r))
        {
            // Version 4's compression bytes (any values: unknown ones are answered None), or none at all (a version 3 Hello).
            Compression = r.Next(4) == 0 ? null : new CompressionOffer((byte)(r.Next(2) == 0 ? r.Next(3) : r.Next(256)), (byte)r.Next(256)),
        },
        [typeof(GoAwayMessage)] = (r, valid) => new GoAwayMessage(Code(r), Str(r, valid)),
        [typeof(ResetMessage)] = (r, valid) => new ResetMessage(Code(r), Str(r, valid)),
        [typeof(AuthStartMessage)] = (r, valid) => new AuthStartMessage(valid || r.Next(4) > 0 ? (AuthMethod)r.Next(1, 3) : (AuthMethod)r.Next(256),
            Str(r, valid), Bin(r, valid)),
        [typeof(AuthChallengeMessage)] = (r, valid) => new AuthChallengeMessage(Bin(r, valid), Bin(r, valid), I32(r)),
        [typeof(AuthProofMessage)] = (r, valid) => new AuthProofMessage(Bin(r, valid)),
        [typeof(AuthOkMessage)] = (r, valid) => new AuthOkMessage(Str(r, valid), Str(r, valid), Bin(r, valid))
        {
            SessionId = Bin(r, valid),
            SessionSecret = Bin(r, valid),
            ResumeNonce = Bin(r, valid),
        },
        [typeof(SessionStartMessage)] = (r, valid) => new SessionStartMessage((uint)I32(r), (uint)I32(r), (uint)I32(r)),
        [typeof(ResumeMessage)] = (r, valid) => new ResumeMessage(Bin(r, valid), Bin(r, valid), (ulong)I32(r) << r.Next(33)),
        [typeof(ResumedMessage)] = (r, valid) => new ResumedMessage((ulong)I32(r) << r.Next(33)),
        [typeof(OpenMessage)] = Open,
    };

    /// <summary>The generator of each frame type that carries a control message.</summary>
    public static readonly IReadOnlyDictionary<FrameType, Func<Random, bool, ControlMessage>> ByFrameType =
        All.Values.ToDictionary(g => g(new Random(0), true).FrameType);

    /// <summary>A message of a random listed type.</summary>
    public static ControlMessage Any(Random random, bool valid)
    {
        var generators = All.Values.ToArray();
        return generators[random.Next(generators.Length)](random, valid);
    }

    private static OpenMessage Open(Random r, bool valid)
    {
        var protocol = valid || r.Next(8) > 0 ? (StreamProtocol)r.Next(1, 9) : (StreamProtocol)r.Next(256);
        var route = List(r, valid, () => Str(r, valid, brief: true));
        if (valid && protocol is StreamProtocol.AuthQuery or StreamProtocol.LinkInfo && route.Length == 0)
        {
            route = [Str(r, valid, brief: true)];
        }
        var credentials = r.Next(2) == 0 ? [] : route.Select(_ => r.Next(3) == 0 ? null
            : new RouteCredential(Str(r, valid, brief: true), Bin(r, valid), I32(r), Bin(r, valid), Bin(r, valid))).ToArray();
        if (!valid && r.Next(10) == 0)
        {
            credentials = [null];
        }
        byte depth = protocol is StreamProtocol.AuthQuery or StreamProtocol.LinkInfo && route.Length > 0 ? (byte)r.Next(Math.Min(route.Length, 256)) : (byte)0;
        if (!valid && r.Next(10) == 0)
        {
            depth = (byte)r.Next(256);
        }
        var timeout = r.Next(4) == 0 ? int.MaxValue : r.Next(1, 120_000);
        if (!valid && r.Next(10) == 0)
        {
            timeout = -r.Next(2);
        }
        var options = (OpenOptions)r.Next(8);
        // A Bind describes a RemoteToLocal tunnel and asks for 1..100000 connections; a Reverse names its Bind and has no route.
        uint bindStreamId = 0, maxConnections = 0;
        if (protocol == StreamProtocol.Bind)
        {
            options |= OpenOptions.RemoteToLocal;
            maxConnections = r.Next(3) == 0 ? ControlCodec.MaxReverseConnections : (uint)r.Next(1, 1000);
        }
        if (protocol == StreamProtocol.Reverse)
        {
            route = [];
            credentials = [];
            bindStreamId = r.Next(3) == 0 ? uint.MaxValue : (uint)r.Next(1, int.MaxValue);
        }
        if (!valid && r.Next(10) == 0)
        {
            (bindStreamId, maxConnections) = ((uint)r.Next(3), r.Next(2) == 0 ? 0 : ControlCodec.MaxReverseConnections + 1);
        }
        return new OpenMessage(protocol, Str(r, valid), Str(r, valid), route, timeout, options, Str(r, valid))
        {
            BindStreamId = bindStreamId,
            MaxConnections = maxConnections,
            Listen = Str(r, valid, brief: true),
            Servers = List(r, valid, () => Str(r, valid, brief: true)),
            RouteCredentials = credentials,
            QueryDepth = depth,
        };
    }

    private static string[] List(Random r, bool valid, Func<string> item)
    {
        var count = r.Next(6) switch
        {
            0 => ControlCodec.MaxListItems,
            1 when !valid => ControlCodec.MaxListItems + 1,
            _ => r.Next(4),
        };
        return Enumerable.Range(0, count).Select(_ => item()).ToArray();
    }

    private static string Str(Random r, bool valid, bool brief = false) =>
        !valid && r.Next(12) == 0 ? Generate.BadText(r) : Generate.Text(r, brief && r.Next(8) > 0 ? 40 : ControlCodec.MaxStringBytes);

    private static byte[] Bin(Random r, bool valid) =>
        !valid && r.Next(12) == 0 ? new byte[ControlCodec.MaxBytes + 1] : Generate.Bytes(r, ControlCodec.MaxBytes);

    private static ushort U16(Random r) => r.Next(3) == 0 ? (ushort)r.Next(1, 4) : (ushort)r.Next(0x10000);

    private static int I32(Random r) => r.Next(4) switch
    {
        0 => int.MaxValue,
        1 => int.MinValue,
        2 => r.Next(-2, 2),
        _ => r.Next(),
    };

    private static ProtocolErrorCode Code(Random r) =>
        r.Next(4) == 0 ? (ProtocolErrorCode)(uint)r.Next() : Enum.GetValues<ProtocolErrorCode>()[r.Next(Enum.GetValues<ProtocolErrorCode>().Length)];
}

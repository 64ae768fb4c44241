using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace QmTunnel.Engine.Protocol;

/// <summary>
/// The one serializer of control messages. Layout per message: fields in declaration order; integers big-endian;
/// strings as u16 length + UTF-8 (at most 4096 bytes); lists as u16 count + items. Reading never trusts a length:
/// a short or overlong field is a <see cref="ProtocolException"/>, and trailing bytes are too.
/// </summary>
public static partial class ControlCodec
{
    public const int MaxStringBytes = 4096;
    public const int MaxListItems = 64;
    /// <summary>Longest byte field (nonces, salts, keys, proofs).</summary>
    public const int MaxBytes = 256;

    public static int Write(ControlMessage message, IBufferWriter<byte> output)
    {
        Check(message);
        var w = new Writer(output);
        switch (message)
        {
            case HelloMessage h:
                w.U16(h.MinVersion); w.U16(h.MaxVersion); w.Str(h.ServerId); w.Str(h.ServerName); w.I32(h.MaxPayload); w.I32(h.InitialWindow);
                if (h.Compression is { } offer)
                {
                    w.U8(offer.Algorithm); w.U8(offer.Level);
                }
                break;
            case GoAwayMessage g:
                w.U32((uint)g.Code); w.Str(g.Reason);
                break;
            case OpenMessage o:
                w.U8((byte)o.Protocol); w.Str(o.Tunnel); w.Str(o.Target);
                if (o.Route.Count > MaxListItems)
                {
                    throw new ArgumentException($"a route has at most {MaxListItems} servers", nameof(message));
                }
                w.U16((ushort)o.Route.Count);
                foreach (var hop in o.Route)
                {
                    w.Str(hop);
                }
                w.I32(o.ConnectTimeoutMs); w.U8((byte)o.Options); w.Str(o.Client);
                w.Str(o.Listen);
                w.U16((ushort)o.Servers.Count);
                foreach (var server in o.Servers)
                {
                    w.Str(server);
                }
                w.U16((ushort)o.RouteCredentials.Count);
                foreach (var credential in o.RouteCredentials)
                {
                    if (credential is null)
                    {
                        w.U8(0);
                        continue;
                    }
                    w.U8(1); w.Str(credential.User); w.Bytes(credential.Salt); w.I32(credential.Iterations);
                    w.Bytes(credential.ClientKey); w.Bytes(credential.ServerKey);
                }
                w.U8(o.QueryDepth);
                w.U32(o.BindStreamId); w.U32(o.MaxConnections);
                break;
            case AuthStartMessage a:
                w.U8((byte)a.Method); w.Str(a.User); w.Bytes(a.ClientNonce);
                break;
            case AuthChallengeMessage c:
                w.Bytes(c.ServerNonce); w.Bytes(c.Salt); w.I32(c.Iterations);
                break;
            case AuthProofMessage p:
                w.Bytes(p.ClientProof);
                break;
            case AuthOkMessage ok:
                w.Str(ok.User); w.Str(ok.Group); w.Bytes(ok.ServerSignature);
                w.Bytes(ok.SessionId); w.Bytes(ok.SessionSecret); w.Bytes(ok.ResumeNonce);
                break;
            case SessionStartMessage ss:
                w.U32(ss.FailureToleranceMs); w.U32(ss.HeartbeatIntervalMs); w.U32(ss.ReceiveTimeoutMs);
                break;
            case ResumeMessage rs:
                w.Bytes(rs.SessionId); w.Bytes(rs.Proof); w.U64(rs.Received);
                break;
            case ResumedMessage rd:
                w.U64(rd.Received);
                break;
            case ResetMessage r:
                w.U32((uint)r.Code); w.Str(r.Reason);
                break;
            default:
                throw new ArgumentException($"{message.GetType().Name} is not a control message", nameof(message));
        }
        return w.Written;
    }

    /// <summary>Serializes to a new array (handshake and tests; the link writes into pooled buffers).</summary>
    public static byte[] ToArray(ControlMessage message)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        Write(message, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    public static ControlMessage Read(FrameType type, ReadOnlySequence<byte> payload)
    {
        if (payload.Length > FrameCodec.HardMaxPayload)
        {
            throw new ProtocolException(ProtocolErrorCode.FrameTooLarge, "control payload too large");
        }
        var r = new SequenceReader<byte>(payload);
        ControlMessage message = type switch
        {
            FrameType.Hello => ReadHello(ref r),
            FrameType.GoAway => new GoAwayMessage((ProtocolErrorCode)U32(ref r), Str(ref r)),
            FrameType.Open => ReadOpen(ref r),
            FrameType.Reset => new ResetMessage((ProtocolErrorCode)U32(ref r), Str(ref r)),
            FrameType.AuthStart => ReadAuthStart(ref r),
            FrameType.AuthChallenge => new AuthChallengeMessage(Bytes(ref r), Bytes(ref r), I32(ref r)),
            FrameType.AuthProof => new AuthProofMessage(Bytes(ref r)),
            FrameType.AuthOk => new AuthOkMessage(Str(ref r), Str(ref r), Bytes(ref r)) { SessionId = Bytes(ref r), SessionSecret = Bytes(ref r), ResumeNonce = Bytes(ref r) },
            FrameType.SessionStart => new SessionStartMessage(U32(ref r), U32(ref r), U32(ref r)),
            FrameType.Resume => new ResumeMessage(Bytes(ref r), Bytes(ref r), U64(ref r)),
            FrameType.Resumed => new ResumedMessage(U64(ref r)),
            _ => throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{type} frames carry no control message"),
        };
        if (!r.End)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{type} payload has {r.Remaining} trailing bytes");
        }
        return message;
    }

    /// <summary>A Hello; its compression bytes (version 4) are read when the payload goes on after the version 3 fields.</summary>
    private static HelloMessage ReadHello(ref SequenceReader<byte> r)
    {
        var hello = new HelloMessage(U16(ref r), U16(ref r), Str(ref r), Str(ref r), I32(ref r), I32(ref r));
        return r.End ? hello with { Compression = null } : hello with { Compression = new CompressionOffer(U8(ref r), U8(ref r)) };
    }

    private static OpenMessage ReadOpen(ref SequenceReader<byte> r)
    {
        var protocol = (StreamProtocol)U8(ref r);
        if (!Enum.IsDefined(protocol))
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"unknown stream protocol {(byte)protocol}");
        }
        var tunnel = Str(ref r);
        var target = Str(ref r);
        var count = U16(ref r);
        if (count > MaxListItems)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"route of {count} servers; at most {MaxListItems}");
        }
        var route = new string[count];
        for (var i = 0; i < count; i++)
        {
            route[i] = Str(ref r);
        }
        var timeout = I32(ref r);
        var options = (OpenOptions)U8(ref r);
        var client = Str(ref r);
        if (timeout <= 0)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"connect timeout {timeout} ms is not positive");
        }
        var listen = Str(ref r);
        var serverCount = U16(ref r);
        if (serverCount > MaxListItems)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"chain of {serverCount} servers; at most {MaxListItems}");
        }
        var servers = new string[serverCount];
        for (var i = 0; i < serverCount; i++)
        {
            servers[i] = Str(ref r);
        }
        var credentialCount = U16(ref r);
        if (credentialCount != 0 && credentialCount != count)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{credentialCount} route credentials for {count} route entries");
        }
        var credentials = new RouteCredential?[credentialCount];
        for (var i = 0; i < credentialCount; i++)
        {
            credentials[i] = U8(ref r) switch
            {
                0 => null,
                1 => new RouteCredential(Str(ref r), Bytes(ref r), I32(ref r), Bytes(ref r), Bytes(ref r)),
                var b => throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"route credential marker {b}; expected 0 or 1"),
            };
        }
        var queryDepth = U8(ref r);
        if (QueryDepthProblem(protocol, queryDepth, count) is { } depthProblem)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, depthProblem);
        }
        var bindStreamId = U32(ref r);
        var maxConnections = U32(ref r);
        if (ReverseProblem(protocol, options, route.Length, bindStreamId, maxConnections) is { } reverseProblem)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, reverseProblem);
        }
        return new OpenMessage(protocol, tunnel, target, route, timeout, options, client)
        {
            BindStreamId = bindStreamId,
            MaxConnections = maxConnections,
            Listen = listen,
            Servers = servers,
            RouteCredentials = credentials,
            QueryDepth = queryDepth,
        };
    }

    /// <summary>
    /// A login query or link query names a route entry to ask about (depth less than the route's length); other streams
    /// carry 0.
    /// </summary>
    private static string? QueryDepthProblem(StreamProtocol protocol, byte depth, int routeCount) =>
        protocol is StreamProtocol.AuthQuery or StreamProtocol.LinkInfo
            ? depth < routeCount ? null : $"a {protocol} query of depth {depth} on a route of {routeCount} servers: the depth must be less than the route's length"
            : depth == 0 ? null : $"query depth {depth} on a {protocol} stream: only login and link queries carry one";

    /// <summary>The most Reverse streams one Bind may ask for (a tunnel's MaxConnections at most).</summary>
    public const uint MaxReverseConnections = 100_000;

    /// <summary>
    /// Bind and Reverse fields (docs/protocol.md, "Reverse tunnels"): a Bind describes a RemoteToLocal tunnel and asks for
    /// 1..100000 connections; a Reverse names its Bind and goes one link only (no route); every other stream carries 0 in both.
    /// </summary>
    private static string? ReverseProblem(StreamProtocol protocol, OpenOptions options, int routeCount, uint bindStreamId, uint maxConnections)
    {
        if (protocol == StreamProtocol.Bind && ((options & OpenOptions.RemoteToLocal) == 0 || maxConnections is 0 or > MaxReverseConnections))
        {
            return $"a Bind must describe a RemoteToLocal tunnel and allow 1 to {MaxReverseConnections} connections (it allows {maxConnections})";
        }
        if (protocol != StreamProtocol.Bind && maxConnections != 0)
        {
            return $"MaxConnections {maxConnections} on a {protocol} stream: only a Bind carries it";
        }
        if (protocol == StreamProtocol.Reverse && (bindStreamId == 0 || routeCount != 0))
        {
            return "a Reverse stream names the Bind it belongs to (a stream id) and has no route";
        }
        if (protocol != StreamProtocol.Reverse && bindStreamId != 0)
        {
            return $"BindStreamId {bindStreamId} on a {protocol} stream: only a Reverse stream names a Bind";
        }
        return null;
    }

    private static AuthStartMessage ReadAuthStart(ref SequenceReader<byte> r)
    {
        var method = (AuthMethod)U8(ref r);
        if (!Enum.IsDefined(method))
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"unknown login method {(byte)method}");
        }
        return new AuthStartMessage(method, Str(ref r), Bytes(ref r));
    }

    private static byte[] Bytes(ref SequenceReader<byte> r)
    {
        var length = U16(ref r);
        if (length > MaxBytes)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"byte field of {length} bytes; at most {MaxBytes}");
        }
        if (r.Remaining < length)
        {
            throw Truncated();
        }
        var bytes = r.UnreadSequence.Slice(0, length).ToArray();
        r.Advance(length);
        return bytes;
    }

    private static byte U8(ref SequenceReader<byte> r) =>
        r.TryRead(out var v) ? v : throw Truncated();

    private static ushort U16(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out short v) ? (ushort)v : throw Truncated();

    private static uint U32(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out int v) ? (uint)v : throw Truncated();

    private static ulong U64(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out long v) ? (ulong)v : throw Truncated();

    private static int I32(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out int v) ? v : throw Truncated();

    private static string Str(ref SequenceReader<byte> r)
    {
        var length = U16(ref r);
        if (length > MaxStringBytes)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"string of {length} bytes; at most {MaxStringBytes}");
        }
        if (r.Remaining < length)
        {
            throw Truncated();
        }
        var bytes = r.UnreadSequence.Slice(0, length);
        r.Advance(length);
        try
        {
            return Utf8Strict.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, "string is not valid UTF-8");
        }
    }

    private static readonly UTF8Encoding Utf8Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static ProtocolException Truncated() => new(ProtocolErrorCode.MalformedFrame, "control payload is truncated");

    private ref struct Writer(IBufferWriter<byte> output)
    {
        public int Written;

        public void U8(byte v)
        {
            output.GetSpan(1)[0] = v;
            output.Advance(1);
            Written += 1;
        }

        public void U16(ushort v)
        {
            BinaryPrimitives.WriteUInt16BigEndian(output.GetSpan(2), v);
            output.Advance(2);
            Written += 2;
        }

        public void U32(uint v)
        {
            BinaryPrimitives.WriteUInt32BigEndian(output.GetSpan(4), v);
            output.Advance(4);
            Written += 4;
        }

        public void I32(int v) => U32((uint)v);

        public void U64(ulong v)
        {
            BinaryPrimitives.WriteUInt64BigEndian(output.GetSpan(8), v);
            output.Advance(8);
            Written += 8;
        }

        public void Bytes(byte[] v)
        {
            if (v.Length > MaxBytes)
            {
                throw new ArgumentException($"byte field of {v.Length} bytes; at most {MaxBytes}");
            }
            U16((ushort)v.Length);
            v.CopyTo(output.GetSpan(v.Length));
            output.Advance(v.Length);
            Written += v.Length;
        }

        public void Str(string v)
        {
            var count = Utf8Strict.GetByteCount(v);
            if (count > MaxStringBytes)
            {
                throw new ArgumentException($"string of {count} bytes; at most {MaxStringBytes}");
            }
            U16((ushort)count);
            var span = output.GetSpan(count);
            Utf8Strict.GetBytes(v, span);
            output.Advance(count);
            Written += count;
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace QmTunnel.Engine.Protocol;

/// <summary>A typed control message: the payload of a Hello, GoAway, Open or Reset frame.</summary>
public abstract record ControlMessage
{
    public abstract FrameType FrameType { get; }
}

/// <summary>
/// First frame each way. The dialer offers [MinVersion, MaxVersion]; the acceptor answers with a Hello whose Min
/// and Max are both the chosen version, or with a GoAway(UnsupportedVersion).
/// </summary>
public sealed record HelloMessage(ushort MinVersion, ushort MaxVersion, string ServerId, string ServerName, int MaxPayload, int InitialWindow)
    : ControlMessage
{
    public override FrameType FrameType => FrameType.Hello;
}

/// <summary>The sender closes the link: a code and a human-readable reason.</summary>
public sealed record GoAwayMessage(ProtocolErrorCode Code, string Reason) : ControlMessage
{
    public override FrameType FrameType => FrameType.GoAway;
}

/// <summary>Application protocol of a stream. Wire values.</summary>
public enum StreamProtocol : byte
{
    Tcp = 1,
}

/// <summary>Socket options the far end applies to its outgoing connection. Wire values.</summary>
[Flags]
public enum OpenOptions : byte
{
    None = 0,
    NoDelay = 0x01,
    KeepAlive = 0x02,
}

/// <summary>
/// Opens a stream: carry it to <see cref="Target"/>, through the servers in <see cref="Route"/> first (empty when
/// the receiver is the last hop). <see cref="Tunnel"/> and <see cref="Client"/> are informational (logs, stats).
/// </summary>
public sealed record OpenMessage(StreamProtocol Protocol, string Tunnel, string Target, IReadOnlyList<string> Route,
    int ConnectTimeoutMs, OpenOptions Options, string Client) : ControlMessage
{
    public override FrameType FrameType => FrameType.Open;
}

/// <summary>Aborts a stream both ways, with a code and reason (e.g. the target refused the connection).</summary>
public sealed record ResetMessage(ProtocolErrorCode Code, string Reason) : ControlMessage
{
    public override FrameType FrameType => FrameType.Reset;
}

/// <summary>
/// The one serializer of control messages. Layout per message: fields in declaration order; integers big-endian;
/// strings as u16 length + UTF-8 (at most 4096 bytes); lists as u16 count + items. Reading never trusts a length:
/// a short or overlong field is a <see cref="ProtocolException"/>, and trailing bytes are too.
/// </summary>
public static class ControlCodec
{
    public const int MaxStringBytes = 4096;
    public const int MaxListItems = 64;

    public static int Write(ControlMessage message, IBufferWriter<byte> output)
    {
        Check(message);
        var w = new Writer(output);
        switch (message)
        {
            case HelloMessage h:
                w.U16(h.MinVersion); w.U16(h.MaxVersion); w.Str(h.ServerId); w.Str(h.ServerName); w.I32(h.MaxPayload); w.I32(h.InitialWindow);
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
                break;
            case ResetMessage r:
                w.U32((uint)r.Code); w.Str(r.Reason);
                break;
            default:
                throw new ArgumentException($"{message.GetType().Name} is not a control message", nameof(message));
        }
        return w.Written;
    }

    /// <summary>Refuses a message the reader would refuse, before a byte is written (all or nothing).</summary>
    private static void Check(ControlMessage message)
    {
        static void Str(string s, string field)
        {
            if (Encoding.UTF8.GetByteCount(s) > MaxStringBytes)
            {
                throw new ArgumentException($"{field} is longer than {MaxStringBytes} UTF-8 bytes", nameof(message));
            }
        }
        switch (message)
        {
            case HelloMessage h:
                Str(h.ServerId, "ServerId"); Str(h.ServerName, "ServerName");
                break;
            case GoAwayMessage g:
                Str(g.Reason, "Reason");
                break;
            case ResetMessage r:
                Str(r.Reason, "Reason");
                break;
            case OpenMessage o:
                Str(o.Tunnel, "Tunnel"); Str(o.Target, "Target"); Str(o.Client, "Client");
                if (o.Route.Count > MaxListItems)
                {
                    throw new ArgumentException($"a route has at most {MaxListItems} servers", nameof(message));
                }
                foreach (var hop in o.Route)
                {
                    Str(hop, "Route");
                }
                if (o.ConnectTimeoutMs <= 0)
                {
                    throw new ArgumentException("ConnectTimeoutMs must be positive", nameof(message));
                }
                break;
        }
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
            FrameType.Hello => new HelloMessage(U16(ref r), U16(ref r), Str(ref r), Str(ref r), I32(ref r), I32(ref r)),
            FrameType.GoAway => new GoAwayMessage((ProtocolErrorCode)U32(ref r), Str(ref r)),
            FrameType.Open => ReadOpen(ref r),
            FrameType.Reset => new ResetMessage((ProtocolErrorCode)U32(ref r), Str(ref r)),
            _ => throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{type} frames carry no control message"),
        };
        if (!r.End)
        {
            throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"{type} payload has {r.Remaining} trailing bytes");
        }
        return message;
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
        return new OpenMessage(protocol, tunnel, target, route, timeout, options, client);
    }

    private static byte U8(ref SequenceReader<byte> r) =>
        r.TryRead(out var v) ? v : throw Truncated();

    private static ushort U16(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out short v) ? (ushort)v : throw Truncated();

    private static uint U32(ref SequenceReader<byte> r) =>
        r.TryReadBigEndian(out int v) ? (uint)v : throw Truncated();

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

        public void Str(string v)
        {
            var count = Encoding.UTF8.GetByteCount(v);
            if (count > MaxStringBytes)
            {
                throw new ArgumentException($"string of {count} bytes; at most {MaxStringBytes}");
            }
            U16((ushort)count);
            var span = output.GetSpan(count);
            Encoding.UTF8.GetBytes(v, span);
            output.Advance(count);
            Written += count;
        }
    }
}

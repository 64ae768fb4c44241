using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// A <c>socks5://</c> listener's handler (RFC 1928): each client names its target. It reads the greeting (method 0x00,
/// no authentication; any other offer is answered 0xFF and closed) and one CONNECT request with an IPv4 address, an IPv6
/// address or a domain name. A name is not resolved here: it becomes the target <c>tcp://name:port</c> of the stream's
/// Open, so the last server of the chain resolves it (curl's <c>--socks5-hostname</c>), and every server checks its
/// allow-rules against it. BIND and UDP ASSOCIATE are answered "command not supported" (0x07). The chain's answer is
/// the reply: success with the bound address 0.0.0.0:0 (the address the last server connected from is not told), or a
/// reply code for the failure (<see cref="ReplyFor"/>).
/// Every byte from the client is hostile: the whole handshake must arrive within <c>handshakeTimeout</c> (measured
/// with the tunnel's TimeProvider), each field is read with its exact length into one buffer of the protocol's largest
/// message (262 bytes), nothing past the request is read (bytes a client sends early belong to the target), and a
/// malformed message is answered where the protocol has an answer, then the connection is closed.
/// </summary>
internal sealed class Socks5Handler(TimeProvider time, TimeSpan handshakeTimeout) : IConnectionHandler
{
    private const byte Version = 5;
    private const byte NoAuthentication = 0x00, NoAcceptableMethod = 0xFF;
    private const byte Connect = 0x01;
    private const byte IPv4 = 0x01, DomainName = 0x03, IPv6 = 0x04;

    /// <summary>The longest message a client sends: a request with a 255-byte name (4 + 1 + 255 + 2).</summary>
    private const int MaxMessage = 262;

    /// <summary>Longest DNS name (RFC 1035: 253 characters written without the final dot).</summary>
    public const int MaxNameLength = 253;

    /// <summary>SOCKS5 reply codes (RFC 1928, section 6).</summary>
    public enum Reply : byte
    {
        Succeeded = 0x00,
        GeneralFailure = 0x01,
        NotAllowedByRuleset = 0x02,
        NetworkUnreachable = 0x03,
        HostUnreachable = 0x04,
        ConnectionRefused = 0x05,
        TtlExpired = 0x06,
        CommandNotSupported = 0x07,
        AddressTypeNotSupported = 0x08,
    }

    public TimeSpan HandshakeTimeout { get; } = handshakeTimeout;

    public bool WaitsForOpen => true;

    public async ValueTask<ConnectionDecision> ChooseTargetAsync(AppConnection connection, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(HandshakeTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            return await HandshakeAsync(connection, new byte[MaxMessage], linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return ConnectionDecision.Refused($"SOCKS5 client {connection.Remote} did not complete its request within {HandshakeTimeout.TotalSeconds:0.###} s (ConnectTimeout)");
        }
        catch (OperationCanceledException)
        {
            return ConnectionDecision.Refused("the tunnel is stopping");
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            return ConnectionDecision.Refused($"SOCKS5 client {connection.Remote} went away during its request: {ex.Message}");
        }
    }

    private static async ValueTask<ConnectionDecision> HandshakeAsync(AppConnection connection, byte[] buffer, CancellationToken cancellationToken)
    {
        // greeting: VER NMETHODS METHODS[NMETHODS]
        if (!await ReadExactAsync(connection, buffer.AsMemory(0, 2), cancellationToken).ConfigureAwait(false))
        {
            return Refused(connection, "closed before its greeting");
        }
        if (buffer[0] != Version)
        {
            // not SOCKS5 (SOCKS4, HTTP, a scanner): told "no acceptable method" in SOCKS5's words, and closed
            await SendAsync(connection, [Version, NoAcceptableMethod], cancellationToken).ConfigureAwait(false);
            return Refused(connection, $"sent version {buffer[0]} instead of 5 (only SOCKS5 is spoken here)");
        }
        var methods = buffer[1];
        if (methods == 0 || !await ReadExactAsync(connection, buffer.AsMemory(0, methods), cancellationToken).ConfigureAwait(false))
        {
            await SendAsync(connection, [Version, NoAcceptableMethod], cancellationToken).ConfigureAwait(false);
            return Refused(connection, methods == 0 ? "offered no authentication method" : "closed during its greeting");
        }
        if (Array.IndexOf(buffer, NoAuthentication, 0, methods) < 0)
        {
            await SendAsync(connection, [Version, NoAcceptableMethod], cancellationToken).ConfigureAwait(false);
            return Refused(connection, "offered no method this listener takes (it takes 0x00, no authentication)");
        }
        await SendAsync(connection, [Version, NoAuthentication], cancellationToken).ConfigureAwait(false);

        // request: VER CMD RSV ATYP DST.ADDR DST.PORT
        if (!await ReadExactAsync(connection, buffer.AsMemory(0, 4), cancellationToken).ConfigureAwait(false))
        {
            return Refused(connection, "closed before its request");
        }
        if (buffer[0] != Version)
        {
            await SendReplyAsync(connection, Reply.GeneralFailure, cancellationToken).ConfigureAwait(false);
            return Refused(connection, $"sent a request of version {buffer[0]} instead of 5");
        }
        if (buffer[1] != Connect)
        {
            await SendReplyAsync(connection, Reply.CommandNotSupported, cancellationToken).ConfigureAwait(false);
            return Refused(connection, $"asked for command {buffer[1]} (only CONNECT, 1, is supported; BIND and UDP ASSOCIATE are not)");
        }
        var (host, problem) = await ReadAddressAsync(connection, buffer, buffer[3], cancellationToken).ConfigureAwait(false);
        if (host is null)
        {
            await SendReplyAsync(connection, problem!.Value.Reply, cancellationToken).ConfigureAwait(false);
            return Refused(connection, problem.Value.Why);
        }
        if (!await ReadExactAsync(connection, buffer.AsMemory(0, 2), cancellationToken).ConfigureAwait(false))
        {
            return Refused(connection, "closed before the port of its request");
        }
        var port = BinaryPrimitives.ReadUInt16BigEndian(buffer);
        if (port == 0)
        {
            await SendReplyAsync(connection, Reply.GeneralFailure, cancellationToken).ConfigureAwait(false);
            return Refused(connection, "asked for port 0");
        }
        EndpointUri target;
        try
        {
            target = EndpointUri.ParseTarget("tcp://" + Security.AccessControl.HostPort(host, port), "SOCKS5 target");
        }
        catch (Errors.QmTunnelException ex)
        {
            await SendReplyAsync(connection, Reply.GeneralFailure, cancellationToken).ConfigureAwait(false);
            return Refused(connection, $"named a target qmTunnel cannot use: {ex.Message}");
        }
        return ConnectionDecision.To(target);
    }

    /// <summary>The host of a request's DST.ADDR (an address as text, or a checked name), or the reply and why not.</summary>
    private static async ValueTask<(string? Host, (Reply Reply, string Why)? Problem)> ReadAddressAsync(AppConnection connection, byte[] buffer, byte type,
        CancellationToken cancellationToken)
    {
        switch (type)
        {
            case IPv4:
            case IPv6:
                var length = type == IPv4 ? 4 : 16;
                if (!await ReadExactAsync(connection, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false))
                {
                    return (null, (Reply.GeneralFailure, "closed in the middle of its request's address"));
                }
                var address = new IPAddress(buffer.AsSpan(0, length));
                return (address.IsIPv4MappedToIPv6 ? address.MapToIPv4().ToString() : address.ToString(), null);
            case DomainName:
                if (!await ReadExactAsync(connection, buffer.AsMemory(0, 1), cancellationToken).ConfigureAwait(false))
                {
                    return (null, (Reply.GeneralFailure, "closed in the middle of its request's name"));
                }
                var nameLength = buffer[0];
                if (nameLength == 0 || !await ReadExactAsync(connection, buffer.AsMemory(0, nameLength), cancellationToken).ConfigureAwait(false))
                {
                    return (null, (Reply.GeneralFailure, nameLength == 0 ? "named an empty host" : "closed in the middle of its request's name"));
                }
                return NameProblem(buffer.AsSpan(0, nameLength)) is { } why
                    ? (null, (Reply.GeneralFailure, why))
                    : (Encoding.ASCII.GetString(buffer, 0, nameLength).TrimEnd('.'), null);
            default:
                return (null, (Reply.AddressTypeNotSupported, $"used address type {type} (1 IPv4, 3 domain name and 4 IPv6 are supported)"));
        }
    }

    /// <summary>
    /// Null when <paramref name="name"/> is a host name the last server may be asked to resolve: 1 to 253 characters of
    /// letters, digits, '-', '_' and '.', in labels of 1 to 63 (a final dot allowed); else why not. No other byte may pass
    /// into a target URI (an '@', '/', ':' or '?' would change what it means).
    /// </summary>
    public static string? NameProblem(ReadOnlySpan<byte> name)
    {
        if (name.Length > 0 && name[^1] == (byte)'.')
        {
            name = name[..^1];
        }
        if (name.Length is 0 or > MaxNameLength)
        {
            return $"named a host of {name.Length} characters (a DNS name has 1 to {MaxNameLength})";
        }
        var label = 0;
        foreach (var c in name)
        {
            if (c == (byte)'.')
            {
                if (label == 0)
                {
                    return "named a host with an empty label ('..' or a leading '.')";
                }
                label = 0;
                continue;
            }
            if (!(c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9' or (byte)'-' or (byte)'_'))
            {
                return $"named a host with the byte 0x{c:X2} (a host name has letters, digits, '-', '_' and '.')";
            }
            if (++label > 63)
            {
                return "named a host with a label longer than 63 characters";
            }
        }
        return null;
    }

    public ValueTask OpenedAsync(AppConnection connection, CancellationToken cancellationToken) =>
        SendReplyAsync(connection, Reply.Succeeded, cancellationToken);

    public async ValueTask FailedAsync(AppConnection connection, ProtocolErrorCode code, string reason, CancellationToken cancellationToken)
    {
        try
        {
            await SendReplyAsync(connection, ReplyFor(code), cancellationToken).ConfigureAwait(false);
            connection.ShutdownSend();
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // the client went away before its answer: nothing to tell
        }
    }

    /// <summary>
    /// The reply for a chain's refusal: a denial by the allow-rules of any server (the owner's included) 0x02, the last
    /// server's refused connection 0x05, unreachable host or unresolved name 0x04, unreachable network 0x03, no answer in
    /// time 0x06; anything else (a link down, a login refused, limits) 0x01.
    /// </summary>
    public static Reply ReplyFor(ProtocolErrorCode code) => code switch
    {
        ProtocolErrorCode.PermissionDenied => Reply.NotAllowedByRuleset,
        ProtocolErrorCode.TargetRefused => Reply.ConnectionRefused,
        ProtocolErrorCode.TargetHostUnreachable => Reply.HostUnreachable,
        ProtocolErrorCode.TargetNetworkUnreachable => Reply.NetworkUnreachable,
        ProtocolErrorCode.TargetTimedOut => Reply.TtlExpired,
        _ => Reply.GeneralFailure,
    };

    private static ConnectionDecision Refused(AppConnection connection, string why) =>
        ConnectionDecision.Refused($"SOCKS5 client {connection.Remote} {why}");

    /// <summary>A reply: VER REP RSV ATYP=IPv4 BND.ADDR=0.0.0.0 BND.PORT=0.</summary>
    private static ValueTask SendReplyAsync(AppConnection connection, Reply reply, CancellationToken cancellationToken) =>
        SendAsync(connection, [Version, (byte)reply, 0, IPv4, 0, 0, 0, 0, 0, 0], cancellationToken);

    private static ValueTask SendAsync(AppConnection connection, byte[] data, CancellationToken cancellationToken) =>
        connection.SendAsync(new ReadOnlySequence<byte>(data), cancellationToken);

    /// <summary>Fills <paramref name="buffer"/> exactly (never reads past it); false when the client ended first.</summary>
    private static async ValueTask<bool> ReadExactAsync(AppConnection connection, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await connection.ReceiveAsync(buffer[read..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }
}

using System.Buffers;
using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// <c>udp://host:port</c>. Listening: one UDP socket (<see cref="UdpAssociationListener"/>) whose clients are told
/// apart by source address, each an association handed out as a datagram <see cref="AppConnection"/>. Dialing (at the
/// last server): one UDP socket per association, bound to a free port of <see cref="PortRange"/> and connected to the
/// target (<see cref="UdpDialedConnection"/>); a range with no free port is a failure naming it and the fix.
/// </summary>
public sealed class UdpAppEndpoint : AppEndpoint
{
    /// <summary>The one for <see cref="AppEndpoint.For"/> (default port range); a server dials through its own.</summary>
    public static readonly UdpAppEndpoint Instance = new();

    private readonly object _gate = new();
    private readonly HashSet<int> _held = [];
    private volatile UdpPortRange _range = UdpPortRange.Default;

    /// <summary>Where outgoing sockets are bound from; a change applies to the next association (those open keep their port).</summary>
    public UdpPortRange PortRange
    {
        get => _range;
        set => _range = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Ports of the range held by this server's open associations now.</summary>
    public int PortsInUse
    {
        get
        {
            lock (_gate)
            {
                return _held.Count;
            }
        }
    }

    public override async Task<IAppListener> ListenAsync(EndpointUri listen, AppListenOptions options, CancellationToken cancellationToken)
    {
        if (!IPAddress.TryParse(listen.Host, out var address))
        {
            try
            {
                address = (await Dns.GetHostAddressesAsync(listen.Host, cancellationToken).ConfigureAwait(false)).First();
            }
            catch (Exception ex) when (ex is SocketException or InvalidOperationException)
            {
                throw new QmTunnelException(ErrorIds.BindFailed, QmErrorKind.InvalidArgument, listen.ToString(),
                    $"{options.Subject} cannot listen on {listen}: the name '{listen.Host}' does not resolve. Use an IP address of this host.", ex);
            }
        }
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(new IPEndPoint(address, listen.Port));
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw ex.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? InUse(listen, options, "the port is in use by another program", ex)
                : BindFailed(listen, options, $"{ex.SocketErrorCode}: {ex.Message}", ex);
        }
        TryEnlargeBuffers(socket);
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        return new UdpAssociationListener(socket, new EndpointUri(EndpointScheme.Udp, bound.Address.ToString(), bound.Port), options.Backlog, receiveThread: !Diagnostics.SocketTuning.InlineCompletionsOn);
    }

    /// <summary>Asks for 4 MiB socket buffers (the kernel caps them at its maximum): bursts queue in the kernel, not on the floor.</summary>
    internal static void TryEnlargeBuffers(Socket socket)
    {
        try
        {
            socket.ReceiveBufferSize = Math.Max(socket.ReceiveBufferSize, 4 * 1024 * 1024);
            socket.SendBufferSize = Math.Max(socket.SendBufferSize, 4 * 1024 * 1024);
        }
        catch (SocketException)
        {
        }
    }

    public override async Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        IPAddress address;
        if (!IPAddress.TryParse(target.Host, out address!))
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(timeout);
            try
            {
                var addresses = await Dns.GetHostAddressesAsync(target.Host, deadline.Token).ConfigureAwait(false);
                address = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.First();
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or InvalidOperationException)
            {
                return (null, ex is InvalidOperationException ? $"the name '{target.Host}' has no address" : Failure(ex, timeout, cancellationToken));
            }
        }
        var (socket, port, failure) = BindFromRange(address.AddressFamily);
        if (socket is null)
        {
            return (null, failure);
        }
        try
        {
            socket.Connect(new IPEndPoint(address, target.Port));
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            Release(port);
            return (null, $"{ex.SocketErrorCode}: {ex.Message}");
        }
        TryEnlargeBuffers(socket);
        return (new UdpDialedConnection(socket, socket.RemoteEndPoint?.ToString() ?? target.HostPort, () => Release(port)), null);
    }

    /// <summary>
    /// A UDP socket bound to a free port of the range (starting at a random one, so ports are not predictable), or null
    /// and why: every port of the range is held by this server's associations or by other programs.
    /// </summary>
    private (Socket? Socket, int Port, string? Failure) BindFromRange(AddressFamily family)
    {
        var range = _range;
        var any = family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any;
        lock (_gate)
        {
            var start = Random.Shared.Next(range.Count);
            for (var i = 0; i < range.Count && _held.Count < range.Count; i++)
            {
                var port = range.First + ((start + i) % range.Count);
                if (_held.Contains(port))
                {
                    continue;
                }
                var socket = new Socket(family, SocketType.Dgram, ProtocolType.Udp);
                try
                {
                    socket.Bind(new IPEndPoint(any, port));
                    _held.Add(port);
                    return (socket, port, null);
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
                {
                    socket.Dispose();
                }
                catch (SocketException ex)
                {
                    socket.Dispose();
                    return (null, 0, $"cannot bind a UDP socket to port {port}: {ex.SocketErrorCode}: {ex.Message}");
                }
            }
            return (null, 0, $"no free port in the outgoing UDP port range {range} ({_held.Count} of its {range.Count} ports are held by this server's UDP associations, " +
                "the rest by other programs): widen it with Set-QmTunnelServerConfig -UdpPortRange, or lower the tunnels' MaxConnections");
        }
    }

    private void Release(int port)
    {
        lock (_gate)
        {
            _held.Remove(port);
        }
    }
}

/// <summary>
/// The last server's side of one association: a UDP socket connected to the target (each receive one datagram from
/// it, each send one datagram to it). An empty datagram from the target is skipped (a Udp stream carries 1 to 65,507
/// bytes per datagram). Dispose closes the socket and gives its port back to the range.
/// </summary>
internal sealed class UdpDialedConnection(Socket socket, string remote, Action release) : AppConnection
{
    private int _closed;

    public Socket Socket { get; } = socket;

    public override string Remote { get; } = remote;

    public override bool IsDatagram => true;

    /// <summary>
    /// Returns at once while datagrams are waiting (a busy association skips the wait); otherwise a zero-byte peek
    /// waits for one without taking it and without a buffer.
    /// </summary>
    public override ValueTask WaitForDataAsync(CancellationToken cancellationToken) =>
        Socket.Available > 0 ? ValueTask.CompletedTask : PeekAsync(cancellationToken);

    private async ValueTask PeekAsync(CancellationToken cancellationToken) =>
        await Socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.Peek, cancellationToken).ConfigureAwait(false);

    public override async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            var n = await Socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n > 0)
            {
                return n;
            }
        }
    }

    public override async ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        if (data.IsSingleSegment)
        {
            await Socket.SendAsync(data.First, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            return;
        }
        var length = (int)data.Length;
        var copy = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            data.CopyTo(copy);
            await Socket.SendAsync(copy.AsMemory(0, length), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    /// <summary>UDP has no half-close: nothing to do (the association ends as a whole).</summary>
    public override void ShutdownSend()
    {
    }

    public override void Abort() => Dispose();

    public override void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            Socket.Dispose();
            release();
        }
    }
}

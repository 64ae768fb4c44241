using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>How <see cref="FaultProxy.Cut"/> breaks the connections it carries.</summary>
public enum CutMode
{
    /// <summary>Both sockets of every connection are aborted with an RST: the client and the target see a reset.</summary>
    Reset,

    /// <summary>
    /// From now on bytes in either direction vanish: the proxy goes on reading both sides and discards what it reads,
    /// and sends nothing, no FIN, no RST, like a dead router. The proxy's kernel still acknowledges what it receives,
    /// so neither end's TCP sees loss (no retransmission timeout, and TCP keepalive probes are answered): only an
    /// application-level timeout (a ping) notices. For a cut the kernels see, use <see cref="NetNs.SetLinkDown"/>.
    /// </summary>
    BlackHole,
}

/// <summary>
/// A TCP proxy on 127.0.0.1 (port 0 by default, see <see cref="EndPoint"/>) that forwards every accepted connection to
/// one target and breaks them on request: <see cref="Cut"/> (reset or black hole), <see cref="Refuse"/> (new
/// connections reset at once), <see cref="Heal"/>, <see cref="CutForAsync"/>; it adds latency
/// (<see cref="FaultDirection.Delay"/>, order and bytes kept) and limits the rate (<see cref="FaultDirection.BytesPerSecond"/>,
/// a token bucket) per direction, settable at any time, and counts what it did.
/// FINs are passed on as FINs (half-close works through it) and a reset from one side as a reset to the other.
/// It does not emulate a connect timeout: the kernel completes the TCP handshake before the proxy accepts, so a refused
/// or black-holed new connection is one that connects and is then reset (for SYNs that vanish, use
/// <see cref="NetNs.DropNewInbound"/>). Delays and the rate follow the injected <see cref="TimeProvider"/>.
/// </summary>
public sealed partial class FaultProxy : IAsyncDisposable
{
    /// <summary>Bytes read per receive, and the most one queued chunk holds.</summary>
    internal const int ChunkSize = 256 * 1024;

    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _disposed = new();
    private readonly HashSet<FaultConnection> _connections = [];
    private readonly Task _accepting;
    private volatile bool _refusing;
    private long _accepted;
    private long _refused;
    private long _cuts;

    /// <param name="target">Where every connection goes.</param>
    /// <param name="listen">Where to listen; 127.0.0.1 port 0 when null.</param>
    /// <param name="time">The clock of delays, rates and <see cref="CutForAsync"/>; the system clock when null.</param>
    public FaultProxy(IPEndPoint target, IPEndPoint? listen = null, TimeProvider? time = null)
    {
        Target = target;
        Time = time ?? TimeProvider.System;
        ToTarget = new FaultDirection(Time);
        ToClient = new FaultDirection(Time);
        _listener.Bind(listen ?? new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1024);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accepting = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Where the proxy listens (the bound port when it was given 0).</summary>
    public IPEndPoint EndPoint { get; }

    public IPEndPoint Target { get; }

    internal TimeProvider Time { get; }

    /// <summary>Client → target: its delay, its rate, and the bytes forwarded and discarded that way.</summary>
    public FaultDirection ToTarget { get; }

    /// <summary>Target → client: its delay, its rate, and the bytes forwarded and discarded that way.</summary>
    public FaultDirection ToClient { get; }

    /// <summary>The one-way latency added in both directions (sets both; reads <see cref="ToTarget"/>'s).</summary>
    public TimeSpan Delay
    {
        get => ToTarget.Delay;
        set
        {
            ToTarget.Delay = value;
            ToClient.Delay = value;
        }
    }

    /// <summary>Bytes per second in each direction, 0 = unlimited (sets both; reads <see cref="ToTarget"/>'s).</summary>
    public long Throttle
    {
        get => ToTarget.BytesPerSecond;
        set
        {
            ToTarget.BytesPerSecond = value;
            ToClient.BytesPerSecond = value;
        }
    }

    /// <summary>Connections accepted since the start, refused ones included.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Connections reset at once because <see cref="Refuse"/> was on.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Calls of <see cref="Cut"/> (including those of <see cref="CutForAsync"/>).</summary>
    public long Cuts => Interlocked.Read(ref _cuts);

    /// <summary>Connections open now (black-holed ones included, until they are reset or the proxy is disposed).</summary>
    public int Current
    {
        get
        {
            lock (_connections)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>True while new connections are reset at once.</summary>
    public bool Refusing => _refusing;

    /// <summary>
    /// Breaks every current connection (see <see cref="CutMode"/>). New connections are not affected: they are
    /// forwarded unless <see cref="Refuse"/> is on. <see cref="CutMode.Reset"/> also ends black-holed connections.
    /// </summary>
    public void Cut(CutMode mode)
    {
        Interlocked.Increment(ref _cuts);
        foreach (var connection in Snapshot())
        {
            if (mode == CutMode.Reset)
            {
                connection.Abort();
            }
            else
            {
                connection.BlackHole();
            }
        }
    }

    /// <summary>While on, every new connection is reset as soon as it is accepted (the far server unreachable).</summary>
    public void Refuse(bool on) => _refusing = on;

    /// <summary>
    /// New connections are forwarded again. Black-holed connections stay dead (their streams lost bytes; they cannot
    /// carry on): they go on discarding until their ends close them, <see cref="Cut"/> with <see cref="CutMode.Reset"/>,
    /// or disposal.
    /// </summary>
    public void Heal() => _refusing = false;

    /// <summary>
    /// An outage: refuses new connections, cuts the current ones with <paramref name="mode"/>, waits
    /// <paramref name="outage"/> on the proxy's clock (real time unless a <see cref="TimeProvider"/> was given, so an
    /// end-to-end outage test takes that long), then heals.
    /// </summary>
    public async Task CutForAsync(TimeSpan outage, CutMode mode, CancellationToken cancellationToken = default)
    {
        Refuse(true);
        Cut(mode);
        try
        {
            await Task.Delay(outage, Time, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Heal();
        }
    }

    private FaultConnection[] Snapshot()
    {
        lock (_connections)
        {
            return [.. _connections];
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_disposed.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_disposed.IsCancellationRequested)
                {
                    return;
                }
                continue; // a connection that died in the backlog
            }
            Interlocked.Increment(ref _accepted);
            if (_refusing)
            {
                Interlocked.Increment(ref _refused);
                ResetAndClose(client);
                continue;
            }
            client.NoDelay = true;
            var connection = new FaultConnection(this, client);
            lock (_connections)
            {
                if (_disposed.IsCancellationRequested)
                {
                    connection.Abort();
                    return;
                }
                _connections.Add(connection);
            }
            _ = connection.RunAsync(_disposed.Token);
        }
    }

    internal void Forget(FaultConnection connection)
    {
        lock (_connections)
        {
            _connections.Remove(connection);
        }
    }

    /// <summary>Closes a socket with an RST (linger on, timeout 0), whatever state it is in.</summary>
    internal static void ResetAndClose(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    /// <summary>Stops accepting and resets every connection.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_connections)
        {
            if (_disposed.IsCancellationRequested)
            {
                return;
            }
            _disposed.Cancel();
        }
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
        var connections = Snapshot();
        foreach (var connection in connections)
        {
            connection.Abort();
        }
        await Task.WhenAll(connections.Select(c => c.Completion)).ConfigureAwait(false);
        _disposed.Dispose();
    }
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// A UDP server on loopback: answers each datagram with <see cref="Answer"/> (default: the same bytes) to its sender,
/// and remembers every sender it saw (address and port).
/// </summary>
public sealed class UdpEchoServer : IAsyncDisposable
{
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _received;

    public UdpEchoServer(string address = "127.0.0.1")
    {
        _socket.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
        _socket.ReceiveBufferSize = 4 * 1024 * 1024;
        _loop = Task.Run(LoopAsync);
    }

    public int Port => ((IPEndPoint)_socket.LocalEndPoint!).Port;
    public string Uri => $"udp://{((IPEndPoint)_socket.LocalEndPoint!).Address}:{Port}";
    public Socket Socket => _socket;
    public long Received => Interlocked.Read(ref _received);

    /// <summary>What to send back for a datagram from a sender (null: nothing).</summary>
    public Func<byte[], IPEndPoint, byte[]?> Answer { get; set; } = (data, _) => data;

    /// <summary>Every sender seen, in the order first seen.</summary>
    public ConcurrentDictionary<IPEndPoint, int> Senders { get; } = new();

    private async Task LoopAsync()
    {
        var buffer = new byte[65_536];
        try
        {
            while (true)
            {
                var result = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
                var from = (IPEndPoint)result.RemoteEndPoint;
                Interlocked.Increment(ref _received);
                Senders.TryAdd(from, 0);
                if (Answer(buffer.AsSpan(0, result.ReceivedBytes).ToArray(), from) is { } answer)
                {
                    await _socket.SendToAsync(answer, SocketFlags.None, from);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _socket.Dispose();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}

/// <summary>A UDP client socket "connected" to a tunnel's listener, with bounded waits for answers.</summary>
public sealed class UdpClientSocket : IDisposable
{
    public UdpClientSocket(string udpUri)
    {
        var uri = new Uri(udpUri);
        Socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        Socket.ReceiveBufferSize = 4 * 1024 * 1024;
        Socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Socket.Connect(new IPEndPoint(IPAddress.Parse(uri.Host), uri.Port));
    }

    public Socket Socket { get; }

    public IPEndPoint Local => (IPEndPoint)Socket.LocalEndPoint!;

    public void Send(ReadOnlySpan<byte> datagram) => Socket.Send(datagram);

    /// <summary>The next datagram, or null when none came within <paramref name="timeoutMs"/> (real time: a wait for an event).</summary>
    public async Task<byte[]?> ReceiveAsync(int timeoutMs = 10_000)
    {
        var buffer = new byte[65_536];
        using var deadline = new CancellationTokenSource(timeoutMs);
        try
        {
            var n = await Socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
            return buffer[..n];
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Sends <paramref name="datagram"/> and waits for one answer (TimeoutException when none comes).</summary>
    public async Task<byte[]> RoundTripAsync(byte[] datagram, int timeoutMs = 10_000)
    {
        Send(datagram);
        return await ReceiveAsync(timeoutMs) ?? throw new TimeoutException($"no answer to a {datagram.Length}-byte datagram within {timeoutMs} ms");
    }

    public void Dispose() => Socket.Dispose();
}

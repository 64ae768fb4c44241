using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// A listener on 127.0.0.1 port 0 that hands each accepted socket to the test (<see cref="NextAsync"/>), so a test can
/// watch what the far end of a connection sees. It reads and writes nothing by itself.
/// </summary>
internal sealed class AcceptingServer : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly Channel<Socket> _accepted = Channel.CreateUnbounded<Socket>();
    private readonly List<Socket> _all = [];
    private readonly Task _loop;

    public AcceptingServer()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(128);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _loop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var socket = await _listener.AcceptAsync();
                    lock (_all)
                    {
                        _all.Add(socket);
                    }
                    _accepted.Writer.TryWrite(socket);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        });
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>The next accepted connection (fails the test after 10 s).</summary>
    public async Task<Socket> NextAsync() => await _accepted.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _loop;
        lock (_all)
        {
            _all.ForEach(s => s.Dispose());
        }
    }
}

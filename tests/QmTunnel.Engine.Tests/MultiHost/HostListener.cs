using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// A TCP server of one host (its listening socket made inside the host's namespace), running
/// <paramref name="handler"/> for each connection it accepts: the application server at the far end of a tunnel.
/// Handler failures are kept in <see cref="Errors"/> (a test asserts it empty); the connection is closed after it.
/// </summary>
internal sealed class HostListener : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Func<Socket, Task> _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly List<Task> _connections = [];
    private readonly List<Exception> _errors = [];

    private HostListener(Socket listener, Func<Socket, Task> handler)
    {
        _listener = listener;
        _handler = handler;
        _accepting = AcceptAsync();
    }

    /// <summary>Listens in <paramref name="host"/> on <paramref name="address"/> (loopback by default), a free port.</summary>
    public static HostListener Start(ChainHost host, Func<Socket, Task> handler, IPAddress? address = null)
    {
        var socket = host.Ns.Inside(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(address ?? IPAddress.Loopback, 0));
            s.Listen(512);
            return s;
        });
        return new HostListener(socket, handler);
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>The target as the last server of a chain names it: <c>tcp://address:port</c>.</summary>
    public string Uri => $"tcp://{EndPoint.Address}:{EndPoint.Port}";

    public int Accepted { get; private set; }

    public IReadOnlyList<Exception> Errors
    {
        get
        {
            lock (_errors)
            {
                return [.. _errors];
            }
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            client.NoDelay = true;
            lock (_connections)
            {
                Accepted++;
                _connections.Add(Serve(client));
            }
        }
    }

    private async Task Serve(Socket client)
    {
        using var cut = _stop.Token.Register(client.Dispose); // a handler still waiting when the listener stops ends
        try
        {
            await _handler(client);
        }
        catch (Exception ex) when (!_stop.IsCancellationRequested)
        {
            lock (_errors)
            {
                _errors.Add(ex);
            }
        }
        catch (Exception)
        {
            // stopping: connections are cut on purpose
        }
        finally
        {
            client.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accepting;
        Task[] connections;
        lock (_connections)
        {
            connections = [.. _connections];
        }
        await Task.WhenAll(connections).WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }
}

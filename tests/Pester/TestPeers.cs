// More peers for the Pester tests, compiled together with TestTools.cs (Add-Type -Path TestTools.cs, TestPeers.cs):
//   HeldConnection  one connection held open across commands: echo checks while it lives, and whether it ended
//   SilentServer    a TCP listener that accepts and never says a word (a server that does not answer)
//   CutProxy        a TCP relay to one port that can be cut (every connection reset, new ones refused) and healed
#nullable enable
using System;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace QmTunnel.PesterTools
{
    /// <summary>One connection to an echo service held open across commands.</summary>
    public sealed class HeldConnection : IDisposable
    {
        private readonly Socket _socket;

        private HeldConnection(Socket socket) { _socket = socket; }

        public static HeldConnection Open(string address, int timeoutSeconds)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            socket.ConnectAsync(NetTools.ParseEndpoint(address), timeout.Token).AsTask().GetAwaiter().GetResult();
            return new HeldConnection(socket);
        }

        /// <summary>Sends <paramref name="bytes"/> random bytes and reads them back: true when they all came back intact.</summary>
        public bool Echoes(int bytes, int timeoutSeconds)
        {
            var payload = new byte[bytes];
            RandomNumberGenerator.Fill(payload);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            try
            {
                EchoServer.SendAllAsync(_socket, payload, timeout.Token).GetAwaiter().GetResult();
                var back = new byte[bytes];
                var read = 0;
                while (read < bytes)
                {
                    var n = _socket.ReceiveAsync(back.AsMemory(read), SocketFlags.None, timeout.Token).AsTask().GetAwaiter().GetResult();
                    if (n == 0)
                    {
                        return false;
                    }
                    read += n;
                }
                return back.AsSpan().SequenceEqual(payload);
            }
            catch (Exception ex) when (ex is SocketException || ex is OperationCanceledException)
            {
                return false;
            }
        }

        /// <summary>Reads until the far end closes or resets the connection: true when it did within the time.</summary>
        public bool Ended(int timeoutSeconds)
        {
            var buffer = new byte[64 * 1024];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            try
            {
                while (_socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, timeout.Token).AsTask().GetAwaiter().GetResult() > 0)
                {
                }
                return true;
            }
            catch (SocketException)
            {
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public void Dispose() => _socket.Dispose();
    }

    /// <summary>A TCP listener on 127.0.0.1 that accepts connections and never sends anything: a server that does not answer.</summary>
    public sealed class SilentServer : IDisposable
    {
        private readonly Socket _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly ConcurrentBag<Socket> _held = new ConcurrentBag<Socket>();
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();

        public SilentServer()
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(16);
            _ = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    try { _held.Add(await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false)); }
                    catch { return; }
                }
            });
        }

        public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
            foreach (var s in _held) { s.Dispose(); }
        }
    }

    /// <summary>
    /// A TCP relay on 127.0.0.1 (port 0) to one local port. Cut() resets every connection it carries and refuses new
    /// ones (accepted, then reset) until Heal(): a link through it loses its connection and cannot get a new one.
    /// </summary>
    public sealed class CutProxy : IDisposable
    {
        private readonly Socket _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly ConcurrentDictionary<Socket, bool> _open = new ConcurrentDictionary<Socket, bool>();
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private volatile bool _refusing;

        public CutProxy(int targetPort)
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(64);
            _ = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    Socket client;
                    try { client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
                    catch { return; }
                    if (_refusing) { Abort(client); continue; }
                    _ = RelayAsync(client, targetPort);
                }
            });
        }

        public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

        /// <summary>Resets every connection and refuses new ones until <see cref="Heal"/>.</summary>
        public void Cut()
        {
            _refusing = true;
            foreach (var socket in _open.Keys) { Abort(socket); }
        }

        public void Heal() => _refusing = false;

        private async Task RelayAsync(Socket client, int targetPort)
        {
            var target = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.NoDelay = true;
            _open[client] = true;
            _open[target] = true;
            try
            {
                await target.ConnectAsync(new IPEndPoint(IPAddress.Loopback, targetPort)).ConfigureAwait(false);
                await Task.WhenAny(PumpAsync(client, target), PumpAsync(target, client)).ConfigureAwait(false);
            }
            catch { }
            finally
            {
                Abort(client);
                Abort(target);
                _open.TryRemove(client, out _);
                _open.TryRemove(target, out _);
            }
        }

        private static async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                while (true)
                {
                    var n = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                    if (n == 0) { to.Shutdown(SocketShutdown.Send); return; }
                    for (var sent = 0; sent < n;) { sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None).ConfigureAwait(false); }
                }
            }
            catch { }
        }

        private static void Abort(Socket socket)
        {
            try { socket.LingerState = new LingerOption(true, 0); } catch { }
            socket.Dispose();
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
            foreach (var socket in _open.Keys) { Abort(socket); }
        }
    }
}

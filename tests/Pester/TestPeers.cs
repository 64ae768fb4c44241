// More peers for the Pester tests, compiled together with TestTools.cs (Add-Type -Path TestTools.cs, TestPeers.cs):
//   HeldConnection  one connection held open across commands: echo checks while it lives, and whether it ended
//   SilentServer    a TCP listener that accepts and never says a word (a server that does not answer)
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
}

// Helpers for the end-to-end Pester tests (Tunnel.Tests.ps1, Errors.Tests.ps1), loaded with Add-Type -Path.
// Plain sockets only (no qmTunnel types), so they test the built module from the outside, like any TCP client.
//   EchoServer      a TCP echo server on 127.0.0.1, port 0 (or, with echoAfterEnd, one that echoes only after the
//                   client's FIN: proof that half-close is carried end to end)
//   EchoClient      sends N random bytes while receiving the echo, hashing both sides as they stream (SHA-256),
//                   half-closes, and waits for the echo's end; RunMany runs K of them at once; Probe tells how a
//                   connection ends (echo, clean end, reset, timeout)
//   EchoBatch       K such clients opened one after another, held open together (each has had its first echo
//                   back), then all released to transfer at once
//   NetTools        a free TCP port
//   (TestPeers.cs, compiled with this file: HeldConnection, SilentServer)
#nullable enable
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace QmTunnel.PesterTools
{
    /// <summary>A TCP echo server on 127.0.0.1 with a 64 KiB receive-then-send loop per connection.</summary>
    public sealed class EchoServer : IDisposable
    {
        private const int BufferSize = 64 * 1024;
        private readonly Socket _listener;
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private readonly ConcurrentDictionary<Socket, bool> _open = new ConcurrentDictionary<Socket, bool>();
        private readonly bool _echoAfterEnd;
        private readonly long _maxHeld;
        private long _accepted;
        private long _echoed;

        /// <summary>Echoes as it receives.</summary>
        public EchoServer() : this(false)
        {
        }

        /// <summary>
        /// With <paramref name="echoAfterEnd"/>, holds what it receives (up to 64 MiB) until the client shuts down its
        /// sending side, and only then sends it all back and closes: every echoed byte travels after the client's FIN.
        /// </summary>
        public EchoServer(bool echoAfterEnd)
        {
            _echoAfterEnd = echoAfterEnd;
            _maxHeld = 64L * 1024 * 1024;
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(1024);
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            Task.Run(AcceptLoopAsync);
        }

        public int Port { get; }

        /// <summary>tcp://127.0.0.1:PORT, as a tunnel's -Target.</summary>
        public string Uri => "tcp://127.0.0.1:" + Port;

        public long ConnectionsAccepted => Interlocked.Read(ref _accepted);

        public long BytesEchoed => Interlocked.Read(ref _echoed);

        public int OpenConnections => _open.Count;

        private async Task AcceptLoopAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                catch (SocketException)
                {
                    continue;
                }
                Interlocked.Increment(ref _accepted);
                _open[socket] = true;
                _ = Task.Run(() => ServeAsync(socket));
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            var token = _stop.Token;
            try
            {
                socket.NoDelay = true;
                var buffer = new byte[BufferSize];
                if (_echoAfterEnd)
                {
                    var held = new MemoryStream();
                    int n;
                    while ((n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, token).ConfigureAwait(false)) > 0)
                    {
                        if (held.Length + n > _maxHeld)
                        {
                            throw new InvalidOperationException("echoAfterEnd holds at most 64 MiB.");
                        }
                        held.Write(buffer, 0, n);
                    }
                    await SendAllAsync(socket, held.GetBuffer().AsMemory(0, (int)held.Length), token).ConfigureAwait(false);
                    Interlocked.Add(ref _echoed, held.Length);
                }
                else
                {
                    int n;
                    while ((n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, token).ConfigureAwait(false)) > 0)
                    {
                        await SendAllAsync(socket, buffer.AsMemory(0, n), token).ConfigureAwait(false);
                        Interlocked.Add(ref _echoed, n);
                    }
                }
                socket.Shutdown(SocketShutdown.Send);
                // Let the FIN go out before the close; the client closes its end once it has read ours.
                await Task.Delay(10).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException || ex is OperationCanceledException || ex is ObjectDisposedException || ex is InvalidOperationException)
            {
                // The client went away, or the server is stopping.
            }
            finally
            {
                _open.TryRemove(socket, out _);
                socket.Dispose();
            }
        }

        internal static async Task SendAllAsync(Socket socket, ReadOnlyMemory<byte> data, CancellationToken token)
        {
            while (data.Length > 0)
            {
                var sent = await socket.SendAsync(data, SocketFlags.None, token).ConfigureAwait(false);
                data = data.Slice(sent);
            }
        }

        public void Dispose()
        {
            if (_stop.IsCancellationRequested)
            {
                return;
            }
            _stop.Cancel();
            _listener.Dispose();
            foreach (var socket in _open.Keys.ToList())
            {
                try
                {
                    socket.Dispose();
                }
                catch (ObjectDisposedException)
                {
                }
            }
        }
    }

    /// <summary>What one echo client saw: bytes and SHA-256 of what it sent and of what came back.</summary>
    public sealed class TransferResult
    {
        public int Index { get; set; }
        public long BytesSent { get; set; }
        public long BytesReceived { get; set; }
        public string SentSha256 { get; set; } = "";
        public string ReceivedSha256 { get; set; } = "";
        /// <summary>The echo ended cleanly (FIN) after the client's own FIN.</summary>
        public bool ReceivedEnd { get; set; }
        public string? Error { get; set; }
        public TimeSpan Elapsed { get; set; }

        /// <summary>Everything sent came back, byte for byte, and the connection ended cleanly.</summary>
        public bool Intact => Error == null && ReceivedEnd && BytesSent == BytesReceived && SentSha256 == ReceivedSha256;

        public override string ToString() =>
            "#" + Index + ": sent " + BytesSent + " (" + Short(SentSha256) + "), received " + BytesReceived + " (" + Short(ReceivedSha256) +
            "), end " + ReceivedEnd + (Error == null ? "" : ", error: " + Error) + ", " + Elapsed.TotalMilliseconds.ToString("0") + " ms";

        private static string Short(string hash) => hash.Length > 12 ? hash.Substring(0, 12) : hash;
    }

    /// <summary>Clients for the echo server, usually through a tunnel's listen address.</summary>
    public static class EchoClient
    {
        private const int ChunkSize = 64 * 1024;

        /// <summary>
        /// Connects to <paramref name="address"/> (tcp://host:port or host:port), sends <paramref name="bytes"/> random
        /// bytes while receiving the echo, shuts down its sending side, and reads until the echo ends. Both directions
        /// are hashed as they stream; nothing is held in memory beyond one 64 KiB buffer each way.
        /// </summary>
        public static TransferResult Run(string address, long bytes, int timeoutSeconds) =>
            RunAsync(address, bytes, timeoutSeconds, 0).GetAwaiter().GetResult();

        /// <summary>
        /// <paramref name="count"/> clients at once, each with its own random data of <paramref name="bytesEach"/> plus
        /// up to <paramref name="extraBytes"/> more (so the sizes differ). Results in client order.
        /// </summary>
        public static TransferResult[] RunMany(string address, int count, long bytesEach, int extraBytes, int timeoutSeconds)
        {
            var sizes = new Random();
            var tasks = new Task<TransferResult>[count];
            for (var i = 0; i < count; i++)
            {
                var size = bytesEach + (extraBytes > 0 ? sizes.Next(extraBytes + 1) : 0);
                var index = i;
                tasks[i] = Task.Run(() => RunAsync(address, size, timeoutSeconds, index));
            }
            return Task.WhenAll(tasks).GetAwaiter().GetResult();
        }

        public static Task<TransferResult> RunAsync(string address, long bytes, int timeoutSeconds, int index) =>
            RunAsync(address, bytes, timeoutSeconds, index, null, null);

        /// <summary>As <see cref="Run"/>, with text that compresses well (repeated words and numbers) instead of random bytes.</summary>
        public static TransferResult RunCompressible(string address, long bytes, int timeoutSeconds) =>
            RunAsync(address, bytes, timeoutSeconds, 0, null, null, compressible: true).GetAwaiter().GetResult();

        /// <summary>
        /// As <see cref="RunAsync(string, long, int, int)"/>; with a <paramref name="gate"/>, sends its first chunk only,
        /// then waits for the gate before the rest; <paramref name="firstEcho"/> completes when the first echoed bytes
        /// arrive (the connection is then open end to end).
        /// </summary>
        internal static async Task<TransferResult> RunAsync(string address, long bytes, int timeoutSeconds, int index, Task? gate, TaskCompletionSource<bool>? firstEcho,
            bool compressible = false)
        {
            var result = new TransferResult { Index = index };
            var clock = Stopwatch.StartNew();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.NoDelay = true;
                var endpoint = NetTools.ParseEndpoint(address);
                await socket.ConnectAsync(endpoint, timeout.Token).ConfigureAwait(false);
                var receiving = ReceiveAsync(socket, result, firstEcho, timeout.Token);
                var sending = SendAsync(socket, bytes, result, gate, compressible, timeout.Token);
                // A failed side must not leave the other one waiting until the timeout.
                var first = await Task.WhenAny(receiving, sending).ConfigureAwait(false);
                if (first.IsFaulted)
                {
                    socket.Dispose();
                }
                await Task.WhenAll(receiving, sending).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException || ex is OperationCanceledException || ex is ObjectDisposedException || ex is IOException)
            {
                result.Error = timeout.IsCancellationRequested
                    ? "timed out after " + timeoutSeconds + " s"
                    : ex is SocketException se ? se.SocketErrorCode + ": " + se.Message : ex.GetType().Name + ": " + ex.Message;
            }
            result.Elapsed = clock.Elapsed;
            firstEcho?.TrySetResult(false);
            return result;
        }

        private static async Task SendAsync(Socket socket, long bytes, TransferResult result, Task? gate, bool compressible, CancellationToken token)
        {
            await Task.Yield();
            var random = new Random();
            var buffer = new byte[ChunkSize];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var left = bytes;
            while (left > 0)
            {
                var n = (int)Math.Min(left, buffer.Length);
                if (compressible)
                {
                    var line = System.Text.Encoding.ASCII.GetBytes($"line {result.BytesSent / 64:D8} of the compressible test text, {random.Next(100):D2}\n");
                    for (var i = 0; i < n; i++)
                    {
                        buffer[i] = line[i % line.Length];
                    }
                }
                else
                {
                    random.NextBytes(buffer.AsSpan(0, n));
                }
                hash.AppendData(buffer, 0, n);
                await EchoServer.SendAllAsync(socket, buffer.AsMemory(0, n), token).ConfigureAwait(false);
                left -= n;
                result.BytesSent += n;
                if (gate != null)
                {
                    await gate.WaitAsync(token).ConfigureAwait(false);
                    gate = null;
                }
            }
            if (gate != null)
            {
                // All of it fitted in the first chunk: still hold the connection open until the gate opens.
                await gate.WaitAsync(token).ConfigureAwait(false);
            }
            result.SentSha256 = Convert.ToHexString(hash.GetHashAndReset());
            socket.Shutdown(SocketShutdown.Send);
        }

        private static async Task ReceiveAsync(Socket socket, TransferResult result, TaskCompletionSource<bool>? firstEcho, CancellationToken token)
        {
            await Task.Yield();
            var buffer = new byte[ChunkSize];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            int n;
            while ((n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, token).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, n);
                result.BytesReceived += n;
                firstEcho?.TrySetResult(true);
            }
            result.ReceivedEnd = true;
            result.ReceivedSha256 = Convert.ToHexString(hash.GetHashAndReset());
        }

        /// <summary>
        /// Connects, sends <paramref name="payloadBytes"/> bytes (0: none), and reads until the connection ends. Returns
        /// how it ended: "Reset" (RST), "End" (clean FIN) or "Timeout" (still open), each of the last two with the count
        /// of bytes received ("End 0", "Timeout 1000"), or "ConnectFailed: ...".
        /// </summary>
        public static string Probe(string address, int payloadBytes, int timeoutSeconds)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.ConnectAsync(NetTools.ParseEndpoint(address), timeout.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                // Accepted, then reset before the connect completed here (loopback is that fast).
                return "Reset";
            }
            catch (Exception ex) when (ex is SocketException || ex is OperationCanceledException)
            {
                return "ConnectFailed: " + (ex is SocketException se ? se.SocketErrorCode.ToString() : "timeout");
            }
            long received = 0;
            try
            {
                if (payloadBytes > 0)
                {
                    var payload = new byte[payloadBytes];
                    RandomNumberGenerator.Fill(payload);
                    EchoServer.SendAllAsync(socket, payload, timeout.Token).GetAwaiter().GetResult();
                }
                var buffer = new byte[ChunkSize];
                int n;
                while ((n = socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, timeout.Token).AsTask().GetAwaiter().GetResult()) > 0)
                {
                    received += n;
                }
                return "End " + received;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset || ex.SocketErrorCode == SocketError.ConnectionAborted)
            {
                return "Reset";
            }
            catch (SocketException ex)
            {
                return "SocketError: " + ex.SocketErrorCode;
            }
            catch (OperationCanceledException)
            {
                return "Timeout " + received;
            }
        }
    }

    /// <summary>
    /// Echo clients opened one after another, each waiting for its first echo before the next connects, then held
    /// open together until <see cref="Finish"/> lets them all send the rest at once. Between the two, exactly
    /// <see cref="Count"/> connections are open end to end.
    /// </summary>
    public sealed class EchoBatch
    {
        private readonly TaskCompletionSource<bool> _go = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task<TransferResult>[] _clients;

        private EchoBatch(int count)
        {
            _clients = new Task<TransferResult>[count];
        }

        public int Count => _clients.Length;

        /// <summary>Clients whose connection ended before <see cref="Finish"/> (an error: the echo never ends on its own).</summary>
        public int Ended => _clients.Count(c => c != null && c.IsCompleted);

        public static EchoBatch Open(string address, int count, long bytesEach, int extraBytes, int timeoutSeconds)
        {
            var batch = new EchoBatch(count);
            var sizes = new Random();
            var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
            for (var i = 0; i < count; i++)
            {
                var size = Math.Max(1, bytesEach + (extraBytes > 0 ? sizes.Next(extraBytes + 1) : 0));
                var index = i;
                var firstEcho = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                batch._clients[i] = Task.Run(() => EchoClient.RunAsync(address, size, timeoutSeconds, index, batch._go.Task, firstEcho));
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !firstEcho.Task.Wait(left))
                {
                    batch._go.TrySetResult(true);
                    throw new TimeoutException("Echo client #" + index + " had no echo within " + timeoutSeconds + " s of the batch start.");
                }
            }
            return batch;
        }

        /// <summary>Lets every client send the rest, half-close and read to the end; results in client order.</summary>
        public TransferResult[] Finish()
        {
            _go.TrySetResult(true);
            return Task.WhenAll(_clients).GetAwaiter().GetResult();
        }
    }

    public static class NetTools
    {
        /// <summary>A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).</summary>
        public static int FreeTcpPort()
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        /// <summary>tcp://host:port, qmt+plain://host:port or host:port (IPv4 literal or localhost) as an endpoint.</summary>
        public static IPEndPoint ParseEndpoint(string address)
        {
            var text = address.Trim();
            var sep = text.IndexOf("://", StringComparison.Ordinal);
            if (sep >= 0)
            {
                text = text.Substring(sep + 3).TrimEnd('/');
            }
            var colon = text.LastIndexOf(':');
            if (colon <= 0)
            {
                throw new ArgumentException("'" + address + "' is not host:port.", nameof(address));
            }
            var host = text.Substring(0, colon).Trim('[', ']');
            var port = int.Parse(text.Substring(colon + 1), System.Globalization.CultureInfo.InvariantCulture);
            var ip = host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(host);
            return new IPEndPoint(ip, port);
        }
    }
}

#nullable disable
// Unix-socket helpers for UnixEndpoints.Tests.ps1 (compiled by Add-Type there): an echo server on a socket path and a
// client that sends random bytes to a socket path, half-closes and checks the echo by SHA-256.
using System;
using System.IO;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace QmTunnel.PesterTools
{
    /// <summary>Echoes each connection on a Unix socket until the client's end, then closes its side.</summary>
    public sealed class UnixEchoServer : IDisposable
    {
        private readonly Socket _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        public UnixEchoServer(string path)
        {
            Path = path;
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(64);
            _ = Task.Run(AcceptAsync);
        }

        public string Path { get; }

        public string Uri => "unix://" + Path;

        private int _accepted;

        public int ConnectionsAccepted => Volatile.Read(ref _accepted);

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptAsync();
                }
                catch (Exception ex) when (ex is SocketException || ex is ObjectDisposedException)
                {
                    return;
                }
                Interlocked.Increment(ref _accepted);
                _ = Task.Run(async () =>
                {
                    using (client)
                    {
                        var buffer = new byte[64 * 1024];
                        try
                        {
                            int n;
                            while ((n = await client.ReceiveAsync(buffer, SocketFlags.None)) > 0)
                            {
                                var sent = 0;
                                while (sent < n)
                                {
                                    sent += await client.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None);
                                }
                            }
                            client.Shutdown(SocketShutdown.Send);
                        }
                        catch (SocketException)
                        {
                        }
                    }
                });
            }
        }

        public void Dispose()
        {
            _listener.Dispose();
            try
            {
                File.Delete(Path);
            }
            catch (IOException)
            {
            }
        }
    }

    public static class UnixEchoClient
    {
        /// <summary>
        /// Sends <paramref name="bytes"/> random bytes to the socket at <paramref name="path"/> while reading, half-closes,
        /// reads to the end: null when the same bytes came back and the connection ended, else what went wrong.
        /// </summary>
        public static string Run(string path, int bytes, int timeoutSeconds)
        {
            var payload = RandomNumberGenerator.GetBytes(bytes);
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
            try
            {
                socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token).AsTask().GetAwaiter().GetResult();
                var reading = Task.Run(async () =>
                {
                    var received = new MemoryStream();
                    var buffer = new byte[64 * 1024];
                    int n;
                    while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
                    {
                        received.Write(buffer, 0, n);
                    }
                    return received.ToArray();
                });
                var sent = 0;
                while (sent < payload.Length)
                {
                    sent += socket.Send(payload, sent, Math.Min(64 * 1024, payload.Length - sent), SocketFlags.None);
                }
                socket.Shutdown(SocketShutdown.Send);
                var back = reading.GetAwaiter().GetResult();
                return back.Length == payload.Length && SHA256.HashData(back).AsSpan().SequenceEqual(SHA256.HashData(payload))
                    ? null
                    : "sent " + payload.Length + " bytes, received " + back.Length + (back.Length == payload.Length ? " (different bytes)" : "");
            }
            catch (Exception ex) when (ex is SocketException || ex is OperationCanceledException)
            {
                return ex.GetType().Name + ": " + ex.Message;
            }
        }
    }
}

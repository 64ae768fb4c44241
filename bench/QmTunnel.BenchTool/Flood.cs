using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text.Json;

namespace QmTunnel.BenchTool;

/// <summary>
/// A connection flood against a qmTunnel server: <c>--count</c> connections that never log in, spread round-robin
/// over the source addresses of <c>--sources</c> (each socket is bound to one before it connects), held until the
/// server closes them or the flood ends. What each sends first (<c>--mode</c>):
/// <list type="bullet">
/// <item>silent: nothing (the server waits for the first byte);</item>
/// <item>clienthello: one TLS ClientHello, then nothing (the server waits in the TLS handshake);</item>
/// <item>plain: the preamble and a Hello of a plain link, then nothing (the server waits for the login);</item>
/// <item>tls: a whole TLS handshake, then the preamble and a Hello inside it (the server waits for the login).</item>
/// </list>
/// With <c>--reopen 1</c> a connection the server closed is opened again at once, so the pressure holds. Prints
/// "READY attempted open closed failed" once every connection was tried, a "STATUS ..." line every second, and a
/// JSON summary at the end. It attacks; it does not judge (the caller reads the server's side).
/// </summary>
internal static class Flood
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);
    private static readonly byte[] Discard = new byte[16 * 1024];

    private sealed class Counters
    {
        public long Attempts, Open, MaxOpen, Closed, Failed, Tried;
        public string? FirstError;

        public void Opened()
        {
            var open = Interlocked.Increment(ref Open);
            long max;
            while (open > (max = Interlocked.Read(ref MaxOpen)) && Interlocked.CompareExchange(ref MaxOpen, open, max) != max)
            {
            }
        }

        public string Line(string tag) =>
            $"{tag} attempted={Interlocked.Read(ref Attempts)} open={Interlocked.Read(ref Open)} closed={Interlocked.Read(ref Closed)} failed={Interlocked.Read(ref Failed)} max_open={Interlocked.Read(ref MaxOpen)}";
    }

    public static async Task<int> RunAsync(Options options, CancellationToken cancel)
    {
        var endPoint = new IPEndPoint(IPAddress.Parse(options.Host), options.Int("port"));
        var count = Math.Max(1, options.Int("count"));
        var sources = ParseSources(options.String("sources", options.Host == "127.0.0.1" ? "127.0.0.1" : "any"));
        var mode = options.String("mode", "silent");
        var reopen = options.Int("reopen", 0) != 0;
        var hold = TimeSpan.FromSeconds(options.Int("hold-seconds", 600));
        var concurrency = Math.Max(1, options.Int("concurrency", 256));
        var first = mode switch
        {
            "silent" or "tls" => [],
            "clienthello" => await CaptureClientHelloAsync(),
            "plain" => [.. "QMTL"u8, .. HelloFrame()],
            _ => throw new ArgumentException($"--mode must be silent, clienthello, plain or tls, got '{mode}'"),
        };
        var counters = new Counters();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        stop.CancelAfter(hold);
        var connectGate = new SemaphoreSlim(concurrency);
        var clock = Stopwatch.StartNew();
        var tasks = new Task[count];
        for (var i = 0; i < count; i++)
        {
            var source = sources[i % sources.Length];
            tasks[i] = Task.Run(() => HoldOneAsync(endPoint, source, mode, first, reopen, connectGate, counters, stop.Token), CancellationToken.None);
        }
        var reporter = Task.Run(async () =>
        {
            var ready = false;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(ready ? 1000 : 50, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                if (!ready && Interlocked.Read(ref counters.Tried) >= count)
                {
                    ready = true;
                    Console.WriteLine($"READY {counters.Line("").Trim()}");
                }
                else if (ready)
                {
                    Console.WriteLine(counters.Line("STATUS"));
                }
                Console.Out.Flush();
            }
        }, CancellationToken.None);
        await Task.WhenAll(tasks);
        await stop.CancelAsync();
        await reporter;
        var summary = new FloodResult("flood", mode, count, sources.Length, Interlocked.Read(ref counters.Attempts), Interlocked.Read(ref counters.MaxOpen),
            Interlocked.Read(ref counters.Closed), Interlocked.Read(ref counters.Failed), Math.Round(clock.Elapsed.TotalSeconds, 1), counters.FirstError);
        Console.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        Console.Out.Flush();
        return 0;
    }

    private static async Task HoldOneAsync(IPEndPoint endPoint, IPAddress? source, string mode, byte[] first, bool reopen, SemaphoreSlim connectGate,
        Counters counters, CancellationToken stop)
    {
        var tried = false;
        while (!stop.IsCancellationRequested)
        {
            var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            Stream? tls = null;
            var open = false;
            try
            {
                await connectGate.WaitAsync(stop);
                try
                {
                    Interlocked.Increment(ref counters.Attempts);
                    if (source is not null)
                    {
                        socket.Bind(new IPEndPoint(source, 0));
                    }
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                    timeout.CancelAfter(ConnectTimeout);
                    await socket.ConnectAsync(endPoint, timeout.Token);
                    if (mode == "tls")
                    {
                        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false, (_, _, _, _) => true);
                        tls = ssl;
                        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" }, timeout.Token);
                        await ssl.WriteAsync((byte[])[.. "QMTL"u8, .. HelloFrame()], timeout.Token);
                        await ssl.FlushAsync(timeout.Token);
                    }
                    else if (first.Length > 0)
                    {
                        await socket.SendAsync(first, SocketFlags.None, timeout.Token);
                    }
                }
                finally
                {
                    connectGate.Release();
                    if (!tried)
                    {
                        tried = true;
                        Interlocked.Increment(ref counters.Tried);
                    }
                }
                open = true;
                counters.Opened();
                // Held until the server closes it: what it sends (a ServerHello, a Hello) is read and dropped.
                while (true)
                {
                    var n = tls is null
                        ? await socket.ReceiveAsync(Discard, SocketFlags.None, stop)
                        : await tls.ReadAsync(Discard, stop);
                    if (n == 0)
                    {
                        break;
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // the flood ends
            }
            catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
            {
                if (!open)
                {
                    Interlocked.Increment(ref counters.Failed);
                    Interlocked.CompareExchange(ref counters.FirstError, $"{ex.GetType().Name}: {ex.Message}", null);
                }
            }
            finally
            {
                if (open)
                {
                    Interlocked.Decrement(ref counters.Open);
                    if (!stop.IsCancellationRequested)
                    {
                        Interlocked.Increment(ref counters.Closed);
                    }
                }
                tls?.Dispose();
                socket.Dispose();
            }
            if (!reopen)
            {
                return;
            }
        }
    }

    /// <summary>"127.0.0.10-127.0.0.29", "127.0.0.5,127.0.0.6", or "any" (the system picks).</summary>
    private static IPAddress?[] ParseSources(string text)
    {
        if (text == "any")
        {
            return [null];
        }
        var list = new List<IPAddress?>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-', StringComparison.Ordinal);
            if (dash < 0)
            {
                list.Add(IPAddress.Parse(part));
                continue;
            }
            var from = IPAddress.Parse(part[..dash]).GetAddressBytes();
            var to = IPAddress.Parse(part[(dash + 1)..]).GetAddressBytes();
            if (from.Length != 4 || to.Length != 4)
            {
                throw new ArgumentException($"--sources: a range is IPv4 only, got '{part}'");
            }
            var start = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(from);
            var end = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(to);
            if (end < start || end - start > 65535)
            {
                throw new ArgumentException($"--sources: '{part}' is not a range of at most 65536 addresses");
            }
            for (var a = start; a <= end; a++)
            {
                var bytes = new byte[4];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, a);
                list.Add(new IPAddress(bytes));
            }
        }
        return list.Count > 0 ? [.. list] : throw new ArgumentException("--sources names no address");
    }

    /// <summary>
    /// A Hello frame (docs/protocol.md): header type 0x01, flags 0, stream 0, length; payload min/max version, server
    /// id, server name, max payload, initial window. It offers versions 1 to 255, so any server picks one and waits for
    /// the login. Written by hand: the tool does not reference the engine.
    /// </summary>
    private static byte[] HelloFrame()
    {
        var payload = new List<byte>();
        void U16(int v) => payload.AddRange([(byte)(v >> 8), (byte)v]);
        void U32(int v) => payload.AddRange([(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v]);
        void Str(string s)
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(s);
            U16(bytes.Length);
            payload.AddRange(bytes);
        }
        U16(1);
        U16(255);
        Str("flood");
        Str("flood");
        U32(65536);
        U32(65536);
        var frame = new byte[12 + payload.Count];
        frame[0] = 0x01;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(8), payload.Count);
        payload.CopyTo(frame, 12);
        return frame;
    }

    /// <summary>The first flight of a TLS client (its ClientHello), captured once from SslStream and sent as is.</summary>
    private static async Task<byte[]> CaptureClientHelloAsync()
    {
        var capture = new CaptureStream();
        using var ssl = new SslStream(capture, leaveInnerStreamOpen: true, (_, _, _, _) => true);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" });
        }
        catch (IOException)
        {
            // CaptureStream ends the handshake after the first flight.
        }
        return capture.Written.ToArray();
    }

    private sealed class CaptureStream : Stream
    {
        public MemoryStream Written { get; } = new();
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new IOException("captured");
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => throw new IOException("captured");
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => throw new IOException("captured");
        public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Written.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Written.Write(buffer, offset, count);
            return Task.CompletedTask;
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

internal sealed record FloodResult(string Test, string Mode, int Count, int Sources, long Attempts, long MaxOpen, long ClosedByServer, long Failed,
    double Seconds, string? FirstError);

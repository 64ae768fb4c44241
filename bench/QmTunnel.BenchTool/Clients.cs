using System.Globalization;
using System.Text;
using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace QmTunnel.BenchTool;

/// <summary>
/// The measuring clients. Latency loops are synchronous on one thread (least noise); idle and stream are async.
/// Results are printed as one JSON object on standard output; diagnostics go to standard error.
/// </summary>
internal static class Clients
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private static readonly TimeSpan IoTimeout = TimeSpan.FromSeconds(30);

    /// <summary>One connection, <c>--count</c> round trips of <c>--size</c> bytes after <c>--warmup</c> untimed ones.</summary>
    public static Task<int> PingPongAsync(Options options, CancellationToken cancel)
    {
        var endPoint = EndPointOf(options);
        var size = Math.Max(1, options.Int("size", 64));
        var count = Math.Max(1, options.Int("count"));
        var warmup = options.Int("warmup", 1000);
        var message = new byte[size];
        Random.Shared.NextBytes(message);
        var reply = new byte[size];
        var samples = new long[count];
        using var socket = Connect(endPoint);
        for (var i = 0; i < warmup + count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            var start = Stopwatch.GetTimestamp();
            SendAll(socket, message);
            ReceiveExactly(socket, reply);
            var end = Stopwatch.GetTimestamp();
            if (i >= warmup)
            {
                samples[i - warmup] = end - start;
            }
            if (i == 0 && !reply.AsSpan().SequenceEqual(message))
            {
                throw new InvalidDataException("the echo differs from what was sent");
            }
        }
        socket.Shutdown(SocketShutdown.Send);
        Print(LatencyResult.From("pingpong", samples, size));
        return Task.FromResult(0);
    }

    /// <summary>
    /// <c>--count</c> times: a new connection, 1 byte sent, 1 byte echoed; the time from before connect to the echo. With
    /// <c>--socks5-target host:port</c>, <c>--port</c> is a SOCKS5 proxy: each connection first greets it (no
    /// authentication) and CONNECTs to the target (a name as ATYP 3, an IPv4 address as ATYP 1), inside the timed span.
    /// </summary>
    public static Task<int> ConnectFirstByteAsync(Options options, CancellationToken cancel)
    {
        var socks = options.String("socks5-target", string.Empty) is { Length: > 0 } target ? Socks5Request(target) : null;
        var socksReply = new byte[10];
        var endPoint = EndPointOf(options);
        var count = Math.Max(1, options.Int("count"));
        var warmup = options.Int("warmup", 50);
        var one = new byte[] { 0x2a };
        var reply = new byte[1];
        var samples = new long[count];
        for (var i = 0; i < warmup + count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            var start = Stopwatch.GetTimestamp();
            using (var socket = Connect(endPoint))
            {
                if (socks is not null)
                {
                    // greeting and request sent together, both replies read: one round trip to the proxy, then the chain's
                    SendAll(socket, socks);
                    ReceiveExactly(socket, socksReply.AsSpan(0, 2));
                    ReceiveExactly(socket, socksReply);
                    if (socksReply[1] != 0)
                    {
                        throw new IOException($"the SOCKS5 proxy answered reply code {socksReply[1]}");
                    }
                }
                SendAll(socket, one);
                ReceiveExactly(socket, reply);
                var end = Stopwatch.GetTimestamp();
                if (i >= warmup)
                {
                    samples[i - warmup] = end - start;
                }
                socket.Shutdown(SocketShutdown.Send);
            }
        }
        Print(LatencyResult.From("connect-first-byte", samples, 1));
        return Task.FromResult(0);
    }

    /// <summary>
    /// Opens <c>--count</c> connections (each echoes 1 byte, so the whole path is up), prints "READY opened failed",
    /// holds them <c>--hold-seconds</c> or until standard input ends, closes them and prints "CLOSED".
    /// </summary>
    public static async Task<int> IdleAsync(Options options, CancellationToken cancel)
    {
        var endPoint = EndPointOf(options);
        var count = options.Int("count");
        var hold = TimeSpan.FromSeconds(options.Int("hold-seconds", 600));
        var concurrency = Math.Max(1, options.Int("concurrency", 64));
        var sockets = new Socket?[count];
        var failures = 0;
        string? firstError = null;
        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancel },
            async (i, ct) =>
            {
                var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    timeout.CancelAfter(IoTimeout);
                    await socket.ConnectAsync(endPoint, timeout.Token);
                    var buffer = new byte[] { (byte)i };
                    await socket.SendAsync(buffer, SocketFlags.None, timeout.Token);
                    if (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) != 1)
                    {
                        throw new IOException("closed before the echo");
                    }
                    sockets[i] = socket;
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException && !cancel.IsCancellationRequested)
                {
                    Interlocked.Increment(ref failures);
                    Interlocked.CompareExchange(ref firstError, $"{ex.GetType().Name}: {ex.Message}", null);
                    socket.Dispose();
                }
            });
        Console.WriteLine($"READY {count - failures} {failures}");
        Console.Out.Flush();
        Console.Error.WriteLine($"idle: {count - failures} of {count} connections open in {clock.Elapsed.TotalSeconds:0.0} s" +
            (firstError is null ? string.Empty : $"; first error: {firstError}"));
        try
        {
            await Task.Delay(hold, cancel);
        }
        catch (OperationCanceledException)
        {
            // Asked to close early: that is the normal end when the bench script drives it.
        }
        foreach (var socket in sockets)
        {
            socket?.Dispose();
        }
        Console.WriteLine("CLOSED");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>
    /// <c>--parallel</c> connections each sending <c>--chunk</c>-byte writes for <c>--seconds</c>; with --mode echo the
    /// echoed bytes are counted, with sink the bytes sent (each connection waits for the sink's end of file).
    /// </summary>
    public static async Task<int> StreamAsync(Options options, CancellationToken cancel)
    {
        var endPoint = EndPointOf(options);
        var duration = TimeSpan.FromSeconds(Math.Max(1, options.Int("seconds", 5)));
        var parallel = Math.Max(1, options.Int("parallel", 1));
        var chunk = Math.Max(1, options.Int("chunk", 128 * 1024));
        var echo = options.String("mode", "echo") switch
        {
            "echo" => true,
            "sink" => false,
            var other => throw new ArgumentException($"--mode must be echo or sink, got '{other}'"),
        };
        var text = options.String("data", "random") switch
        {
            "random" => false,
            "text" => true,
            var other => throw new ArgumentException($"--data must be random or text, got '{other}'"),
        };
        long total = 0;
        var clock = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, parallel).Select(async _ =>
        {
            using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(endPoint, cancel);
            var send = ArrayPool<byte>.Shared.Rent(chunk);
            var receive = ArrayPool<byte>.Shared.Rent(chunk);
            try
            {
                if (text)
                {
                    FillText(send.AsSpan(0, chunk));
                }
                else
                {
                    Random.Shared.NextBytes(send.AsSpan(0, chunk));
                }
                var reader = Task.Run(async () =>
                {
                    long got = 0;
                    int n;
                    while ((n = await socket.ReceiveAsync(receive.AsMemory(), SocketFlags.None, cancel)) > 0)
                    {
                        got += n;
                    }
                    return got;
                }, cancel);
                long sent = 0;
                while (clock.Elapsed < duration)
                {
                    sent += await socket.SendAsync(send.AsMemory(0, chunk), SocketFlags.None, cancel);
                }
                socket.Shutdown(SocketShutdown.Send);
                var received = await reader;
                Interlocked.Add(ref total, echo ? received : sent);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(send);
                ArrayPool<byte>.Shared.Return(receive);
            }
        }).ToArray();
        await Task.WhenAll(tasks);
        var seconds = clock.Elapsed.TotalSeconds;
        Print(new StreamResult("stream", parallel, echo ? "echo" : "sink", total, seconds, total * 8 / seconds));
        return 0;
    }

    /// <summary>
    /// Log-like lines (a time, a level, a request id, a path, a status, sizes and times drawn at random) that compress the
    /// way application text does: LZ4 about 4x, Zstandard more. The same buffer is sent over and over; each frame of a
    /// link is compressed alone, so the repetition across buffers does not help the ratio.
    /// </summary>
    private static void FillText(Span<byte> buffer)
    {
        var random = new Random(7);
        string[] levels = ["INFO ", "INFO ", "INFO ", "WARN ", "DEBUG"];
        string[] paths = ["/api/items", "/api/orders", "/api/users", "/static/app.js", "/health", "/api/search"];
        var written = 0;
        while (written < buffer.Length)
        {
            var line = string.Create(CultureInfo.InvariantCulture,
                $"2026-11-28T08:{random.Next(60):D2}:{random.Next(60):D2}.{random.Next(1000):D3}Z {levels[random.Next(levels.Length)]} request id={random.Next(1_000_000):D6} " +
                $"path={paths[random.Next(paths.Length)]}/{random.Next(10_000)} status={(random.Next(20) == 0 ? 404 : 200)} bytes={random.Next(100_000)} ms={random.Next(500)}\n");
            written += Encoding.ASCII.GetBytes(line.AsSpan(0, Math.Min(line.Length, buffer.Length - written)), buffer[written..]);
        }
    }

    /// <summary>A SOCKS5 greeting (method 0x00) followed by a CONNECT to <paramref name="target"/> (host:port).</summary>
    private static byte[] Socks5Request(string target)
    {
        var colon = target.LastIndexOf(':');
        var host = target[..colon];
        var port = int.Parse(target[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        byte[] address = IPAddress.TryParse(host, out var ip) && ip.AddressFamily == AddressFamily.InterNetwork
            ? [1, .. ip.GetAddressBytes()]
            : [3, (byte)host.Length, .. System.Text.Encoding.ASCII.GetBytes(host)];
        return [5, 1, 0, 5, 1, 0, .. address, (byte)(port >> 8), (byte)port];
    }

    private static IPEndPoint EndPointOf(Options options) => new(IPAddress.Parse(options.Host), options.Int("port"));

    private static Socket Connect(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveTimeout = (int)IoTimeout.TotalMilliseconds,
            SendTimeout = (int)IoTimeout.TotalMilliseconds,
        };
        try
        {
            socket.Connect(endPoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[socket.Send(data, SocketFlags.None)..];
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var n = socket.Receive(buffer, SocketFlags.None);
            if (n == 0)
            {
                throw new IOException("the connection closed before the echo arrived");
            }
            buffer = buffer[n..];
        }
    }

    private static void Print<T>(T result)
    {
        Console.WriteLine(JsonSerializer.Serialize(result, Json));
        Console.Out.Flush();
    }
}

internal sealed record LatencyResult(string Test, int Count, int Size, double MedianUs, double P99Us, double MeanUs, double MinUs, double MaxUs)
{
    public static LatencyResult From(string test, long[] ticks, int size)
    {
        var sorted = ticks.Select(t => t * 1_000_000.0 / Stopwatch.Frequency).Order().ToArray();
        var n = sorted.Length;
        var median = n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
        var p99 = sorted[Math.Clamp((int)Math.Ceiling(0.99 * n) - 1, 0, n - 1)];
        return new LatencyResult(test, n, size, Math.Round(median, 1), Math.Round(p99, 1), Math.Round(sorted.Average(), 1),
            Math.Round(sorted[0], 1), Math.Round(sorted[^1], 1));
    }
}

internal sealed record StreamResult(string Test, int Parallel, string Mode, long Bytes, double Seconds, double BitsPerSecond);

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace QmTunnel.BenchTool;

/// <summary>
/// resume-probe: the time from a cut of a tunnel's link to the first byte that gets through again. It runs a TCP proxy
/// (<c>--proxy-port</c>, forwarding to the next server at <c>--target-port</c>) that the tunnel's hop must point at,
/// then keeps one connection through the tunnel (<c>--port</c>, to an echo target) busy with 1-byte round trips; each
/// of <c>--cuts</c> times it resets every proxied connection (RST both ways) and measures until the next echo arrives
/// (the session notices, redials, resumes, resends). Prints one JSON object; the connection must survive every cut.
/// </summary>
internal static class ResumeProbe
{
    public static async Task<int> RunAsync(Options options, CancellationToken cancel)
    {
        var host = IPAddress.Parse(options.Host);
        var cuts = Math.Max(1, options.Int("cuts", 20));
        await using var proxy = new CutProxy(new IPEndPoint(host, options.Int("proxy-port")), new IPEndPoint(host, options.Int("target-port")));
        // The proxy listens first: the tunnel (created next, by the bench) checks its chain through it. Then the
        // tunnel's listener is waited for (60 s at most).
        Console.Error.WriteLine($"PROXY {options.Int("proxy-port")}");
        Socket? client = null;
        for (var waited = 0; client is null; waited += 100)
        {
            var attempt = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await attempt.ConnectAsync(new IPEndPoint(host, options.Int("port")), cancel);
                client = attempt;
            }
            catch (SocketException) when (waited < 60_000)
            {
                attempt.Dispose();
                await Task.Delay(100, cancel);
            }
        }
        using var connection = client;
        var one = new byte[] { 0x2a };
        var reply = new byte[1];
        async Task RoundTripAsync()
        {
            await client.SendAsync(one, SocketFlags.None, cancel);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            if (await client.ReceiveAsync(reply, SocketFlags.None, timeout.Token) != 1)
            {
                throw new IOException("the connection through the tunnel closed: the session did not survive the cut");
            }
        }
        for (var i = 0; i < 200; i++)
        {
            await RoundTripAsync(); // warm, and the link is up through the proxy
        }
        var samples = new List<double>();
        for (var cut = 0; cut < cuts; cut++)
        {
            for (var i = 0; i < 50; i++)
            {
                await RoundTripAsync();
                await Task.Delay(2, cancel);
            }
            var started = Stopwatch.GetTimestamp();
            proxy.ResetAll();
            await RoundTripAsync();
            samples.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        samples.Sort();
        var result = new
        {
            Name = "resume",
            Cuts = cuts,
            MedianMs = Math.Round(samples[samples.Count / 2], 1),
            P99Ms = Math.Round(samples[Math.Min(samples.Count - 1, (int)Math.Ceiling(samples.Count * 0.99) - 1)], 1),
            MinMs = Math.Round(samples[0], 1),
            MaxMs = Math.Round(samples[^1], 1),
            ConnectionsProxied = proxy.Accepted,
        };
        Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        return 0;
    }

    /// <summary>A plain forwarding proxy whose connections can all be reset at once.</summary>
    private sealed class CutProxy : IAsyncDisposable
    {
        private readonly Socket _listener = new(SocketType.Stream, ProtocolType.Tcp);
        private readonly IPEndPoint _target;
        private readonly List<(Socket, Socket)> _pairs = [];
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;
        private int _accepted;

        public CutProxy(IPEndPoint listen, IPEndPoint target)
        {
            _target = target;
            _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Bind(listen);
            _listener.Listen(64);
            _accepting = Task.Run(AcceptAsync);
        }

        public int Accepted => Volatile.Read(ref _accepted);

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket inbound;
                try
                {
                    inbound = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                Interlocked.Increment(ref _accepted);
                var outbound = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                inbound.NoDelay = true;
                try
                {
                    await outbound.ConnectAsync(_target, _stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException)
                {
                    Reset(inbound);
                    outbound.Dispose();
                    continue;
                }
                lock (_pairs)
                {
                    _pairs.Add((inbound, outbound));
                }
                _ = PumpAsync(inbound, outbound);
                _ = PumpAsync(outbound, inbound);
            }
        }

        private static async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                while (true)
                {
                    var n = await from.ReceiveAsync(buffer, SocketFlags.None);
                    if (n == 0)
                    {
                        to.Shutdown(SocketShutdown.Send);
                        return;
                    }
                    await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                Reset(from);
                Reset(to);
            }
        }

        private static void Reset(Socket socket)
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

        public void ResetAll()
        {
            List<(Socket, Socket)> pairs;
            lock (_pairs)
            {
                pairs = [.. _pairs];
                _pairs.Clear();
            }
            foreach (var (a, b) in pairs)
            {
                Reset(a);
                Reset(b);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Dispose();
            ResetAll();
            await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }
}

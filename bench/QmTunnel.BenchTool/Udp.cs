using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace QmTunnel.BenchTool;

/// <summary>
/// UDP: an echo server (each datagram back to its sender) and a windowed echo load: one client socket keeps up to
/// --window datagrams of --size bytes in flight and counts the answers for --seconds (after a 1 s warm-up). A datagram
/// not answered within 50 ms of no progress is counted lost and its slot reused, so loss never stalls the load.
/// </summary>
public static class Udp
{
    public static async Task<int> EchoServerAsync(Options options, CancellationToken cancel)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.ReceiveBufferSize = 4 * 1024 * 1024;
        socket.SendBufferSize = 4 * 1024 * 1024;
        socket.Bind(new IPEndPoint(IPAddress.Parse(options.String("address", "127.0.0.1")), options.Int("port")));
        Console.WriteLine($"LISTENING {((IPEndPoint)socket.LocalEndPoint!).Port}");
        var buffer = GC.AllocateUninitializedArray<byte>(65_536, pinned: true);
        var from = new SocketAddress(AddressFamily.InterNetwork);
        try
        {
            while (true)
            {
                var n = await socket.ReceiveFromAsync(buffer, SocketFlags.None, from, cancel);
                await socket.SendToAsync(buffer.AsMemory(0, n), SocketFlags.None, from, cancel);
            }
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
    }

    public static async Task<int> EchoLoadAsync(Options options, CancellationToken cancel)
    {
        var size = options.Int("size", 64);
        var window = Math.Max(1, options.Int("window", 64));
        var seconds = Math.Max(1, options.Int("seconds", 5));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.ReceiveBufferSize = 4 * 1024 * 1024;
        socket.SendBufferSize = 4 * 1024 * 1024;
        socket.Connect(new IPEndPoint(IPAddress.Parse(options.Host), options.Int("port")));
        using var slots = new SemaphoreSlim(window);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        long sent = 0, received = 0, counted = 0, countedSent = 0;
        var measuring = 0;
        var payload = new byte[size];
        Random.Shared.NextBytes(payload);

        var sender = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await slots.WaitAsync(stop.Token);
                    await socket.SendAsync(payload, SocketFlags.None, stop.Token);
                    Interlocked.Increment(ref sent);
                    if (Volatile.Read(ref measuring) == 1)
                    {
                        Interlocked.Increment(ref countedSent);
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        var receiver = Task.Run(async () =>
        {
            var buffer = new byte[65_536];
            try
            {
                while (true)
                {
                    await socket.ReceiveAsync(buffer, SocketFlags.None, stop.Token);
                    Interlocked.Increment(ref received);
                    if (Volatile.Read(ref measuring) == 1)
                    {
                        Interlocked.Increment(ref counted);
                    }
                    if (slots.CurrentCount < window)
                    {
                        slots.Release();
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        var watchdog = Task.Run(async () =>
        {
            var last = -1L;
            try
            {
                while (true)
                {
                    await Task.Delay(50, stop.Token);
                    var now = Interlocked.Read(ref received);
                    if (now == last && slots.CurrentCount < window)
                    {
                        slots.Release(window - slots.CurrentCount); // no progress for 50 ms: what is in flight is lost
                    }
                    last = now;
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        await Task.Delay(TimeSpan.FromSeconds(1), cancel); // warm-up
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref measuring, 1);
        await Task.Delay(TimeSpan.FromSeconds(seconds), cancel);
        Volatile.Write(ref measuring, 0);
        var elapsed = clock.Elapsed.TotalSeconds;
        stop.Cancel();
        socket.Dispose();
        await Task.WhenAll(sender, receiver, watchdog);

        var answers = Interlocked.Read(ref counted);
        var perSecond = answers / elapsed;
        var lost = Math.Max(0, Interlocked.Read(ref countedSent) - answers);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"size\":{size},\"window\":{window},\"seconds\":{elapsed:0.###},\"datagrams_per_s\":{perSecond:0},\"mbit_per_s\":{perSecond * size * 8 / 1e6:0.##},\"sent\":{Interlocked.Read(ref countedSent)},\"answered\":{answers},\"lost_pct\":{(countedSent == 0 ? 0 : 100.0 * lost / countedSent):0.##}}}"));
        return 0;
    }
}

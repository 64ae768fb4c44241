using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// The fault proxy's latency and rate limit: exact on a fake clock, and on the real clock the byte stream stays whole
/// and in order while they change under a transfer.
/// </summary>
public sealed class FaultProxyShapingTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new();
    private readonly AcceptingServer _server = new();
    private FaultProxy _proxy = null!;

    public Task InitializeAsync()
    {
        _proxy = new FaultProxy(_server.EndPoint, time: _time);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task A_delay_holds_each_chunk_until_its_own_time_and_keeps_their_order()
    {
        var (client, target) = await FaultProxyTests.ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.ToTarget.Delay = TimeSpan.FromSeconds(5);

            await client.SendAllAsync("first"u8.ToArray());
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Waiting == 1); // read, queued, its timer set
            _time.Advance(TimeSpan.FromSeconds(4));
            await client.SendAllAsync("second"u8.ToArray()); // due at 9 s
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Received == 1 + 11);
            Assert.Equal(0, target.Available);

            _time.Advance(TimeSpan.FromSeconds(1)); // 5 s: the first is due
            Assert.Equal("first", await ReadTextAsync(target, 5));
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Waiting == 1);
            Assert.Equal(0, target.Available);

            _time.Advance(TimeSpan.FromSeconds(4)); // 9 s
            Assert.Equal("second", await ReadTextAsync(target, 6));
            Assert.Equal(1 + 11, _proxy.ToTarget.Forwarded);
        }
    }

    [Fact]
    public async Task Bytes_read_after_the_delay_is_lowered_do_not_overtake_those_still_waiting()
    {
        var (client, target) = await FaultProxyTests.ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.ToTarget.Delay = TimeSpan.FromSeconds(5);
            await client.SendAllAsync("first"u8.ToArray());
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Waiting == 1);

            _proxy.ToTarget.Delay = TimeSpan.Zero;
            await client.SendAllAsync("second"u8.ToArray()); // due now, but behind the first
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Received == 1 + 11);
            Assert.Equal(0, target.Available);

            _time.Advance(TimeSpan.FromSeconds(5));
            Assert.Equal("firstsecond", await ReadTextAsync(target, 11));

            await client.SendAllAsync("third"u8.ToArray()); // the queue is empty: straight through, no clock
            Assert.Equal("third", await ReadTextAsync(target, 5));
        }
    }

    [Fact]
    public async Task A_delay_in_one_direction_leaves_the_other_alone()
    {
        var (client, target) = await FaultProxyTests.ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.ToTarget.Delay = TimeSpan.FromMinutes(1);
            await target.SendAllAsync("back"u8.ToArray());
            Assert.Equal("back", await ReadTextAsync(client, 4)); // no clock moved
        }
    }

    [Fact]
    public async Task A_rate_lets_through_a_burst_then_its_bytes_per_second_and_no_more()
    {
        var (client, target) = await FaultProxyTests.ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.ToTarget.BytesPerSecond = 10_000; // bursts of 500 bytes, one each 50 ms
            await client.SendAllAsync(new byte[20_000]);
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Forwarded == 1 + 500 && _proxy.ToTarget.Waiting == 1);

            for (var step = 1; step <= 20; step++)
            {
                _time.Advance(TimeSpan.FromMilliseconds(50));
                await TunnelTests.WaitUntil(() => _proxy.ToTarget.Forwarded == 1 + 500 + step * 500 && _proxy.ToTarget.Waiting == 1);
            }

            // One second of the clock: the burst and 10,000 bytes; the rest waits.
            await FaultProxyTests.ReceiveAsync(target, 500 + 10_000);
            Assert.Equal(0, target.Available);

            _proxy.ToTarget.BytesPerSecond = 0; // unlimited from now on
            _time.Advance(TimeSpan.FromMilliseconds(50)); // ends the wait in progress
            await FaultProxyTests.ReceiveAsync(target, 20_000 - 10_500);
            Assert.Equal(20_001, _proxy.ToTarget.Forwarded);
        }
    }

    [Fact]
    public async Task Bytes_stay_whole_and_in_order_while_the_delay_and_the_rate_change_under_a_transfer()
    {
        await using var echo = new EchoServer();
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, echo.Port)); // the real clock
        var payload = RandomNumberGenerator.GetBytes(6 * 1024 * 1024);
        using var client = await SocketTestExtensions.ConnectAsync($"tcp://127.0.0.1:{proxy.EndPoint.Port}");
        var reading = client.ReadToEndAsync();

        // Between pieces the settings change, so data is in flight while the pumps switch between sending at once
        // and queueing, in both directions.
        const int Pieces = 96;
        var piece = payload.Length / Pieces;
        for (var i = 0; i < Pieces; i++)
        {
            await client.SendAllAsync(payload.AsMemory(i * piece, piece));
            proxy.ToTarget.Delay = i % 2 == 0 ? TimeSpan.FromMilliseconds(10) : TimeSpan.Zero;
            proxy.ToClient.Delay = i % 3 == 1 ? TimeSpan.FromMilliseconds(5) : TimeSpan.Zero;
            proxy.Throttle = i % 5 == 2 ? 200_000_000 : 0;
        }
        client.Shutdown(SocketShutdown.Send);
        var echoed = await reading.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed));
    }

    [Fact]
    public async Task On_the_real_clock_a_delay_each_way_adds_twice_the_delay_to_a_round_trip()
    {
        await using var real = new FaultProxy(_server.EndPoint) { Delay = TimeSpan.FromMilliseconds(60) };
        var (client, target) = await FaultProxyTests.ConnectAsync(real, _server); // one round trip
        using (client)
        {
            var watch = Stopwatch.StartNew();
            await client.SendAllAsync(new byte[] { 7 });
            await FaultProxyTests.ReceiveAsync(target, 1);
            await target.SendAllAsync(new byte[] { 8 });
            Assert.Equal(8, await FaultProxyTests.ReceiveAsync(client, 1));
            Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(120), $"a round trip took {watch.Elapsed.TotalMilliseconds} ms");
        }
    }

    private static async Task<string> ReadTextAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(n > 0);
            read += n;
        }
        return System.Text.Encoding.ASCII.GetString(buffer);
    }
}

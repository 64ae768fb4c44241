using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>The fault proxy on real loopback sockets: forwarding, resets, black holes, refusals, outages.</summary>
public sealed class FaultProxyTests : IAsyncLifetime
{
    private readonly AcceptingServer _server = new();
    private FaultProxy _proxy = null!;

    public Task InitializeAsync()
    {
        _proxy = new FaultProxy(_server.EndPoint);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _server.DisposeAsync();
    }

    /// <summary>A client through the proxy and the target's socket of the same connection, one byte exchanged each way.</summary>
    internal static async Task<(Socket Client, Socket Target)> ConnectAsync(FaultProxy proxy, AcceptingServer server)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(proxy.EndPoint);
        var target = await server.NextAsync();
        await client.SendAllAsync(new byte[] { 1 });
        Assert.Equal(1, await ReceiveAsync(target, 1));
        await target.SendAllAsync(new byte[] { 2 });
        Assert.Equal(2, await ReceiveAsync(client, 1));
        return (client, target);
    }

    /// <summary>Receives exactly <paramref name="count"/> bytes and returns the last (fails after 10 s).</summary>
    internal static async Task<byte> ReceiveAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            Assert.True(n > 0, $"the connection ended after {read} of {count} bytes");
            read += n;
        }
        return buffer[^1];
    }

    /// <summary>What the next receive on <paramref name="socket"/> ends with: a SocketError (Success for a FIN).</summary>
    private static async Task<SocketError> NextReceiveErrorAsync(Socket socket)
    {
        try
        {
            var n = await socket.ReceiveAsync(new byte[1], SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, n);
            return SocketError.Success;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
        }
    }

    /// <summary>
    /// Connects to <paramref name="endPoint"/> and returns how the connection ended at once: a reset either fails the
    /// connect (the RST came before the connect completed here) or the first receive. Success: it did not end.
    /// </summary>
    private static async Task<SocketError> ConnectThenResetAsync(IPEndPoint endPoint)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint);
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
        }
        return await NextReceiveErrorAsync(socket);
    }

    [Fact]
    public async Task Bytes_pass_through_intact_both_ways_with_the_fins_and_are_counted()
    {
        await using var echo = new EchoServer();
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, echo.Port));
        var payload = RandomNumberGenerator.GetBytes(4 * 1024 * 1024 + 17);

        var echoed = await SocketTestExtensions.EchoAsync($"tcp://127.0.0.1:{proxy.EndPoint.Port}", payload);

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(echoed)); // the echo answers the FIN with its own
        await TunnelTests.WaitUntil(() => proxy.Current == 0);
        Assert.Equal(1, proxy.Accepted);
        Assert.Equal(payload.Length, proxy.ToTarget.Forwarded);
        Assert.Equal(payload.Length, proxy.ToClient.Forwarded);
        Assert.Equal(0, proxy.ToTarget.Discarded + proxy.ToClient.Discarded + proxy.Cuts + proxy.Refused);
    }

    [Fact]
    public async Task A_reset_cut_resets_the_client_and_the_target()
    {
        var (client, target) = await ConnectAsync(_proxy, _server);
        using (client)
        {
            Assert.Equal(1, _proxy.Current);

            _proxy.Cut(CutMode.Reset);

            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(client));
            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(target));
            Assert.Equal(1, _proxy.Cuts);
            await TunnelTests.WaitUntil(() => _proxy.Current == 0);
        }
    }

    [Fact]
    public async Task A_reset_cut_in_the_middle_of_transfers_ends_them_all_with_resets_queued_bytes_included()
    {
        await using var echo = new EchoServer();
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, echo.Port));
        proxy.ToClient.Delay = TimeSpan.FromMilliseconds(20); // echoed bytes wait in the proxy's queue
        var clients = new List<Socket>();
        var transfers = new List<Task<SocketError>>();
        for (var i = 0; i < 4; i++)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(proxy.EndPoint);
            clients.Add(client);
            transfers.Add(Task.Run(async () =>
            {
                var reading = client.ReadToEndAsync();
                try
                {
                    var chunk = new byte[64 * 1024];
                    while (true)
                    {
                        await client.SendAllAsync(chunk);
                    }
                }
                catch (SocketException ex)
                {
                    // The kernel reports the reset once, to whichever call comes first: the reader may see an end.
                    await reading.ContinueWith(_ => { }, TaskScheduler.Default);
                    return ex.SocketErrorCode;
                }
            }));
        }
        await TunnelTests.WaitUntil(() => proxy.ToClient.Forwarded > 4 * 1024 * 1024);

        proxy.Cut(CutMode.Reset);

        foreach (var error in await Task.WhenAll(transfers).WaitAsync(TimeSpan.FromSeconds(10)))
        {
            Assert.True(error is SocketError.ConnectionReset or SocketError.Shutdown, $"a client saw {error}");
        }
        await TunnelTests.WaitUntil(() => proxy.Current == 0);
        clients.ForEach(c => c.Dispose());
    }

    [Fact]
    public async Task A_reset_from_one_end_reaches_the_other_as_a_reset()
    {
        var (client, target) = await ConnectAsync(_proxy, _server);
        using (client)
        {
            FaultProxy.ResetAndClose(target);
            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(client));
        }
    }

    [Fact]
    public async Task A_black_hole_swallows_bytes_both_ways_and_sends_neither_fin_nor_reset_until_a_reset_cut()
    {
        var (client, target) = await ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.Cut(CutMode.BlackHole);
            await client.SendAllAsync(new byte[100_000]);
            await target.SendAllAsync(new byte[70_000]);
            client.Shutdown(SocketShutdown.Send);

            // The proxy read them all and threw them away...
            await TunnelTests.WaitUntil(() => _proxy.ToTarget.Discarded == 100_000 && _proxy.ToClient.Discarded == 70_000);
            // ...and neither end can read anything: no byte, no FIN, no reset (a negative, so it is given a moment).
            Assert.False(target.Poll(TimeSpan.FromMilliseconds(200), SelectMode.SelectRead));
            Assert.False(client.Poll(TimeSpan.Zero, SelectMode.SelectRead));
            Assert.Equal(1, _proxy.Current);

            // Healing does not bring it back; a reset cut ends it for both.
            _proxy.Heal();
            Assert.Equal(1, _proxy.Current);
            _proxy.Cut(CutMode.Reset);
            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(target));
            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(client));
            await TunnelTests.WaitUntil(() => _proxy.Current == 0);
            Assert.Equal(2, _proxy.Cuts);
        }
    }

    [Fact]
    public async Task New_connections_after_a_black_hole_cut_are_forwarded()
    {
        var (old, _) = await ConnectAsync(_proxy, _server);
        using (old)
        {
            _proxy.Cut(CutMode.BlackHole);
            var (client, _) = await ConnectAsync(_proxy, _server); // bytes both ways: see ConnectAsync
            client.Dispose();
            Assert.Equal(2, _proxy.Accepted);
        }
    }

    [Fact]
    public async Task While_refusing_new_connections_are_reset_and_never_reach_the_target_and_heal_lets_them_through()
    {
        _proxy.Refuse(true);
        Assert.Equal(SocketError.ConnectionReset, await ConnectThenResetAsync(_proxy.EndPoint));
        Assert.Equal(1, _proxy.Refused);
        Assert.True(_proxy.Refusing);

        _proxy.Heal();
        var (client, _) = await ConnectAsync(_proxy, _server); // the first connection the target sees
        client.Dispose();
        Assert.Equal(2, _proxy.Accepted);
        Assert.Equal(1, _proxy.Refused);
    }

    [Fact]
    public async Task An_outage_resets_the_current_connections_refuses_new_ones_and_heals_when_its_time_is_up()
    {
        var time = new FakeTimeProvider();
        await using var proxy = new FaultProxy(_server.EndPoint, time: time);
        var (client, _) = await ConnectAsync(proxy, _server);
        using (client)
        {
            var outage = proxy.CutForAsync(TimeSpan.FromSeconds(30), CutMode.Reset);

            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(client));
            Assert.Equal(SocketError.ConnectionReset, await ConnectThenResetAsync(proxy.EndPoint));
            time.Advance(TimeSpan.FromSeconds(29));
            Assert.False(outage.IsCompleted);
            Assert.True(proxy.Refusing);

            time.Advance(TimeSpan.FromSeconds(1));
            await outage.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.False(proxy.Refusing);
            var (after, _) = await ConnectAsync(proxy, _server);
            after.Dispose();
            Assert.Equal((1L, 1L), (proxy.Cuts, proxy.Refused));
        }
    }

    [Fact]
    public async Task A_target_that_cannot_be_reached_resets_the_client()
    {
        var closed = new AcceptingServer();
        var endPoint = closed.EndPoint;
        await closed.DisposeAsync(); // nothing listens there now
        await using var proxy = new FaultProxy(endPoint);
        Assert.Equal(SocketError.ConnectionReset, await ConnectThenResetAsync(proxy.EndPoint));
        await TunnelTests.WaitUntil(() => proxy.Current == 0);
    }

    [Fact]
    public async Task Disposing_resets_every_connection_and_stops_listening()
    {
        var (client, target) = await ConnectAsync(_proxy, _server);
        using (client)
        {
            _proxy.Cut(CutMode.BlackHole); // black-holed ones too
            var endPoint = _proxy.EndPoint;

            await _proxy.DisposeAsync();

            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(client));
            Assert.Equal(SocketError.ConnectionReset, await NextReceiveErrorAsync(target));
            Assert.Equal(0, _proxy.Current);
            using var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var refused = await Assert.ThrowsAsync<SocketException>(async () => await late.ConnectAsync(endPoint));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
    }
}

using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Connections that went quiet hold no room in their link's send queue: room is reserved for data read, never for
/// data a relay is still waiting for (200 quiet connections once held 26 × 128 KiB of a 4 MiB queue, and the next
/// connection waited forever).
/// </summary>
public sealed class IdleRelayTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(allowPlainLinks: false);
        _b = await _engines.StartAsync(allowPlainLinks: false);
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task Quiet_connections_hold_no_room_in_the_send_queues_of_their_links()
    {
        _a.NewTestTunnel(new TunnelProfile { Name = "quiet", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b)], Target = _echo.Uri, MaxConnections = 300 });
        var listen = (await _a.StartTunnelAsync("quiet")).BoundListen!;
        var clients = new List<Socket>();
        var echoed = new List<Task>();
        try
        {
            // As a batch of clients does: each sends a chunk and the next one starts at its first echoed bytes, so many
            // relays read, send and go quiet at the same time.
            for (var i = 0; i < 200; i++)
            {
                var client = await SocketTestExtensions.ConnectAsync(listen);
                clients.Add(client);
                var chunk = RandomNumberGenerator.GetBytes(64 * 1024 + i);
                var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                echoed.Add(ReadBackAsync(client, chunk.Length, first));
                await client.SendAllAsync(chunk);
                await first.Task.WaitAsync(TimeSpan.FromSeconds(30));
            }
            await Task.WhenAll(echoed).WaitAsync(TimeSpan.FromSeconds(60));
            var link = Assert.Single(_a.OutboundLinks());
            await TunnelTests.WaitUntil(() => link.QueuedBytes == 0 && _b.InboundLinks().All(l => l.QueuedBytes == 0));
            Assert.Equal(200, link.StreamCount);
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    private static async Task ReadBackAsync(Socket client, int length, TaskCompletionSource first)
    {
        var buffer = new byte[64 * 1024];
        var got = 0;
        while (got < length)
        {
            var n = await client.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                throw new IOException($"the tunnel closed after {got} of {length} bytes");
            }
            got += n;
            first.TrySetResult();
        }
    }
}

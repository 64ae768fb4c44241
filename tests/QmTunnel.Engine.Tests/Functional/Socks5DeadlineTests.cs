using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// The deadlines of a socks5:// tunnel: the owning engine A runs on a FakeTimeProvider, so a silent client and a target
/// that never answers are given up on only when the test moves A's clock (B and the network run in real time).
/// </summary>
public sealed class Socks5DeadlineTests : IAsyncLifetime
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(60);
    private readonly EngineFixture _engines = new();
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private QmTunnelEngine _a = null!, _b = null!;
    private int _port;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(QmTunnel.Engine.Tests.Management.ManagementLimitsTests.FakeClockOptions(), _clock);
        _b = await _engines.StartAsync();
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "socks",
            Listen = "socks5://127.0.0.1:0",
            // no heartbeats: A's clock is moved by minutes
            Via = [EngineFixture.Hop(_b) + "?heartbeat=off&receive-timeout=off"],
            Target = string.Empty,
            ConnectTimeout = ConnectTimeout,
        });
        var bound = (await _a.StartTunnelAsync("socks")).BoundListen!;
        _port = int.Parse(bound[(bound.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task DisposeAsync() => await _engines.DisposeAsync();

    /// <summary>Moves A's clock past <paramref name="step"/> until <paramref name="done"/> completes (the wait may start after a move).</summary>
    private async Task<T> AdvanceUntilAsync<T>(Task<T> done, TimeSpan step)
    {
        for (var i = 0; i < 20 && !done.IsCompleted; i++)
        {
            _clock.Advance(step);
            await Task.WhenAny(done, Task.Delay(250));
        }
        return await done.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [InlineData(new byte[0])]
    [InlineData(new byte[] { 5, 2 })]
    [InlineData(new byte[] { 5, 1, 0, 5, 1, 0, 3, 9, (byte)'l', (byte)'o' })]
    public async Task A_client_that_stops_sending_is_closed_at_the_handshake_deadline_and_not_before(byte[] sent)
    {
        using var s = await Socks5Client.OpenAsync(_port);
        await s.SendAllAsync(sent);
        Assert.True(await Poll.UntilAsync(() => _a.GetConnections("socks").Count == 1));
        var closed = Socks5Client.ReadUntilClosedAsync(s);
        // real time passing does not end it: only A's clock does
        Assert.False(await Poll.UntilAsync(() => closed.IsCompleted, 300));

        var answer = await AdvanceUntilAsync(closed, ConnectTimeout + TimeSpan.FromSeconds(1));
        Assert.Equal(sent.Length > 2 ? new byte[] { 5, 0 } : [], answer);
        // the client may see the close before the connection list records why
        Assert.True(await Poll.UntilAsync(() => _a.GetConnections("socks") is [{ Error: not null }]));
        Assert.Contains("did not complete its request within 60 s", Assert.Single(_a.GetConnections("socks")).Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_target_that_never_answers_gets_ttl_expired_when_the_chain_does_not_open_in_time()
    {
        // a listener whose accept queue is full: the kernel drops further SYNs, so a connect to it hangs
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var target = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var fillers = new List<Socket>();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                try
                {
                    await filler.ConnectAsync(new IPEndPoint(IPAddress.Loopback, target), wait.Token);
                }
                catch (OperationCanceledException)
                {
                    break; // the queue is full
                }
            }

            using var s = await Socks5Client.OpenAsync(_port);
            await s.SendAllAsync(new byte[] { 5, 1, 0 });
            Assert.Equal(new byte[] { 5, 0 }, await Socks5Client.ReadExactAsync(s, 2));
            await s.SendAllAsync(Socks5Client.Request("127.0.0.1", target));
            Assert.True(await Poll.UntilAsync(() => _a.GetConnections("socks") is [{ Target.Length: > 0 }]));

            var reply = await AdvanceUntilAsync(Socks5Client.ReadExactAsync(s, 10), ConnectTimeout + TimeSpan.FromSeconds(1));
            Assert.Equal(new byte[] { 5, 6, 0, 1, 0, 0, 0, 0, 0, 0 }, reply);
            Assert.True(await Poll.UntilAsync(() => _a.GetConnections("socks") is [{ Error: not null }]));
            Assert.Contains("did not open the connection within", Assert.Single(_a.GetConnections("socks")).Error, StringComparison.Ordinal);
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// The outages of issue 8, section 5, on real sockets: 1 GiB through a tunnel while a link of its chain is cut five
/// times for 2 s (every connection of the link reset, new ones refused meanwhile). The application's connection must
/// never close, and the SHA-256 of what reached the target must be that of what the client sent.
/// </summary>
public sealed class OutageTests : IAsyncLifetime
{
    private const long Total = 1L << 30;
    private const int Cuts = 5;
    private readonly EngineFixture _engines = new();
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync();
        }
        await _engines.DisposeAsync();
    }

    [Fact]
    public async Task A_gigabyte_goes_through_five_cuts_of_two_seconds_of_its_only_link_intact_and_the_connection_never_closes()
    {
        var a = await _engines.StartAsync();
        var b = await _engines.StartAsync();
        var proxy = Own(new FaultProxy(new IPEndPoint(IPAddress.Loopback, b.Port)));
        var sink = Own(new HashingSink());
        await RunAsync(a, [$"qmt+plain://127.0.0.1:{proxy.EndPoint.Port}"], sink, proxy, () => a.OutboundLinks().Single());
    }

    [Fact]
    public async Task A_gigabyte_goes_through_five_cuts_of_the_middle_link_of_a_two_hop_chain_intact()
    {
        var a = await _engines.StartAsync();
        var b = await _engines.StartAsync();
        var c = await _engines.StartAsync();
        var proxy = Own(new FaultProxy(new IPEndPoint(IPAddress.Loopback, c.Port)));
        var sink = Own(new HashingSink());
        await RunAsync(a, [EngineFixture.TlsHop(b), $"qmt+plain://127.0.0.1:{proxy.EndPoint.Port}"], sink, proxy, () => b.OutboundLinks().Single());
        Assert.All(a.OutboundLinks(), l => Assert.Equal(0, l.TransportsLost)); // the first link was never touched
    }

    private T Own<T>(T owned) where T : IAsyncDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    private static async Task RunAsync(QmTunnelEngine owner, IReadOnlyList<string> via, HashingSink sink, FaultProxy proxy, Func<Link> cutLink)
    {
        owner.NewTestTunnel(new TunnelProfile { Name = "gig", Listen = "tcp://127.0.0.1:0", Via = via, Target = sink.Uri, ConnectTimeout = TimeSpan.FromSeconds(5) });
        var listen = (await owner.StartTunnelAsync("gig")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        using var sent = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var sending = Task.Run(async () =>
        {
            var random = new Random(8);
            var buffer = new byte[256 * 1024];
            for (long done = 0; done < Total; done += buffer.Length)
            {
                random.NextBytes(buffer);
                sent.AppendData(buffer);
                await client.SendAsync(buffer, SocketFlags.None);
            }
            client.Shutdown(SocketShutdown.Send);
        });
        for (var cut = 1; cut <= Cuts; cut++)
        {
            var at = Total / (Cuts + 1) * cut;
            await TunnelTests.WaitUntil(() => sink.Received >= at || sending.IsFaulted, 300_000);
            Assert.False(sending.IsFaulted, $"the client's connection failed: {sending.Exception}");
            await proxy.CutForAsync(TimeSpan.FromSeconds(2), CutMode.Reset);
        }
        await sending.WaitAsync(TimeSpan.FromMinutes(5));
        // The sink answers with the SHA-256 of all it received, back through the tunnel, then closes.
        var answer = await client.ReadToEndAsync().WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(Total, sink.Received);
        Assert.Equal(sent.GetHashAndReset(), answer);
        Assert.True(proxy.Cuts >= Cuts);
        var link = cutLink();
        Assert.True(link.Resumes >= Cuts, $"{link.Resumes} resumes, {link.TransportsLost} connections lost");
        var stats = owner.GetTunnelStats("gig");
        Assert.Equal(1, stats.ConnectionsTotal);
        Assert.Null(owner.GetConnections("gig").Single().Error);
    }
}

/// <summary>A target that reads one connection to its end, then writes back the SHA-256 of what it read and closes.</summary>
internal sealed class HashingSink : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly Task _serving;
    private long _received;

    public HashingSink()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        _serving = Task.Run(ServeAsync);
    }

    public string Uri => $"tcp://127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";

    public long Received => Interlocked.Read(ref _received);

    private async Task ServeAsync()
    {
        using var connection = await _listener.AcceptAsync();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[256 * 1024];
        while (true)
        {
            var n = await connection.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                break;
            }
            hash.AppendData(buffer, 0, n);
            Interlocked.Add(ref _received, n);
        }
        await connection.SendAsync(hash.GetHashAndReset(), SocketFlags.None);
        connection.Shutdown(SocketShutdown.Send);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}

using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Compression per hop through real engines on loopback with real TLS (docs/protocol.md, "Compression"): the setting of
/// each hop travels in its address, a gateway asks its next hop for that hop's compression, data arrives intact whatever
/// it is, compressible data shrinks on the wire and random data does not grow, two tunnels with different settings to one
/// server get links of their own, and Get-QmTunnelStats' hops show the bytes before and after compression.
/// </summary>
public sealed class CompressedHopTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
        _c = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> StartAsync(string name, params string[] via)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = "tcp://127.0.0.1:0", Via = via, Target = _echo.Uri });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    /// <summary>Sends <paramref name="payload"/> through the tunnel and reads the echo while sending (it is larger than the socket buffers).</summary>
    private static async Task<byte[]> EchoAsync(string listen, byte[] payload)
    {
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        return await reading.WaitAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>The link of <paramref name="engine"/> to <paramref name="server"/> that carried data.</summary>
    private static Link LinkTo(QmTunnelEngine engine, QmTunnelEngine server) =>
        Assert.Single(engine.OutboundLinks(), l => l.RemoteEndPoint.EndsWith(":" + server.Port, StringComparison.Ordinal) && l.DataBytesSent > 0);

    [Theory]
    [InlineData("lz4")]
    [InlineData("zstd")]
    public async Task A_compressed_hop_carries_compressible_and_random_data_intact_compressing_only_what_gets_smaller(string algorithm)
    {
        var listen = await StartAsync("packed", $"qmt://127.0.0.1:{_b.Port}?compress={algorithm}");

        var text = Links.CompressionSessionTests.Compressible(8 * 1024 * 1024);
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await EchoAsync(listen, text)));
        var link = LinkTo(_a, _b);
        Assert.Equal(LinkCompression.DefaultFor(LinkCompression.Parse(algorithm)!.Value), link.Compression);
        Assert.Equal(text.Length, link.DataBytesSent);
        Assert.True(link.DataWireBytesSent < text.Length / 4, $"{link.DataWireBytesSent} bytes on the wire for {text.Length}");
        Assert.True(link.DataWireBytesReceived < text.Length / 4, $"the echo took {link.DataWireBytesReceived} bytes on the wire for {text.Length}");
        Assert.True(link.BytesSent < text.Length / 4, $"the link sent {link.BytesSent} bytes for {text.Length}");

        var noise = RandomNumberGenerator.GetBytes(4 * 1024 * 1024);
        var (raw, wire) = (link.DataBytesSent, link.DataWireBytesSent);
        Assert.Equal(SHA256.HashData(noise), SHA256.HashData(await EchoAsync(listen, noise)));
        Assert.Equal(noise.Length, link.DataBytesSent - raw);
        Assert.Equal(noise.Length, link.DataWireBytesSent - wire); // sent as it is: not one byte more
    }

    [Fact]
    public async Task A_gateway_asks_its_next_hop_for_the_compression_given_for_that_hop_and_the_stats_show_each_hop()
    {
        var listen = await StartAsync("chain", EngineFixture.TlsHop(_b), $"qmt://127.0.0.1:{_c.Port}?compress=zstd&compress-level=6");
        var text = Links.CompressionSessionTests.Compressible(4 * 1024 * 1024);
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await EchoAsync(listen, text)));

        // The gateway b read the compression of its next hop from the route and asked c for it.
        var next = Assert.Single(_b.OutboundHops());
        Assert.Equal(new LinkCompression(CompressionAlgorithm.Zstd, 6), next.Compression);
        Assert.Equal(new LinkCompression(CompressionAlgorithm.Zstd, 6), LinkTo(_b, _c).Compression);
        // The owner's first hop is TLS without compress=: not compressed.
        Assert.Equal(LinkCompression.None, LinkTo(_a, _b).Compression);

        var stats = await _a.GetTunnelStatsAsync("chain");
        Assert.Equal(2, stats.Hops.Count);
        var (first, second) = (stats.Hops[0], stats.Hops[1]);
        Assert.Equal(CompressionAlgorithm.None, first.Compression);
        Assert.Equal(text.Length, first.DataBytesSent);
        Assert.Equal(text.Length, first.DataWireBytesSent);
        Assert.Equal(1.0, first.CompressionRatio);
        Assert.Equal(CompressionAlgorithm.Zstd, second.Compression);
        Assert.Equal(text.Length, second.DataBytesSent);
        Assert.True(second.DataWireBytesSent < text.Length / 4, $"{second.DataWireBytesSent} bytes on the wire for {text.Length}");
        Assert.Equal(text.Length, second.DataBytesReceived);
        Assert.True(second.DataWireBytesReceived < text.Length / 4);
        Assert.True(second.CompressionRatio < 0.25, $"{second.CompressionRatio}");
    }

    [Fact]
    public async Task Two_tunnels_to_one_server_with_different_compression_get_a_link_each()
    {
        var packed = await StartAsync("packed", $"qmt://127.0.0.1:{_b.Port}?compress=lz4");
        var plain = await StartAsync("plain", EngineFixture.TlsHop(_b));
        var text = Links.CompressionSessionTests.Compressible(1024 * 1024);
        Assert.Equal(text, await EchoAsync(packed, text));
        Assert.Equal(text, await EchoAsync(plain, text));

        var links = _a.OutboundLinks().Where(l => l.DataBytesSent > 0).ToList();
        Assert.Equal(2, links.Count);
        Assert.Contains(links, l => l.Compression == LinkCompression.Lz4 && l.DataWireBytesSent < text.Length / 4);
        Assert.Contains(links, l => l.Compression == LinkCompression.None && l.DataWireBytesSent == text.Length);
    }

    [Fact]
    public async Task A_server_that_does_not_accept_compression_answers_None_and_the_tunnel_carries_the_data_as_it_is()
    {
        var refusing = await _engines.StartAsync(new ServerOptions
        {
            Port = 0, DataPath = Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n")), AdminPassword = EngineFixture.AdminPassword,
            PasswordIterations = EngineFixture.TestIterations, AcceptCompression = false,
        });
        var listen = await StartAsync("refused", $"qmt://127.0.0.1:{refusing.Port}?compress=zstd");
        var text = Links.CompressionSessionTests.Compressible(1024 * 1024);
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await EchoAsync(listen, text)));

        var link = LinkTo(_a, refusing);
        Assert.Equal(LinkCompression.None, link.Compression);
        Assert.Equal(text.Length, link.DataWireBytesSent);
        Assert.Equal(text.Length, link.DataWireBytesReceived);
        Assert.Equal(CompressionAlgorithm.None, (await _a.GetTunnelStatsAsync("refused")).Hops[0].Compression);
    }

    [Fact]
    public async Task A_TLS_hop_is_not_compressed_by_default_and_an_unencrypted_hop_is_with_LZ4()
    {
        var tls = await StartAsync("tls", EngineFixture.TlsHop(_b));
        var plain = await StartAsync("plain", EngineFixture.Hop(_c));
        var text = Links.CompressionSessionTests.Compressible(256 * 1024);
        Assert.Equal(text, await EchoAsync(tls, text));
        Assert.Equal(text, await EchoAsync(plain, text));

        Assert.Equal(LinkCompression.None, LinkTo(_a, _b).Compression);
        Assert.Equal(LinkCompression.Lz4, LinkTo(_a, _c).Compression);
        Assert.True(LinkTo(_a, _c).DataWireBytesSent < text.Length / 4);
    }
}

using System.Security.Cryptography;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// AcceptCompression as a saved server setting (Set-QmTunnelServerConfig -AcceptCompression), through real engines on
/// loopback with real TLS: turned off, a link accepted afterwards is answered None while a link up keeps the
/// compression it agreed; the setting survives a restart on the same data path, and a start option overrides it.
/// </summary>
public sealed class AcceptCompressionSettingTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> StartAsync(string name, string via)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = "tcp://127.0.0.1:0", Via = [via], Target = _echo.Uri });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    /// <summary>The links of <paramref name="engine"/> to <paramref name="server"/> that carried data.</summary>
    private static List<Link> LinksTo(QmTunnelEngine engine, QmTunnelEngine server) =>
        [.. engine.OutboundLinks().Where(l => l.RemoteEndPoint.EndsWith(":" + server.Port, StringComparison.Ordinal) && l.DataBytesSent > 0)];

    [Fact]
    public async Task Turned_off_a_link_accepted_afterwards_agrees_None_and_a_link_accepted_before_keeps_its_compression()
    {
        Assert.True(_b.GetServerConfig().AcceptCompression);
        var before = await StartAsync("before", $"qmt://127.0.0.1:{_b.Port}?compress=lz4");
        var text = Links.CompressionSessionTests.Compressible(1024 * 1024);
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await SocketTestExtensions.EchoAsync(before, text)));
        var first = Assert.Single(LinksTo(_a, _b));
        Assert.Equal(LinkCompression.Lz4, first.Compression);

        var config = _b.SetServerConfig(new ServerConfigChange { AcceptCompression = false });
        Assert.False(config.AcceptCompression);
        Assert.False(_b.GetServerConfig().AcceptCompression);

        // A tunnel asking for another compression needs a link of its own: accepted after the change, answered None.
        var after = await StartAsync("after", $"qmt://127.0.0.1:{_b.Port}?compress=zstd");
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await SocketTestExtensions.EchoAsync(after, text)));
        var second = Assert.Single(LinksTo(_a, _b), l => l != first);
        Assert.Equal(LinkCompression.None, second.Compression);
        Assert.Equal(text.Length, second.DataWireBytesSent);
        Assert.Equal(CompressionAlgorithm.None, (await _a.GetTunnelStatsAsync("after")).Hops[0].Compression);

        // The link accepted before still compresses what it carries.
        var wire = first.DataWireBytesSent;
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await SocketTestExtensions.EchoAsync(before, text)));
        Assert.Equal(LinkCompression.Lz4, first.Compression);
        Assert.True(first.DataWireBytesSent - wire < text.Length / 4, $"{first.DataWireBytesSent - wire} bytes on the wire for {text.Length}");
        Assert.Equal(CompressionAlgorithm.Lz4, (await _a.GetTunnelStatsAsync("before")).Hops[0].Compression);
    }

    [Fact]
    public async Task The_setting_survives_a_restart_on_the_same_data_path_and_a_start_option_overrides_it()
    {
        _b.SetServerConfig(new ServerConfigChange { AcceptCompression = false });
        await _b.StopAsync();
        var again = await _engines.StartAsync(_b.Options with { AdminPassword = null });
        Assert.False(again.GetServerConfig().AcceptCompression);
        Assert.False(again.AcceptCompression);

        // Links accepted by the restarted server are answered None.
        var listen = await StartAsync("restarted", $"qmt://127.0.0.1:{again.Port}?compress=lz4");
        var text = Links.CompressionSessionTests.Compressible(256 * 1024);
        Assert.Equal(SHA256.HashData(text), SHA256.HashData(await SocketTestExtensions.EchoAsync(listen, text)));
        Assert.Equal(LinkCompression.None, Assert.Single(LinksTo(_a, again)).Compression);

        // A start option (qmtunnel-server --accept-compression true) is saved over it.
        await again.StopAsync();
        var forced = await _engines.StartAsync(_b.Options with { AdminPassword = null, AcceptCompression = true });
        Assert.True(forced.GetServerConfig().AcceptCompression);
        await forced.StopAsync();
        var kept = await _engines.StartAsync(_b.Options with { AdminPassword = null });
        Assert.True(kept.GetServerConfig().AcceptCompression);
    }
}

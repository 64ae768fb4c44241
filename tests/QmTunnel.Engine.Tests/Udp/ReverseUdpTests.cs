using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// A reverse UDP tunnel (the original's RemoteToLocal with protocol UDP): the far server listens on udp://, each client
/// address there an association carried back to the owner as a Reverse stream of framed datagrams; the owner sends them
/// to its udp:// target from a socket of its own and runs the association's idle timer.
/// </summary>
public sealed class ReverseUdpTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly UdpEchoServer _target = new();
    private QmTunnelEngine _owner = null!, _far = null!;

    public async Task InitializeAsync()
    {
        _owner = await _engines.StartAsync();
        _far = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _target.DisposeAsync();
    }

    [Fact]
    public async Task Clients_of_a_far_udp_listener_reach_the_owners_udp_target_with_every_datagram_whole()
    {
        _owner.NewTestTunnel(ReverseTunnelTests.Reverse("dns-back", [EngineFixture.Hop(_far)], _target.Uri, "udp://127.0.0.1:0"));
        var listen = await ReverseTunnelTests.StartAsync(_owner, "dns-back");
        Assert.StartsWith("udp://127.0.0.1:", listen, StringComparison.Ordinal);

        using var first = new UdpClientSocket(listen);
        using var second = new UdpClientSocket(listen);
        foreach (var size in new[] { 1, 512, 1_500, 9_000, 65_507 })
        {
            var datagram = System.Security.Cryptography.RandomNumberGenerator.GetBytes(size);
            Assert.Equal(datagram, await first.RoundTripAsync(datagram));
            var other = System.Security.Cryptography.RandomNumberGenerator.GetBytes(size);
            Assert.Equal(other, await second.RoundTripAsync(other)); // each association gets its own answers
        }

        // two associations at the owner, counted from the client's side
        var connections = _owner.GetConnections("dns-back");
        Assert.Equal(2, connections.Count);
        Assert.All(connections, c =>
        {
            Assert.Equal(5, c.DatagramsFromClient);
            Assert.Equal(5, c.DatagramsToClient);
            Assert.Equal(1 + 512 + 1_500 + 9_000 + 65_507, c.BytesFromClient);
        });
        Assert.Contains(connections, c => c.Client.EndsWith(":" + first.Local.Port, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_reverse_tunnel_with_one_udp_end_and_one_byte_stream_end_is_refused()
    {
        var e = await Assert.ThrowsAsync<QmTunnel.Engine.Errors.QmTunnelException>(() =>
            _owner.NewTunnelAsync(ReverseTunnelTests.Reverse("mixed-back", [EngineFixture.Hop(_far)], _target.Uri, "tcp://127.0.0.1:0"), [EngineFixture.AdminLogin]));
        Assert.Contains("carry different traffic", e.Message);
    }
}

using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>One link per next server and login, however the server's address was written (with its user or not).</summary>
public sealed class LinkSharingTests : TwoEngineTests
{
    [Fact]
    public async Task Creating_a_two_hop_tunnel_and_carrying_a_connection_leaves_one_link_to_the_first_server()
    {
        var c = await _engines.StartAsync();
        // Creating it asks the first server for the second's login parameters over a link to "qmt://host:port"; the
        // saved tunnel names that server "qmt://admin@host:port". Same server, same login: the same link.
        _a.NewTestTunnel(new TunnelProfile { Name = "chain", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b), EngineFixture.Hop(c)], Target = _echo.Uri });
        var listen = (await _a.StartTunnelAsync("chain")).BoundListen!;
        Assert.Equal(new byte[] { 3 }, await SocketTestExtensions.EchoAsync(listen, [3]));

        Assert.Single(_a.OutboundLinks());
    }
}

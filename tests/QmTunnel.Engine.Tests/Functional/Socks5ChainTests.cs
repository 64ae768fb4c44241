using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// A socks5:// tunnel through two servers (A -> B -> C): the creation's Check and the Hold of a permanent tunnel carry
/// no target and pass the gateway B; each connection's target is checked at B and at C.
/// </summary>
public sealed class Socks5ChainTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
        _c = await _engines.StartAsync();
        // B lets the tunnel through to anything; C only to the echo server
        _c.NewGroup("Socks", GroupRights.CreateTunnels, [$"L#*:*#*#127.0.0.1:{_echo.Port}"]);
        _c.NewUser("socks", "Socks", "socks-password");
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task A_permanent_socks5_tunnel_through_a_gateway_holds_its_chain_and_each_target_is_checked_at_the_last_server()
    {
        await _a.NewTunnelAsync(new TunnelProfile
        {
            Name = "chain",
            Listen = "socks5://127.0.0.1:0",
            Via = [EngineFixture.TlsHop(_b), EngineFixture.TlsHop(_c)], // TLS: C's login travels through B
            Target = string.Empty,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            Mode = TunnelMode.Permanent,
        }, [EngineFixture.AdminLogin, new HopLogin("socks", "socks-password")]);
        var bound = (await _a.StartTunnelAsync("chain")).BoundListen!;
        var port = int.Parse(bound[(bound.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(await Poll.UntilAsync(() => _a.GetTunnel("chain").State == TunnelState.Established), _a.GetTunnel("chain").LastError);

        var (s, reply) = await Socks5Client.ConnectAsync(port, "127.0.0.1", _echo.Port);
        using (s)
        {
            Assert.Equal(0, reply);
            var payload = System.Security.Cryptography.RandomNumberGenerator.GetBytes(100_000);
            var reading = Socks5Client.ReadUntilClosedAsync(s);
            await s.SendAllAsync(payload);
            s.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            Assert.Equal(payload, await reading);
        }
        var accepted = _echo.Accepted;
        Assert.Equal(2, await Socks5Client.ReplyAsync(port, "localhost", _echo.Port));
        Assert.Equal(accepted, _echo.Accepted);
        Assert.True(await Poll.UntilAsync(() => _a.GetTunnel("chain").LastError is not null));
        Assert.Contains("allow-rules of group 'Socks'", _a.GetTunnel("chain").LastError, StringComparison.Ordinal);
    }
}

using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// The fault proxy between two engines (A's link to B goes through it), as the link-resume tests use it: a template,
/// and proof that what these tests break is the link. What is asserted holds with or without link resume.
/// </summary>
public sealed class FaultProxyTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!;
    private FaultProxy _proxy = null!;
    private string _listen = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        var b = await _engines.StartAsync();
        _proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, b.Port));
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "faulty",
            Listen = "tcp://127.0.0.1:0",
            Via = [$"qmt+plain://127.0.0.1:{_proxy.EndPoint.Port}"],
            Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        _listen = (await _a.StartTunnelAsync("faulty")).BoundListen!;
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _proxy.DisposeAsync();
        await _echo.DisposeAsync();
    }

    /// <summary>Echoes through the tunnel until it works (10 s): a fault's effects on the link take a moment to settle.</summary>
    private async Task EchoesAgainAsync()
    {
        var payload = RandomNumberGenerator.GetBytes(100_000);
        var deadline = Environment.TickCount64 + 10_000;
        while (true)
        {
            try
            {
                Assert.Equal(payload, await SocketTestExtensions.EchoAsync(_listen, payload).WaitAsync(TimeSpan.FromSeconds(5)));
                return;
            }
            catch (Exception ex) when (ex is SocketException or TimeoutException or Xunit.Sdk.XunitException && Environment.TickCount64 < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task The_link_goes_through_the_proxy_and_the_tunnel_works_again_after_a_reset_cut()
    {
        Assert.Equal(new byte[] { 1, 2, 3 }, await SocketTestExtensions.EchoAsync(_listen, [1, 2, 3]));
        var linkConnections = _proxy.Accepted;
        Assert.True(linkConnections >= 1);
        Assert.True(_proxy.ToTarget.Forwarded > 3); // the link's frames, not just the bytes

        _proxy.Cut(CutMode.Reset);

        await EchoesAgainAsync();
        Assert.True(_proxy.Accepted > linkConnections, "no new TCP connection went through the proxy after the cut");
    }

    [Fact]
    public async Task The_tunnel_works_again_once_an_outage_of_the_first_hop_is_over()
    {
        Assert.Equal(new byte[] { 1 }, await SocketTestExtensions.EchoAsync(_listen, [1]));

        _proxy.Refuse(true);
        _proxy.Cut(CutMode.Reset);
        // A client during the outage makes A dial (or resume) the link, and the proxy turns it away.
        var during = SocketTestExtensions.EchoAsync(_listen, [2]);
        await TunnelTests.WaitUntil(() => _proxy.Refused >= 1);
        _proxy.Heal();

        await EchoesAgainAsync();
        await during.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(40)); // served or failed, whichever
    }
}

using System.Net;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// A udp:// tunnel whose link to B goes through the fault proxy: datagrams a client sends while the link is cut are
/// queued in the association's stream and delivered when the link session resumes (none lost, same association).
/// </summary>
public sealed class UdpResumeTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly UdpEchoServer _echo = new();
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
            Name = "resumed", Listen = "udp://127.0.0.1:0", Via = [$"qmt+plain://127.0.0.1:{_proxy.EndPoint.Port}"], Target = _echo.Uri,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        _listen = (await _a.StartTunnelAsync("resumed")).BoundListen!;
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _proxy.DisposeAsync();
        await _echo.DisposeAsync();
    }

    [Fact]
    public async Task Datagrams_sent_while_the_link_is_cut_arrive_after_it_resumes()
    {
        using var client = new UdpClientSocket(_listen);
        Assert.Equal("0"u8.ToArray(), await client.RoundTripAsync("0"u8.ToArray()));
        var accepted = _proxy.Accepted;

        _proxy.Refuse(true);
        _proxy.Cut(CutMode.Reset);
        await TunnelTests.WaitUntil(() => _a.GetTunnel("resumed").State == TunnelState.Resuming || _proxy.Refused >= 1);
        for (var i = 1; i <= 20; i++)
        {
            client.Send(System.Text.Encoding.ASCII.GetBytes("d" + i));
        }
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("resumed").DatagramsFromClients == 21); // in the stream, waiting for the link
        _proxy.Heal();

        var answers = new List<string>();
        for (var i = 1; i <= 20; i++)
        {
            var answer = await client.ReceiveAsync(30_000);
            Assert.NotNull(answer);
            answers.Add(System.Text.Encoding.ASCII.GetString(answer!));
        }
        Assert.Equal(Enumerable.Range(1, 20).Select(i => "d" + i), answers); // all, in order
        Assert.True(_proxy.Accepted > accepted, "the link came back on a new connection");
        Assert.Single(_echo.Senders); // the same association (the same socket at B) before and after the cut
        Assert.Equal(1, _a.GetTunnelStats("resumed").ConnectionsTotal);
        Assert.Equal(0, _a.GetTunnelStats("resumed").DatagramsDropped);
    }
}

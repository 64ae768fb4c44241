using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// The stream router runs on every link, dialed ones too: what the server at the far end of a link this server dialed
/// opens is answered (never left hanging) and refused, since that peer did not log in here.
/// </summary>
public sealed class StreamRouterTests : TwoEngineTests
{
    [Theory]
    [InlineData(StreamProtocol.Management)]
    [InlineData(StreamProtocol.Tcp)]
    [InlineData(StreamProtocol.Check)]
    public async Task A_stream_opened_back_on_a_link_this_server_dialed_is_refused_with_the_reason(StreamProtocol protocol)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = "t", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(_b)], Target = _echo.Uri });
        var listen = (await _a.StartTunnelAsync("t")).BoundListen!;
        Assert.Equal(new byte[] { 1 }, await SocketTestExtensions.EchoAsync(listen, [1]));
        // B's end of the link A dialed (and logged in to): B opens a stream toward A on it.
        var atB = _b.InboundLinks().First(l => l.User == "admin" && !l.IsClosed);
        var open = new OpenMessage(protocol, "t", protocol == StreamProtocol.Management ? "" : _echo.Uri, [], 1000, OpenOptions.None, "b")
        {
            Listen = protocol == StreamProtocol.Management ? "" : "127.0.0.1:1",
        };
        var stream = atB.OpenStream(open, new TrafficCounters(), 64 * 1024);

        Assert.False(await stream.Opened.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(ProtocolErrorCode.PermissionDenied, stream.ResetCode);
        Assert.Contains("was dialed by", stream.ResetReason, StringComparison.Ordinal);
        // The link goes on.
        Assert.Equal(new byte[] { 2 }, await SocketTestExtensions.EchoAsync(listen, [2]));
    }
}

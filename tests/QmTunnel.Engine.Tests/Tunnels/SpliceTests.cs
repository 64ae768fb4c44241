using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tunnels;

namespace QmTunnel.Engine.Tests.Tunnels;

/// <summary>
/// A gateway's splice between two real links on loopback (no engines): a sender on link 1, the gateway joining the
/// stream it receives to one it opens on link 2, a far end on link 2.
/// </summary>
public sealed class SpliceTests : IAsyncLifetime
{
    private const int InboundWindow = 1024 * 1024;
    private const int OnwardWindow = 256 * 1024;
    private const int Chunk = 64 * 1024;
    private readonly List<Link> _links = [];
    private readonly TaskCompletionSource<MuxStream> _far = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private Link _senderLink = null!;

    public async Task InitializeAsync()
    {
        var (sender, gatewayIn) = await PairAsync(new LinkOptions { InitialWindow = InboundWindow });
        var (gatewayOut, far) = await PairAsync(new LinkOptions { InitialWindow = OnwardWindow });
        _senderLink = sender;
        gatewayIn.StreamOpened = async (inbound, open) =>
        {
            // The gateway is busy until the sender's whole window has arrived (as a gateway short of CPU is): its first
            // read then holds the whole megabyte, more than the next hop takes.
            while (true)
            {
                var read = await inbound.Input.ReadAsync(_stop.Token);
                if (read.Buffer.Length >= InboundWindow)
                {
                    inbound.Input.AdvanceTo(read.Buffer.Start);
                    break;
                }
                inbound.Input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            }
            var onward = gatewayOut.OpenStream(open, new TrafficCounters(), OnwardWindow);
            await Splice.RunAsync(inbound, onward, Chunk, _stop.Token);
        };
        far.StreamOpened = (stream, _) =>
        {
            _far.TrySetResult(stream);
            return Task.Delay(Timeout.Infinite, _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        };
        foreach (var link in _links)
        {
            link.Start();
        }
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var link in _links)
        {
            await link.DisposeAsync();
        }
        _stop.Dispose();
    }

    private async Task<(Link Dialer, Link Acceptor)> PairAsync(LinkOptions options)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var connecting = client.ConnectAsync(listener.LocalEndPoint!);
        var server = await listener.AcceptAsync();
        await connecting;
        var accepting = Link.HandshakeAsAcceptorAsync(server, options, NullLogger.Instance, default);
        var dialer = await Link.HandshakeAsDialerAsync(client, options, NullLogger.Instance, default);
        var acceptor = await accepting;
        _links.Add(dialer);
        _links.Add(acceptor);
        return (dialer, acceptor);
    }

    [Fact]
    public async Task A_gateway_returns_credit_for_what_it_passed_on_while_the_next_hop_has_not_taken_the_rest()
    {
        var stream = _senderLink.OpenStream(new OpenMessage(StreamProtocol.Tcp, "splice", "tcp://127.0.0.1:1", ["qmt+plain://127.0.0.1:2"], 1000, OpenOptions.None, "test"),
            new TrafficCounters(), InboundWindow);
        // The sender puts its whole window (1 MiB) in flight; the far end reads nothing, so the gateway can pass on
        // only the next hop's window (256 KiB) and holds the rest.
        var sent = 0;
        while (sent < InboundWindow)
        {
            var credit = await stream.WaitForCreditAsync(Math.Min(Chunk, InboundWindow - sent), CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
            stream.SendData(buffer, credit);
            sent += credit;
        }
        var far = await _far.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // What went on to the next hop is credit the sender gets back at once: the next chunks are already on their
        // way to the gateway while the next hop drains. (Returning credit only when a whole read had been passed on
        // left the sender with none until the next hop had taken the whole megabyte: each hop of a chain waited for the next.)
        await Functional.TunnelTests.WaitUntil(() => stream.SendCredit >= OnwardWindow);
        Assert.Equal(OnwardWindow, stream.SendCredit);
        Assert.Equal(0, far.ReceiveCredit); // the far end holds exactly the next hop's window, no more
    }
}

using System.IO.Pipelines;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// A written numbered frame belongs to the retained queue: once the peer's Ack returned its buffer to the pool, the
/// writer must not look at that buffer again, even when the Ack came back before the write call did (a fast peer on
/// loopback, a busy thread pool). The pool may have given the buffer to someone else by then.
/// </summary>
public sealed class RetainedBufferTests
{
    private readonly FakeTimeProvider _clock = new();

    /// <summary>
    /// A connection whose writes return only after the frames they carried were acknowledged, and which then does what
    /// the pool's next renter of those buffers would: it writes another frame's header into them (a Ping).
    /// </summary>
    private sealed class AckBeforeWriteReturnsTransport(MemoryLinkTransport inner, Link link, TimeProvider time) : LinkTransport(time)
    {
        public int Reused;

        public override PipeReader Input => inner.Input;
        public override string RemoteEndPoint => inner.RemoteEndPoint;

        public override async ValueTask WriteAsync(List<ArraySegment<byte>> segments, int total)
        {
            var numbered = segments.Where(s => FrameCodec.IsNumbered((FrameType)s.Array![s.Offset])).ToList();
            await inner.WriteAsync(segments, total);
            if (numbered.Count == 0)
            {
                return;
            }
            var deadline = Environment.TickCount64 + 1_000; // a frame nothing answers is acknowledged at a heartbeat tick only
            while (link.RetainedFrames > 0 && Environment.TickCount64 < deadline)
            {
                await Task.Delay(1);
            }
            if (link.RetainedFrames == 0)
            {
                foreach (var segment in numbered)
                {
                    segment.Array![segment.Offset] = (byte)FrameType.Ping; // the buffer's next owner at work
                    Reused++;
                }
            }
        }

        protected override void Close() => inner.Abort();
    }

    [Fact]
    public async Task A_frame_acknowledged_before_its_write_returned_is_not_released_twice()
    {
        var echoed = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var pair = MemoryLinkPair.Start(LinkSessionSettings.Default, new LinkOptions { Time = _clock }, acceptorStreams: async (stream, open) =>
        {
            var bytes = await stream.ReadToEndAsync(1024, default);
            await stream.SendAsync(bytes, default); // the batch that carries this also carries the Ack of the dialer's frames
            stream.SendFin();
            echoed.TrySetResult(bytes);
        });
        // Carry the session on on a connection whose writes return late, as a resume would.
        pair.DialerEnd.Cut();
        await TunnelTests.WaitUntil(() => pair.Dialer.State == LinkState.Resuming && pair.Acceptor.State == LinkState.Resuming);
        var (dialerEnd, acceptorEnd) = MemoryLinkTransport.CreatePair(_clock);
        var offer = LinkSessionOffer.Create();
        var slow = new AckBeforeWriteReturnsTransport(dialerEnd, pair.Dialer, _clock);
        var accepting = Link.AcceptResumeAsync(acceptorEnd, MemoryLinkPair.User, offer, pair.Sessions, NullLogger.Instance, default);
        await pair.Dialer.ResumeOnAsync(slow, offer.Nonce, default).WaitAsync(TimeSpan.FromSeconds(10));
        await accepting.WaitAsync(TimeSpan.FromSeconds(10));

        var stream = pair.Dialer.OpenStream(new OpenMessage(StreamProtocol.Tcp, "t", "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test"), new TrafficCounters(), 0);
        await stream.SendAsync(new byte[] { 1, 2, 3 }, default);
        stream.SendFin();
        Assert.Equal(new byte[] { 1, 2, 3 }, await echoed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(new byte[] { 1, 2, 3 }, await stream.ReadToEndAsync(1024, default).WaitAsync(TimeSpan.FromSeconds(10)));

        // Heartbeat ticks acknowledge what is left; then nothing is queued, and nothing was taken off the count twice.
        for (var i = 0; i < 20 && (pair.Dialer.RetainedFrames > 0 || pair.Acceptor.RetainedFrames > 0 || pair.Dialer.QueuedBytes > 0); i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
        }
        Assert.True(slow.Reused > 0, "no frame was acknowledged before its write returned: the test proves nothing");
        Assert.Equal(0, pair.Dialer.RetainedFrames);
        Assert.Equal(0, pair.Dialer.QueuedBytes);
    }
}

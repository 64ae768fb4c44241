using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// The link session's rules one at a time, over a <see cref="MemoryLinkPair"/> and a fake clock (docs/protocol.md,
/// "Session resume", "Heartbeats", "Flow control"): Acks and resume counts that cannot be right, the failure tolerance,
/// heartbeats and the receive timeout, the send queue's bound while no connection carries the session.
/// </summary>
public sealed class SessionTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _clock = new();
    private readonly List<MemoryLinkPair> _pairs = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var pair in _pairs)
        {
            await pair.DisposeAsync();
        }
    }

    private MemoryLinkPair Start(LinkSessionSettings? session = null, LinkOptions? options = null, Func<MuxStream, OpenMessage, Task>? acceptorStreams = null)
    {
        var pair = MemoryLinkPair.Start(session ?? LinkSessionSettings.Default, options ?? new LinkOptions { Time = _clock }, acceptorStreams: acceptorStreams ?? EchoAsync);
        _pairs.Add(pair);
        return pair;
    }

    private static OpenMessage Open(string name) => new(StreamProtocol.Tcp, name, "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test");

    /// <summary>The acceptor's handler: OpenAck, then everything read is sent back, then Fin.</summary>
    private static async Task EchoAsync(MuxStream stream, OpenMessage open)
    {
        stream.SendOpenAck();
        try
        {
            while (true)
            {
                var result = await stream.Input.ReadAsync();
                var bytes = result.Buffer.ToArray();
                stream.Input.AdvanceTo(result.Buffer.End);
                stream.Consumed(bytes.Length);
                if (bytes.Length > 0)
                {
                    await stream.SendAsync(bytes, default);
                }
                if (result.IsCompleted)
                {
                    stream.SendFin();
                    return;
                }
            }
        }
        catch (StreamResetException)
        {
            // the session ended under it
        }
    }

    private static byte[] Frame(FrameType type, ReadOnlySpan<byte> payload)
    {
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(type, FrameFlags.None, 0, payload.Length).Write(bytes);
        payload.CopyTo(bytes.AsSpan(FrameHeader.Size));
        return bytes;
    }

    private static ValueTask WriteAsync(LinkTransport end, byte[] bytes) => end.WriteAsync([new ArraySegment<byte>(bytes)], bytes.Length);

    /// <summary>Advances the fake clock in steps, letting the loops run between them, until <paramref name="done"/> or the total.</summary>
    private async Task AdvanceAsync(TimeSpan total, TimeSpan step, Func<bool>? done = null)
    {
        for (var t = TimeSpan.Zero; t < total && done?.Invoke() != true; t += step)
        {
            _clock.Advance(step);
            await Task.Delay(5);
        }
    }

    /// <summary>A stream from the dialer that echoed <paramref name="bytes"/>; returns once they are back and every frame either way is acknowledged.</summary>
    private async Task<MuxStream> EchoedAsync(MemoryLinkPair pair, int bytes)
    {
        var stream = pair.Dialer.OpenStream(Open("echo"), new TrafficCounters(), 0);
        await stream.SendAsync(new byte[bytes], default);
        var received = 0;
        while (received < bytes)
        {
            var result = await stream.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            received += (int)result.Buffer.Length;
            stream.Input.AdvanceTo(result.Buffer.End);
        }
        await AdvanceAsync(TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(500), () => pair.Dialer.RetainedFrames == 0 && pair.Acceptor.RetainedFrames == 0);
        Assert.Equal(0, pair.Dialer.RetainedFrames);
        Assert.Equal(0, pair.Acceptor.RetainedFrames);
        return stream;
    }

    [Fact]
    public async Task An_ack_above_what_was_sent_is_a_protocol_error_that_ends_the_session()
    {
        var pair = Start();
        ProtocolException? seen = null;
        pair.Dialer.ProtocolError += ex => seen = ex;
        await EchoedAsync(pair, 100); // the dialer sent Open and one Data: 2 numbered frames

        var count = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(count, 3);
        await WriteAsync(pair.AcceptorEnd, Frame(FrameType.Ack, count));

        await pair.Dialer.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ProtocolErrorCode.StreamStateError, seen?.Code);
        Assert.Contains("acknowledged 3 frames; 2 were sent", pair.Dialer.CloseReason, StringComparison.Ordinal);
        await pair.Acceptor.Completion.WaitAsync(TimeSpan.FromSeconds(10)); // told by the GoAway
    }

    [Theory]
    [InlineData(false)] // a FIN: the rest of the frame never comes, the stream ends inside it
    [InlineData(true)] // an RST
    public async Task A_connection_cut_in_the_middle_of_a_frame_is_lost_not_the_session_and_the_frame_is_sent_again(bool reset)
    {
        var how = reset ? MemoryCut.Reset : MemoryCut.Close;
        var pair = Start();
        var stream = await EchoedAsync(pair, 10);
        var payload = RandomNumberGenerator.GetBytes(1000);
        var before = pair.DialerEnd.BytesWritten + pair.AcceptorEnd.BytesWritten;
        pair.DialerEnd.CutAfter(FrameHeader.Size + 8, how); // 8 bytes into the next Data frame's payload

        await stream.SendAsync(payload, default);
        await TunnelTests.WaitUntil(() => pair.Dialer.State == LinkState.Resuming && pair.Acceptor.State == LinkState.Resuming);
        Assert.Equal(FrameHeader.Size + 8, pair.DialerEnd.BytesWritten + pair.AcceptorEnd.BytesWritten - before);
        await pair.ResumeAsync().WaitAsync(TimeSpan.FromSeconds(10));

        var echoed = new MemoryStream();
        while (echoed.Length < payload.Length)
        {
            var result = await stream.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            foreach (var segment in result.Buffer)
            {
                echoed.Write(segment.Span);
            }
            stream.Input.AdvanceTo(result.Buffer.End);
        }
        Assert.Equal(payload, echoed.ToArray());
        Assert.False(pair.Acceptor.IsClosed, pair.Acceptor.CloseReason);
        Assert.Equal(1, pair.Acceptor.Resumes);
    }

    [Theory]
    [InlineData(-1)] // below what the acceptor knows was acknowledged
    [InlineData(+1)] // above what the acceptor sent
    public async Task The_acceptor_refuses_a_resume_whose_count_cannot_be_right_and_the_session_can_still_resume(int offset)
    {
        var pair = Start();
        var stream = await EchoedAsync(pair, 100); // the acceptor sent OpenAck and one Data, both acknowledged: 2
        var session = pair.Acceptor.Session;

        var (dialerEnd, acceptorEnd) = MemoryLinkTransport.CreatePair(_clock);
        var offer = LinkSessionOffer.Create();
        var accepting = Link.AcceptResumeAsync(acceptorEnd, MemoryLinkPair.User, offer, pair.Sessions, NullLogger.Instance, default);
        var resume = new ResumeMessage(session.Id, LinkSessionOffer.Proof(session.Secret, offer.Nonce, session.Id), (ulong)(2 + offset));
        await WriteAsync(dialerEnd, Frame(FrameType.Resume, ControlCodec.ToArray(resume)));

        var refused = await Assert.ThrowsAsync<ProtocolException>(() => accepting.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(ProtocolErrorCode.StreamStateError, refused.Code);
        Assert.Contains($"received {2 + offset} frames; 2 were acknowledged and 2 sent", refused.Message, StringComparison.Ordinal);
        Assert.True(acceptorEnd.IsAborted);
        Assert.Equal(LinkState.Resuming, pair.Acceptor.State); // its connection was evicted for the resume, none attached

        // A right resume still carries the session on, the stream with it.
        await pair.ResumeAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await stream.SendAsync(new byte[] { 42 }, default);
        var result = await stream.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new byte[] { 42 }, result.Buffer.ToArray());
    }

    [Theory]
    [InlineData(-1)] // below what the dialer knows was acknowledged
    [InlineData(+1)] // above what the dialer sent
    public async Task The_dialer_refuses_a_resumed_whose_count_cannot_be_right(int offset)
    {
        var pair = Start();
        await EchoedAsync(pair, 100); // the dialer sent Open and one Data, both acknowledged: 2
        pair.DialerEnd.Cut();
        await AdvanceAsync(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(100), () => pair.Dialer.State == LinkState.Resuming);

        var (dialerEnd, acceptorEnd) = MemoryLinkTransport.CreatePair(_clock);
        var resuming = pair.Dialer.ResumeOnAsync(dialerEnd, LinkSessionOffer.Create().Nonce, default);
        var count = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(count, (ulong)(2 + offset));
        await WriteAsync(acceptorEnd, Frame(FrameType.Resumed, count));

        var refused = await Assert.ThrowsAsync<ProtocolException>(() => resuming.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(ProtocolErrorCode.StreamStateError, refused.Code);
        Assert.Equal(LinkState.Resuming, pair.Dialer.State);
    }

    [Fact]
    public async Task A_session_whose_connection_does_not_come_back_within_the_failure_tolerance_resets_every_stream_with_LinkSessionExpired()
    {
        var pair = Start(LinkSessionSettings.Default with { FailureTolerance = TimeSpan.FromSeconds(30) });
        var first = await EchoedAsync(pair, 10);
        var second = pair.Dialer.OpenStream(Open("second"), new TrafficCounters(), 0);
        await AdvanceAsync(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(100), () => pair.Acceptor.StreamCount == 2);

        pair.AcceptorEnd.Cut();
        await AdvanceAsync(TimeSpan.FromSeconds(29), TimeSpan.FromSeconds(1));
        Assert.Equal(LinkState.Resuming, pair.Dialer.State);
        Assert.Equal(LinkState.Resuming, pair.Acceptor.State);
        Assert.False(first.IsReset);

        await AdvanceAsync(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1));
        await pair.Dialer.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        await pair.Acceptor.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        foreach (var stream in new[] { first, second })
        {
            Assert.True(stream.IsReset);
            Assert.Equal(ProtocolErrorCode.LinkSessionExpired, stream.ResetCode);
            var read = await Assert.ThrowsAsync<StreamResetException>(async () => await stream.Input.ReadAsync());
            Assert.Equal(ProtocolErrorCode.LinkSessionExpired, read.Code);
        }
        Assert.Contains("failure tolerance of 30 s", pair.Dialer.CloseReason, StringComparison.Ordinal);
        Assert.Equal(0, pair.Dialer.StreamCount);
        Assert.Equal(0, pair.Acceptor.StreamCount);
        await TunnelTests.WaitUntil(() => pair.Sessions.Count == 0 && pair.Dialer.QueuedBytes == 0 && pair.Acceptor.QueuedBytes == 0);
    }

    /// <summary>Waits until the Pings each side sent when it started were answered (all at fake time 0).</summary>
    private static Task StartedAsync(MemoryLinkPair pair) =>
        TunnelTests.WaitUntil(() => pair.DialerEnd.FramesWritten(FrameType.Pong) == 1 && pair.AcceptorEnd.FramesWritten(FrameType.Pong) == 1);

    [Fact]
    public async Task A_quiet_live_connection_carries_a_ping_each_heartbeat_interval_and_is_not_lost()
    {
        var pair = Start(); // heartbeat 10 s, receive timeout 15 s
        await StartedAsync(pair);

        await AdvanceAsync(TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(500));

        foreach (var end in new[] { pair.DialerEnd, pair.AcceptorEnd })
        {
            Assert.InRange(end.FramesWritten(FrameType.Ping), 1 + 6, 1 + 6); // the first at the start, then one each 10 s
        }
        Assert.Equal(LinkState.Up, pair.Dialer.State);
        Assert.Equal(LinkState.Up, pair.Acceptor.State);
        Assert.Equal(0, pair.Dialer.TransportsLost + pair.Acceptor.TransportsLost);
    }

    [Fact]
    public async Task A_black_hole_is_found_by_the_receive_timeout_and_after_the_resume_pings_keep_the_quiet_connection_alive()
    {
        var pair = Start(); // heartbeat 10 s, receive timeout 15 s
        await StartedAsync(pair);
        pair.DialerEnd.BlackHole();

        await AdvanceAsync(TimeSpan.FromSeconds(14.5), TimeSpan.FromMilliseconds(500));
        Assert.Equal(LinkState.Up, pair.Dialer.State);
        Assert.Equal(LinkState.Up, pair.Acceptor.State);
        await AdvanceAsync(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(500));
        await TunnelTests.WaitUntil(() => pair.Dialer.State == LinkState.Resuming && pair.Acceptor.State == LinkState.Resuming);
        Assert.Equal(2, pair.DialerEnd.FramesWritten(FrameType.Ping)); // the one at 10 s went into the hole, unanswered

        // Pings lost with a connection are not waited for: the new one carries a Ping each interval, and nothing is lost.
        await pair.ResumeAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await AdvanceAsync(TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(500));
        Assert.Equal(1, pair.Dialer.TransportsLost);
        Assert.Equal(1, pair.Acceptor.TransportsLost);
        Assert.Equal(LinkState.Up, pair.Dialer.State);
        // One each interval, checked on ticks of a quarter interval: 60 s hold 4 (every 12.5 s) to 7.
        Assert.InRange(pair.DialerEnd.FramesWritten(FrameType.Ping), 4, 7);
        Assert.InRange(pair.AcceptorEnd.FramesWritten(FrameType.Ping), 4, 7);
    }

    [Fact]
    public async Task While_no_connection_carries_the_session_data_senders_wait_within_the_queue_bound_then_everything_arrives()
    {
        const int streams = 4, perStream = 256 * 1024;
        var options = new LinkOptions { Time = _clock, MaxQueuedBytes = 64 * 1024, QueueSlackBytes = 16 * 1024, InitialWindow = 4 * 1024 * 1024 };
        var received = new ConcurrentDictionary<string, byte[]>();
        var pair = Start(options: options, acceptorStreams: async (stream, open) => received[open.Tunnel] = await stream.ReadToEndAsync(perStream, default));
        await StartedAsync(pair);
        pair.DialerEnd.Cut();
        await TunnelTests.WaitUntil(() => pair.Dialer.State == LinkState.Resuming && pair.Acceptor.State == LinkState.Resuming);

        var payloads = Enumerable.Range(0, streams).Select(_ => RandomNumberGenerator.GetBytes(perStream)).ToArray();
        var senders = payloads.Select((payload, i) => Task.Run(async () =>
        {
            var stream = pair.Dialer.OpenStream(Open($"s{i}"), new TrafficCounters(), 0);
            await stream.SendAsync(payload, default);
            stream.SendFin();
        })).ToArray();
        await TunnelTests.WaitUntil(() => pair.Dialer.QueuedBytes > options.MaxQueuedBytes - 17 * 1024);
        await Task.Delay(100); // senders that would overrun the bound have had time to
        Assert.DoesNotContain(senders, s => s.IsCompleted);
        Assert.InRange(pair.Dialer.QueuedBytesPeak, options.MaxQueuedBytes - 17 * 1024, options.MaxQueuedBytes + 1024);

        await pair.ResumeAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await AdvanceAsync(TimeSpan.FromMinutes(10), TimeSpan.FromMilliseconds(250), () => received.Count == streams);
        await Task.WhenAll(senders).WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < streams; i++)
        {
            Assert.Equal(payloads[i], received[$"s{i}"]);
        }
        Assert.InRange(pair.Dialer.QueuedBytesPeak, 0, options.MaxQueuedBytes + options.QueueSlackBytes);
        await AdvanceAsync(TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(250), () => pair.Dialer.RetainedFrames == 0 && pair.Dialer.QueuedBytes == 0);
        Assert.Equal(0, pair.Dialer.RetainedFrames);
        Assert.Equal(0, pair.Dialer.QueuedBytes);
    }
}

using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Tests.Links;
using QmTunnel.Engine.Tunnels;

namespace QmTunnel.Engine.Tests.Tunnels;

/// <summary>
/// The owner's side of a link query against a hostile gateway: a real link whose far end answers LinkInfo streams with
/// whatever the test writes. Every answer that is not one good record gives an Unknown hop with the reason, never an
/// exception, and the owner stops waiting when told to.
/// </summary>
public sealed class HopQueryTests : IAsyncLifetime
{
    private static readonly string[] Servers = ["qmt://b.example:9200", "qmt://c.example:9200"];
    private Link _owner = null!, _gateway = null!;
    private Func<MuxStream, Task> _answer = _ => Task.CompletedTask;
    private readonly TaskCompletionSource<OpenMessage> _asked = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task InitializeAsync()
    {
        var (client, server) = await SendQueueTests.ConnectedPairAsync();
        var accepting = Link.HandshakeAsAcceptorAsync(server, new LinkOptions(), NullLogger.Instance, default);
        _owner = await Link.HandshakeAsDialerAsync(client, new LinkOptions(), NullLogger.Instance, default);
        _gateway = await accepting;
        _gateway.StreamOpened = async (stream, open) =>
        {
            _asked.TrySetResult(open);
            await _answer(stream);
        };
        _owner.Start();
        _gateway.Start();
    }

    public async Task DisposeAsync()
    {
        await _owner.DisposeAsync();
        await _gateway.DisposeAsync();
    }

    private static OpenMessage Query => new(StreamProtocol.LinkInfo, "t", "tcp://127.0.0.1:1", ["qmt://c.example:9200"], 5000, OpenOptions.None, "hop query");

    private Task<(int Hop, TunnelHopStats Stats, TimeSpan? RoundTrip)> AskAsync(CancellationToken cancellationToken = default) =>
        HopQuery.AskAsync(_owner, Query, 2, Servers, TimeProvider.System, TimeSpan.FromSeconds(2), cancellationToken).WaitAsync(TimeSpan.FromSeconds(20));

    private static Func<MuxStream, Task> Answers(byte[] payload) => async stream =>
    {
        stream.SendOpenAck();
        await stream.SendAsync(payload, CancellationToken.None);
        stream.SendFin();
    };

    private static byte[] Good => new LinkInfoRecord(0, LinkInfoState.Up, TimeSpan.FromMilliseconds(1.5), 2, 1, 1000, 2000).ToBytes();

    private static byte[] With(int index, byte value)
    {
        var bytes = Good;
        bytes[index] = value;
        return bytes;
    }

    public static TheoryData<string, byte[], string> Hostile => new()
    {
        { "empty", [], "empty" },
        { "one byte", [LinkInfoRecord.Version], "has 1 bytes" },
        { "one byte short", Good[..^1], $"has {LinkInfoRecord.Size - 1} bytes" },
        { "one byte long", [.. Good, 0], $"has {LinkInfoRecord.Size + 1} bytes" },
        { "another format", With(0, 1), "format 1" },
        { "no such state", With(2, 9), "link state 9" },
        { "text", "HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray(), "format 72" },
        { "longer than any answer", new byte[LinkInfoRecord.MaxAnswerBytes + 1], "longer than" },
        { "stopped further back than it went", With(1, 5), "cannot be" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task A_malformed_answer_gives_an_unknown_hop_that_says_what_was_wrong(string what, byte[] answer, string said)
    {
        _answer = Answers(answer);

        var (hop, stats, roundTrip) = await AskAsync();

        Assert.Equal(2, hop);
        Assert.True(stats.State == TunnelHopState.Unknown, $"{what}: {stats.State}");
        Assert.Contains(said, stats.Detail);
        Assert.Equal("qmt://c.example:9200", stats.Server);
        Assert.Null(stats.Latency);
        Assert.Null(stats.LinkBytesSent);
        Assert.Null(roundTrip);
    }

    [Fact]
    public async Task Random_answers_never_throw_and_give_unknown_unless_they_are_a_record()
    {
        var random = new Random(8);
        for (var i = 0; i < 50; i++)
        {
            var answer = new byte[random.Next(0, 80)];
            random.NextBytes(answer);
            _answer = Answers(answer);
            var (_, stats, _) = await AskAsync();
            var isRecord = LinkInfoRecord.TryParse(answer, out var record, out _) && record.Remaining == 0;
            Assert.True(isRecord || stats.State == TunnelHopState.Unknown, $"{Convert.ToHexString(answer)} gave {stats.State}");
        }
    }

    [Fact]
    public async Task A_good_record_gives_the_hop_it_describes_and_the_round_trip()
    {
        _answer = Answers(Good);

        var (_, stats, roundTrip) = await AskAsync();

        Assert.Equal(TunnelHopState.Up, stats.State);
        Assert.Equal(TimeSpan.FromMilliseconds(1.5), stats.Latency);
        Assert.Equal(2, stats.Reconnects);
        Assert.Equal(1, stats.Resumes);
        Assert.Equal(1000, stats.LinkBytesSent);
        Assert.Equal(2000, stats.LinkBytesReceived);
        Assert.NotNull(roundTrip);
        Assert.Equal(StreamProtocol.LinkInfo, (await _asked.Task).Protocol);
    }

    [Fact]
    public async Task A_refusal_gives_an_unknown_hop_with_the_gateways_reason()
    {
        _answer = stream =>
        {
            stream.Reset(ProtocolErrorCode.PermissionDenied, "b.example: user 'x' (group 'G') lacks the right CreateTunnels");
            return Task.CompletedTask;
        };

        var (_, stats, _) = await AskAsync();

        Assert.Equal(TunnelHopState.Unknown, stats.State);
        Assert.StartsWith("refused by b.example:", stats.Detail);
    }

    [Fact]
    public async Task A_gateway_that_never_answers_is_given_up_when_the_wait_ends()
    {
        _answer = stream =>
        {
            stream.SendOpenAck(); // and then nothing, ever
            return Task.CompletedTask;
        };
        using var wait = new CancellationTokenSource();
        var asking = AskAsync(wait.Token);
        await _asked.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(asking.IsCompleted);

        wait.Cancel();
        var (_, stats, _) = await asking;

        Assert.Equal(TunnelHopState.Unknown, stats.State);
        Assert.Equal("no answer within 2 s", stats.Detail);
    }
}

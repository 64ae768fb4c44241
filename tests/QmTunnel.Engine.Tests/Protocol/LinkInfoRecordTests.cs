using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Protocol;

/// <summary>The answer to a link query: its documented layout, round trips, and every malformed length refused without an exception.</summary>
public sealed class LinkInfoRecordTests
{
    [Fact]
    public void A_record_has_the_documented_layout()
    {
        var bytes = new LinkInfoRecord(3, LinkInfoState.Resuming, TimeSpan.FromMicroseconds(0x0102), 4, 5, 0x0607, 8)
        {
            Compression = QmTunnel.Engine.Links.CompressionAlgorithm.Zstd, DataBytesSent = 9, DataWireBytesSent = 10, DataBytesReceived = 11, DataWireBytesReceived = 12,
        }.ToBytes();

        Assert.Equal(
            new byte[]
            {
                2, 3, 2, 0, 0, 1, 2,
                0, 0, 0, 0, 0, 0, 0, 4,
                0, 0, 0, 0, 0, 0, 0, 5,
                0, 0, 0, 0, 0, 0, 6, 7,
                0, 0, 0, 0, 0, 0, 0, 8,
                2,
                0, 0, 0, 0, 0, 0, 0, 9,
                0, 0, 0, 0, 0, 0, 0, 10,
                0, 0, 0, 0, 0, 0, 0, 11,
                0, 0, 0, 0, 0, 0, 0, 12,
            },
            bytes);
        Assert.Equal(LinkInfoRecord.Size, bytes.Length);
    }

    [Theory]
    [InlineData(LinkInfoState.Up, 1234L)]
    [InlineData(LinkInfoState.Resuming, 0L)]
    [InlineData(LinkInfoState.Down, null)]
    public void A_record_round_trips(LinkInfoState state, long? microseconds)
    {
        var record = new LinkInfoRecord(0, state, microseconds is { } us ? TimeSpan.FromMicroseconds(us) : null, 1, 2, long.MaxValue, 0)
        {
            Compression = QmTunnel.Engine.Links.CompressionAlgorithm.Lz4, DataBytesSent = 1000, DataWireBytesSent = 250, DataBytesReceived = long.MaxValue, DataWireBytesReceived = 3,
        };

        Assert.True(LinkInfoRecord.TryParse(record.ToBytes(), out var read, out var problem));
        Assert.Null(problem);
        Assert.Equal(record, read);
    }

    [Fact]
    public void Values_out_of_range_are_written_within_it_and_read_capped()
    {
        var record = new LinkInfoRecord(0, LinkInfoState.Up, TimeSpan.FromDays(1), -1, -5, 7, 9);
        Assert.True(LinkInfoRecord.TryParse(record.ToBytes(), out var read, out _));
        Assert.Equal(0, read.TransportsLost);
        Assert.Equal(0, read.Resumes);
        Assert.True(read.RoundTrip < TimeSpan.FromHours(2), $"{read.RoundTrip}");

        var huge = record.ToBytes();
        huge.AsSpan(7, 8).Fill(0xFF);
        Assert.True(LinkInfoRecord.TryParse(huge, out read, out _));
        Assert.Equal(long.MaxValue, read.TransportsLost);
    }

    [Fact]
    public void An_answer_naming_a_compression_that_is_not_one_is_refused()
    {
        var bytes = new LinkInfoRecord(0, LinkInfoState.Up, null, 0, 0, 0, 0).ToBytes();
        bytes[39] = 3;
        Assert.False(LinkInfoRecord.TryParse(bytes, out _, out var problem));
        Assert.Contains("compression 3", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_shorter_or_longer_answer_is_refused_with_a_reason_and_no_exception()
    {
        var good = new LinkInfoRecord(0, LinkInfoState.Up, TimeSpan.FromMilliseconds(1), 0, 0, 0, 0).ToBytes();
        for (var length = 0; length <= LinkInfoRecord.MaxAnswerBytes; length++)
        {
            if (length == LinkInfoRecord.Size)
            {
                continue;
            }
            var bytes = new byte[length];
            good.AsSpan(0, Math.Min(length, good.Length)).CopyTo(bytes);
            Assert.False(LinkInfoRecord.TryParse(bytes, out _, out var problem), $"{length} bytes");
            Assert.False(string.IsNullOrEmpty(problem));
        }
    }
}

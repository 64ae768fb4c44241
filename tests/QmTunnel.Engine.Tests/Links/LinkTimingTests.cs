using QmTunnel.Engine.Links;
using Xunit;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>The per-hop link timing: defaults, the ranges Validate names, the reconnect backoff with its jitter, durations as text.</summary>
public sealed class LinkTimingTests
{
    private static TimeSpan Ms(double ms) => TimeSpan.FromMilliseconds(ms);

    [Fact]
    public void The_defaults_are_the_original_qmTunnels_and_valid()
    {
        var d = LinkTiming.Default;
        Assert.Equal(TimeSpan.FromSeconds(10), d.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(15), d.ReceiveTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), d.ConnectTimeout);
        Assert.Equal(Ms(100), d.ReconnectInterval);
        Assert.Equal(1.5, d.ReconnectMultiplier);
        Assert.Equal(TimeSpan.FromSeconds(10), d.MaxReconnectInterval);
        Assert.Empty(d.Validate());
        Assert.Equal(new LinkTiming(), d);
    }

    public static TheoryData<LinkTiming> ValidEdges => new()
    {
        new LinkTiming { HeartbeatInterval = TimeSpan.Zero },
        new LinkTiming { ReceiveTimeout = TimeSpan.Zero },
        new LinkTiming { HeartbeatInterval = TimeSpan.Zero, ReceiveTimeout = TimeSpan.Zero },
        new LinkTiming { HeartbeatInterval = Ms(100), ReceiveTimeout = Ms(101) },
        new LinkTiming { HeartbeatInterval = TimeSpan.Zero, ReceiveTimeout = Ms(100) },
        new LinkTiming { HeartbeatInterval = TimeSpan.FromHours(1), ReceiveTimeout = TimeSpan.Zero },
        new LinkTiming { HeartbeatInterval = TimeSpan.FromMinutes(59), ReceiveTimeout = TimeSpan.FromHours(1) },
        new LinkTiming { ConnectTimeout = Ms(100) },
        new LinkTiming { ConnectTimeout = TimeSpan.FromMinutes(5) },
        new LinkTiming { ReconnectInterval = Ms(10), MaxReconnectInterval = Ms(10) },
        new LinkTiming { ReconnectInterval = TimeSpan.FromMinutes(1), MaxReconnectInterval = TimeSpan.FromMinutes(1) },
        new LinkTiming { ReconnectMultiplier = 1.0 },
        new LinkTiming { ReconnectMultiplier = 10.0 },
        new LinkTiming { MaxReconnectInterval = TimeSpan.FromHours(1) },
    };

    [Theory]
    [MemberData(nameof(ValidEdges))]
    public void Values_at_the_edges_of_their_ranges_are_valid(LinkTiming timing)
    {
        Assert.Empty(timing.Validate());
    }

    public static TheoryData<LinkTiming, string, string> InvalidOnes => new()
    {
        { new LinkTiming { HeartbeatInterval = Ms(99) }, "HeartbeatInterval 99ms is out of range", "give 0 (off) or 100ms to 1h" },
        { new LinkTiming { HeartbeatInterval = TimeSpan.FromMinutes(61), ReceiveTimeout = TimeSpan.Zero }, "HeartbeatInterval 61m is out of range", "100ms to 1h" },
        { new LinkTiming { HeartbeatInterval = Ms(-1) }, "HeartbeatInterval", "out of range" },
        { new LinkTiming { ReceiveTimeout = Ms(50), HeartbeatInterval = TimeSpan.Zero }, "ReceiveTimeout 50ms is out of range", "0 (off) or 100ms to 1h" },
        { new LinkTiming { ReceiveTimeout = TimeSpan.FromHours(2) }, "ReceiveTimeout 2h is out of range", "100ms to 1h" },
        { new LinkTiming { ReceiveTimeout = TimeSpan.FromSeconds(10) }, "ReceiveTimeout 10s is not longer than HeartbeatInterval 10s", "longer than the heartbeat interval" },
        { new LinkTiming { ReceiveTimeout = TimeSpan.FromSeconds(5) }, "ReceiveTimeout 5s is not longer than HeartbeatInterval 10s", "or 0 to turn it off" },
        { new LinkTiming { ConnectTimeout = Ms(99) }, "ConnectTimeout 99ms is out of range", "give 100ms to 5m" },
        { new LinkTiming { ConnectTimeout = TimeSpan.Zero }, "ConnectTimeout 0 is out of range", "give 100ms to 5m" },
        { new LinkTiming { ConnectTimeout = TimeSpan.FromSeconds(301) }, "ConnectTimeout 301s is out of range", "100ms to 5m" },
        { new LinkTiming { ReconnectInterval = Ms(9) }, "ReconnectInterval 9ms is out of range", "give 10ms to 1m" },
        { new LinkTiming { ReconnectInterval = TimeSpan.FromSeconds(61), MaxReconnectInterval = TimeSpan.FromMinutes(2) }, "ReconnectInterval 61s is out of range", "10ms to 1m" },
        { new LinkTiming { ReconnectMultiplier = 0.99 }, "ReconnectMultiplier 0.99 is out of range", "give 1 (always the same wait) to 10" },
        { new LinkTiming { ReconnectMultiplier = 10.5 }, "ReconnectMultiplier 10.5 is out of range", "to 10" },
        { new LinkTiming { ReconnectMultiplier = double.NaN }, "ReconnectMultiplier NaN is out of range", "to 10" },
        { new LinkTiming { MaxReconnectInterval = TimeSpan.FromMinutes(61) }, "MaxReconnectInterval 61m is out of range", "10ms to 1h" },
        { new LinkTiming { ReconnectInterval = TimeSpan.FromSeconds(2), MaxReconnectInterval = TimeSpan.FromSeconds(1) }, "MaxReconnectInterval 1s is shorter than ReconnectInterval 2s", "at least as long as the first" },
        { new LinkTiming { HeartbeatInterval = TimeSpan.FromTicks(TimeSpan.TicksPerSecond + 5) }, "HeartbeatInterval 1000.0005ms is not a whole number of milliseconds", "e.g. 1s" },
    };

    [Theory]
    [MemberData(nameof(InvalidOnes))]
    public void A_value_out_of_range_is_named_with_its_range_and_the_fix(LinkTiming timing, string problem, string fix)
    {
        var message = Assert.Single(timing.Validate());
        Assert.Contains(problem, message, StringComparison.Ordinal);
        Assert.Contains(fix, message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_problem_is_listed_at_once()
    {
        var timing = new LinkTiming
        {
            HeartbeatInterval = Ms(1), ReceiveTimeout = Ms(2), ConnectTimeout = Ms(3), ReconnectInterval = Ms(4), ReconnectMultiplier = 0.5,
            MaxReconnectInterval = TimeSpan.FromHours(2),
        };
        var problems = timing.Validate();
        Assert.Equal(6, problems.Count);
        foreach (var name in new[] { "HeartbeatInterval", "ReceiveTimeout", "ConnectTimeout", "ReconnectInterval", "ReconnectMultiplier", "MaxReconnectInterval" })
        {
            Assert.Single(problems, p => p.StartsWith(name + " ", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Validate_names_each_setting_as_the_caller_spells_it()
    {
        var timing = new LinkTiming { HeartbeatInterval = TimeSpan.FromSeconds(20), ReconnectMultiplier = 11 };
        var problems = timing.Validate(p => p == "ReceiveTimeout" ? "-ReceiveTimeout" : p == "HeartbeatInterval" ? "heartbeat=" : "reconnect-multiplier=");
        Assert.Contains("-ReceiveTimeout 15s is not longer than heartbeat=20s", problems[0], StringComparison.Ordinal);
        Assert.StartsWith("reconnect-multiplier=11 is out of range", problems[1], StringComparison.Ordinal);
    }

    [Fact]
    public void The_backoff_grows_by_the_multiplier_up_to_the_maximum()
    {
        var d = LinkTiming.Default;
        Assert.Equal(Ms(100), d.ReconnectBackoff(1));
        Assert.Equal(Ms(150), d.ReconnectBackoff(2));
        Assert.Equal(Ms(225), d.ReconnectBackoff(3));
        Assert.Equal(Ms(100 * Math.Pow(1.5, 11)), d.ReconnectBackoff(12)); // 8.65 s
        Assert.Equal(TimeSpan.FromSeconds(10), d.ReconnectBackoff(13));
        Assert.Equal(TimeSpan.FromSeconds(10), d.ReconnectBackoff(int.MaxValue));
        var constant = new LinkTiming { ReconnectInterval = Ms(250), ReconnectMultiplier = 1 };
        Assert.All(Enumerable.Range(1, 50), n => Assert.Equal(Ms(250), constant.ReconnectBackoff(n)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void An_attempt_number_below_1_is_refused(int attempt)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => LinkTiming.Default.ReconnectBackoff(attempt));
        Assert.Throws<ArgumentOutOfRangeException>(() => LinkTiming.Default.ReconnectDelay(attempt, new Random(1)));
    }

    [Fact]
    public void The_delay_is_the_backoff_within_20_percent_either_way_and_never_above_the_maximum()
    {
        var d = LinkTiming.Default;
        var random = new Random(12345);
        for (var attempt = 1; attempt <= 20; attempt++)
        {
            var backoff = d.ReconnectBackoff(attempt);
            var delays = Enumerable.Range(0, 500).Select(_ => d.ReconnectDelay(attempt, random)).ToList();
            Assert.All(delays, delay =>
            {
                Assert.InRange(delay, backoff * 0.8, backoff * 1.2);
                Assert.True(delay <= d.MaxReconnectInterval, $"attempt {attempt}: {delay} is over the maximum");
            });
            // spread over the whole band, not one fixed value: some below, some above the backoff (at the cap: below only)
            Assert.Contains(delays, delay => delay < backoff * 0.9);
            if (backoff < d.MaxReconnectInterval / 1.2)
            {
                Assert.Contains(delays, delay => delay > backoff * 1.1);
            }
        }
    }

    [Fact]
    public void The_jitter_does_not_add_up_over_attempts()
    {
        // With multiplier 1 every attempt waits about the same: the delay is a function of the attempt, not of the last delay.
        var constant = new LinkTiming { ReconnectInterval = TimeSpan.FromSeconds(1), ReconnectMultiplier = 1, MaxReconnectInterval = TimeSpan.FromSeconds(30) };
        var random = new Random(7);
        var delays = Enumerable.Range(1, 1000).Select(n => constant.ReconnectDelay(n, random)).ToList();
        Assert.All(delays, delay => Assert.InRange(delay, Ms(800), Ms(1200)));
        Assert.InRange(delays.Average(t => t.TotalMilliseconds), 970, 1030);
    }

    [Fact]
    public void The_same_seed_gives_the_same_delays()
    {
        var timing = new LinkTiming { ReconnectMultiplier = 2 };
        var a = Enumerable.Range(1, 10).Select(n => timing.ReconnectDelay(n, new Random(42))).ToList();
        var b = Enumerable.Range(1, 10).Select(n => timing.ReconnectDelay(n, new Random(42))).ToList();
        Assert.Equal(a, b);
    }

    [Theory]
    [InlineData(0L, "0")]
    [InlineData(1L, "1ms")]
    [InlineData(100L, "100ms")]
    [InlineData(1500L, "1500ms")]
    [InlineData(10_000L, "10s")]
    [InlineData(90_000L, "90s")]
    [InlineData(120_000L, "2m")]
    [InlineData(3_600_000L, "1h")]
    [InlineData(5_400_000L, "90m")]
    public void A_duration_is_written_in_the_largest_exact_unit(long ms, string text)
    {
        Assert.Equal(text, LinkTiming.FormatDuration(Ms(ms)));
        Assert.True(LinkTiming.TryParseDuration(text, out var back));
        Assert.Equal(Ms(ms), back);
    }

    [Theory]
    [InlineData("10", 10_000L)]
    [InlineData("0.5", 500L)]
    [InlineData("1.5m", 90_000L)]
    [InlineData("250MS", 250L)]
    [InlineData(" 2h ", 7_200_000L)]
    [InlineData("off", 0L)]
    [InlineData("OFF", 0L)]
    [InlineData("0s", 0L)]
    public void A_duration_reads_a_number_with_a_unit_and_a_plain_number_as_seconds(string text, long ms)
    {
        Assert.True(LinkTiming.TryParseDuration(text, out var value));
        Assert.Equal(Ms(ms), value);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("ms")]
    [InlineData("-5s")]
    [InlineData("+5s")]
    [InlineData("5 s")]
    [InlineData("5sec")]
    [InlineData("5d")]
    [InlineData("1e3")]
    [InlineData("0.5ms")]
    [InlineData("1.2.3s")]
    [InlineData("00:00:05")]
    [InlineData("99999999999999999999999999h")]
    public void Anything_else_is_not_a_duration(string? text)
    {
        Assert.False(LinkTiming.TryParseDuration(text, out _));
    }
}

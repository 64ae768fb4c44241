using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using Xunit;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Endpoints;

/// <summary>The link timing options of a server address: read, written back (only what differs from the default), refused with the fix.</summary>
public sealed class EndpointUriTimingTests
{
    private static TimeSpan Ms(double ms) => TimeSpan.FromMilliseconds(ms);

    [Fact]
    public void An_address_without_timing_options_has_the_default_timing()
    {
        var uri = EndpointUri.ParseServer("qmt://b:9200?tls=1.3", "Via");
        Assert.Same(LinkTiming.Default, uri.Timing);
        Assert.Equal("qmt://b:9200?tls=1.3", uri.ToString());
    }

    [Fact]
    public void Every_timing_option_is_read_and_written_back_in_a_fixed_order()
    {
        var uri = EndpointUri.ParseServer("qmt://ops@b:9200?reconnect-max=30s&reconnect-multiplier=2&reconnect=200ms&connect-timeout=3s&receive-timeout=20s&heartbeat=5s&tls=1.3", "Via");
        Assert.Equal(new LinkTiming
        {
            HeartbeatInterval = TimeSpan.FromSeconds(5),
            ReceiveTimeout = TimeSpan.FromSeconds(20),
            ConnectTimeout = TimeSpan.FromSeconds(3),
            ReconnectInterval = Ms(200),
            ReconnectMultiplier = 2,
            MaxReconnectInterval = TimeSpan.FromSeconds(30),
        }, uri.Timing);
        Assert.Equal("qmt://ops@b:9200?tls=1.3&heartbeat=5s&receive-timeout=20s&connect-timeout=3s&reconnect=200ms&reconnect-multiplier=2&reconnect-max=30s", uri.ToString());
    }

    [Theory]
    [InlineData("qmt+plain://b?heartbeat=5s", "qmt+plain://b:9200?heartbeat=5s")]
    [InlineData("qmt+plain://b?heartbeat=off&receive-timeout=0", "qmt+plain://b:9200?heartbeat=off&receive-timeout=off")]
    [InlineData("qmt://b?heartbeat=10s&receive-timeout=15000ms&reconnect-multiplier=1.50", "qmt://b:9200")]
    [InlineData("qmt://b?heartbeat=5&receive-timeout=0.5m", "qmt://b:9200?heartbeat=5s&receive-timeout=30s")]
    [InlineData("qmt://b?HEARTBEAT=2M&Receive-Timeout=3M&Reconnect-Max=1H", "qmt://b:9200?heartbeat=2m&receive-timeout=3m&reconnect-max=1h")]
    [InlineData("qmt://b?reconnect=1500ms&reconnect-multiplier=1.25&reconnect-max=90s", "qmt://b:9200?reconnect=1500ms&reconnect-multiplier=1.25&reconnect-max=90s")]
    public void Only_values_other_than_the_default_are_written_each_in_its_largest_exact_unit(string text, string written)
    {
        Assert.Equal(written, EndpointUri.ParseServer(text, "Via").ToString());
    }

    public static TheoryData<LinkTiming> Timings => new()
    {
        LinkTiming.Default,
        new LinkTiming { HeartbeatInterval = TimeSpan.Zero, ReceiveTimeout = TimeSpan.Zero },
        new LinkTiming { HeartbeatInterval = Ms(100), ReceiveTimeout = Ms(101), ConnectTimeout = Ms(100) },
        new LinkTiming { HeartbeatInterval = TimeSpan.FromHours(1), ReceiveTimeout = TimeSpan.Zero, ConnectTimeout = TimeSpan.FromMinutes(5) },
        new LinkTiming { ReconnectInterval = Ms(10), ReconnectMultiplier = 1, MaxReconnectInterval = Ms(10) },
        new LinkTiming { ReconnectInterval = Ms(1234), ReconnectMultiplier = 1.0 / 0.7, MaxReconnectInterval = TimeSpan.FromMinutes(61) - TimeSpan.FromMinutes(2) },
        new LinkTiming { ReconnectMultiplier = 10, MaxReconnectInterval = TimeSpan.FromHours(1) },
        new LinkTiming { HeartbeatInterval = Ms(61_001), ReceiveTimeout = Ms(3_599_999) },
    };

    [Theory]
    [MemberData(nameof(Timings))]
    public void An_address_with_any_valid_timing_parses_back_to_the_same_address(LinkTiming timing)
    {
        Assert.Empty(timing.Validate());
        foreach (var address in new[] { "qmt://ops@b:9200?sha256=" + new string('A', 64) + "&tls=1.3", "qmt+plain://[::1]:9300" })
        {
            var uri = EndpointUri.ParseServer(address, "Via") with { Timing = timing };
            var back = EndpointUri.ParseServer(uri.ToString(), "Via");
            Assert.Equal(timing, back.Timing);
            Assert.Equal(uri.ToString(), back.ToString());
            Assert.Equal(uri with { Ciphers = null }, back with { Ciphers = null });
        }
    }

    [Fact]
    public void The_timing_stays_out_of_the_Address_that_pins_are_keyed_by()
    {
        var uri = EndpointUri.ParseServer("qmt://ops@b:9200?heartbeat=5s&reconnect=1s", "Via");
        Assert.Equal("qmt://b:9200", uri.Address);
        Assert.Equal("b:9200", uri.HostPort);
    }

    [Fact]
    public void Timing_differs_the_address_as_a_value()
    {
        var a = EndpointUri.ParseServer("qmt://b:9200?heartbeat=5s", "Via");
        Assert.Equal(a, EndpointUri.ParseServer("qmt://b:9200?heartbeat=5000ms", "Via"));
        Assert.NotEqual(a, EndpointUri.ParseServer("qmt://b:9200?heartbeat=6s", "Via"));
        Assert.NotEqual(a, EndpointUri.ParseServer("qmt://b:9200", "Via"));
    }

    [Theory]
    [InlineData("qmt://b?heartbeat=5sec", "heartbeat=5sec is not a duration", "heartbeat=500ms, heartbeat=10s")]
    [InlineData("qmt://b?heartbeat=", "heartbeat= is not a duration", "a number alone is seconds")]
    [InlineData("qmt://b?receive-timeout=-1s", "receive-timeout=-1s is not a duration", "0 or off turns")]
    [InlineData("qmt+plain://b?connect-timeout=0.1ms", "connect-timeout=0.1ms is not a duration", "connect-timeout=2m")]
    [InlineData("qmt://b?reconnect-multiplier=fast", "reconnect-multiplier=fast is not a number", "reconnect-multiplier=1.5")]
    [InlineData("qmt://b?reconnect-multiplier=-2", "reconnect-multiplier=-2 is not a number", "from 1 to 10")]
    [InlineData("qmt://b?heartbeat=50ms", "heartbeat=50ms is out of range", "give 0 (off) or 100ms to 1h")]
    [InlineData("qmt://b?heartbeat=20s", "receive-timeout=15s is not longer than heartbeat=20s", "longer than the heartbeat interval")]
    [InlineData("qmt+plain://b?connect-timeout=10m", "connect-timeout=10m is out of range", "give 100ms to 5m")]
    [InlineData("qmt://b?reconnect=5ms", "reconnect=5ms is out of range", "10ms to 1m")]
    [InlineData("qmt://b?reconnect-multiplier=0.5", "reconnect-multiplier=0.5 is out of range", "give 1 (always the same wait) to 10")]
    [InlineData("qmt://b?reconnect=20s", "reconnect-max=10s is shorter than reconnect=20s", "at least as long as the first")]
    [InlineData("qmt://b?reconnect-max=2h", "reconnect-max=2h is out of range", "10ms to 1h")]
    public void A_bad_timing_option_is_EndpointUriInvalid_naming_the_option_and_the_fix(string text, string problem, string fix)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Equal(QmErrorKind.InvalidArgument, e.Kind);
        Assert.Equal(text, e.Target);
        Assert.StartsWith($"Via '{text}': ", e.Message, StringComparison.Ordinal);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
        Assert.Contains(fix, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_timing_problem_of_an_address_is_in_its_one_error()
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer("qmt://b?heartbeat=1ms&connect-timeout=1h&reconnect-multiplier=20", "Via"));
        Assert.Contains("heartbeat=1ms is out of range", e.Message, StringComparison.Ordinal);
        Assert.Contains("connect-timeout=1h is out of range", e.Message, StringComparison.Ordinal);
        Assert.Contains("reconnect-multiplier=20 is out of range", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("qmt+plain://b?tls=1.3&heartbeat=5s", "tls= is a TLS option")]
    [InlineData("qmt+plain://b?sha256=" + "0000000000000000000000000000000000000000000000000000000000000000", "sha256= is a TLS option")]
    [InlineData("qmt+plain://b?zip=1", "takes only the link timing options heartbeat=, receive-timeout=")]
    [InlineData("qmt://b?zip=1", "and the link timing options heartbeat=, receive-timeout=, connect-timeout=, reconnect=, reconnect-multiplier=, reconnect-max=")]
    [InlineData("tcp://db:5432?heartbeat=5s", "takes no query")]
    public void Options_a_scheme_does_not_take_are_refused_naming_those_it_does(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => text.StartsWith("tcp", StringComparison.Ordinal)
            ? EndpointUri.ParseApplication(text, "Target") : EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains(hint, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_timing_setting_has_one_key()
    {
        var properties = typeof(LinkTiming).GetProperties().Where(p => p.CanWrite).Select(p => p.Name).Order().ToList();
        Assert.Equal(properties, EndpointUri.TimingKeys.Select(k => k.Property).Order().ToList());
        Assert.Equal("heartbeat", EndpointUri.TimingKey(nameof(LinkTiming.HeartbeatInterval)));
        Assert.Equal("reconnect-max", EndpointUri.TimingKey(nameof(LinkTiming.MaxReconnectInterval)));
        Assert.Throws<ArgumentOutOfRangeException>(() => EndpointUri.TimingKey("Jitter"));
    }
}

using QmTunnel.Engine.Management;
using Xunit;

namespace QmTunnel.Engine.Tests.Management;

public sealed class TunnelProfileTests
{
    private static readonly TunnelProfile Valid = new()
    {
        Name = "web",
        Listen = "tcp://127.0.0.1:0",
        Via = ["qmt+plain://127.0.0.1:9200"],
        Target = "tcp://127.0.0.1:8080",
    };

    [Fact]
    public void Defaults_are_the_original_qmTunnel_defaults_and_valid()
    {
        Assert.Equal(100, Valid.MaxConnections);
        Assert.Equal(TimeSpan.FromSeconds(10), Valid.ConnectTimeout);
        Assert.True(Valid.NoDelay);
        Assert.True(Valid.KeepAlive);
        Assert.Equal(1024 * 1024, Valid.BufferSize);
        Assert.True(Valid.Persistent);
        Assert.False(Valid.AutoStart);
        Assert.Equal(TunnelDirection.LocalToRemote, Valid.Direction);
        Assert.Equal(TunnelProtocol.Tcp, Valid.Protocol);
        Assert.Empty(Valid.Validate());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(100)]
    [InlineData(100_000)]
    public void MaxConnections_in_range_is_valid(int value)
    {
        Assert.Empty((Valid with { MaxConnections = value }).Validate());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(100_001)]
    [InlineData(int.MaxValue)]
    public void MaxConnections_out_of_range_is_named(int value)
    {
        AssertOneError(Valid with { MaxConnections = value }, "MaxConnections", value.ToString(System.Globalization.CultureInfo.InvariantCulture), "100000");
    }

    public static TheoryData<TimeSpan> ValidTimeouts() => new()
    {
        TimeSpan.FromMilliseconds(100),
        TimeSpan.FromSeconds(10),
        TimeSpan.FromMinutes(10),
    };

    public static TheoryData<TimeSpan> InvalidTimeouts() => new()
    {
        TimeSpan.Zero,
        TimeSpan.FromMilliseconds(-1),
        TimeSpan.FromMilliseconds(99),
        TimeSpan.FromMilliseconds(100) - TimeSpan.FromTicks(1),
        TimeSpan.FromMinutes(10) + TimeSpan.FromTicks(1),
        TimeSpan.FromMinutes(10) + TimeSpan.FromMilliseconds(1),
        TimeSpan.MaxValue,
    };

    [Theory]
    [MemberData(nameof(ValidTimeouts))]
    public void ConnectTimeout_in_range_is_valid(TimeSpan value)
    {
        Assert.Empty((Valid with { ConnectTimeout = value }).Validate());
    }

    [Theory]
    [MemberData(nameof(InvalidTimeouts))]
    public void ConnectTimeout_out_of_range_is_named(TimeSpan value)
    {
        AssertOneError(Valid with { ConnectTimeout = value }, "ConnectTimeout", "00:10:00");
    }

    [Theory]
    [InlineData(16 * 1024)]
    [InlineData(1024 * 1024)]
    [InlineData(32 * 1024 * 1024)]
    public void BufferSize_in_range_is_valid(int value)
    {
        Assert.Empty((Valid with { BufferSize = value }).Validate());
    }

    [Theory]
    [InlineData(16 * 1024 - 1)]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(32 * 1024 * 1024 + 1)]
    [InlineData(int.MaxValue)]
    public void BufferSize_out_of_range_is_named(int value)
    {
        AssertOneError(Valid with { BufferSize = value }, "BufferSize", value.ToString(System.Globalization.CultureInfo.InvariantCulture), "16 KiB", "32 MiB");
    }

    [Fact]
    public void BufferSize_limits_are_16KiB_and_32MiB()
    {
        Assert.Equal(16 * 1024, TunnelProfile.MinBufferSize);
        Assert.Equal(32 * 1024 * 1024, TunnelProfile.MaxBufferSize);
    }

    [Fact]
    public void Empty_Via_is_named()
    {
        AssertOneError(Valid with { Via = [] }, "Via", "qmt+plain://");
    }

    [Fact]
    public void Via_of_16_servers_is_valid_and_17_is_named()
    {
        var sixteen = Enumerable.Range(1, 16).Select(i => $"qmt+plain://hop{i}:9200").ToArray();
        Assert.Empty((Valid with { Via = sixteen }).Validate());

        AssertOneError(Valid with { Via = [.. sixteen, "qmt+plain://hop17:9200"] }, "Via", "17", "16");
    }

    [Theory]
    [InlineData("a")]
    [InlineData("0")]
    [InlineData("web")]
    [InlineData("Web-01")]
    [InlineData("db_primary.eu-west")]
    [InlineData("9lives")]
    [InlineData("a-")]
    [InlineData("a.")]
    public void Valid_names(string name)
    {
        Assert.True(TunnelProfile.IsValidName(name));
        Assert.Empty((Valid with { Name = name }).Validate());
    }

    [Fact]
    public void Name_of_64_characters_is_valid_and_65_is_not()
    {
        var longest = new string('n', TunnelProfile.MaxNameLength);
        Assert.Equal(64, longest.Length);
        Assert.Empty((Valid with { Name = longest }).Validate());

        AssertOneError(Valid with { Name = longest + "n" }, "Name", longest + "n", "64");
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("-web")]
    [InlineData("_web")]
    [InlineData(".web")]
    [InlineData("web tunnel")]
    [InlineData("web/1")]
    [InlineData("web*")]
    [InlineData("wéb")]
    [InlineData("ｗｅｂ")]
    [InlineData("web\n")]
    public void Invalid_names_are_named(string name)
    {
        Assert.False(TunnelProfile.IsValidName(name));
        AssertOneError(Valid with { Name = name }, "Name", $"'{name}'");
    }

    [Fact]
    public void Null_name_is_not_valid()
    {
        Assert.False(TunnelProfile.IsValidName(null));
    }

    [Fact]
    public void Every_problem_is_listed_at_once()
    {
        var errors = (Valid with
        {
            Name = "-bad",
            MaxConnections = 0,
            ConnectTimeout = TimeSpan.FromMilliseconds(99),
            BufferSize = 1,
            Via = [],
        }).Validate();

        Assert.Equal(5, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("Name", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("MaxConnections", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("ConnectTimeout", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("BufferSize", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Via", StringComparison.Ordinal));
    }

    private static void AssertOneError(TunnelProfile profile, string option, params string[] mentions)
    {
        var error = Assert.Single(profile.Validate());

        Assert.StartsWith(option + " ", error, StringComparison.Ordinal);
        foreach (var mention in mentions)
        {
            Assert.Contains(mention, error, StringComparison.Ordinal);
        }
    }
}

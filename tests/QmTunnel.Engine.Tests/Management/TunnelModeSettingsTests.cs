using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tunnels;
using Xunit;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// The tunnel mode settings without a network: defaults and ranges, what a change may combine, how they are saved
/// (and read from a database written before they existed), and the reconnect backoff's delays.
/// </summary>
public sealed class TunnelModeSettingsTests : IDisposable
{
    private static readonly TunnelProfile Valid = new()
    {
        Name = "web",
        Listen = "tcp://127.0.0.1:0",
        Via = ["qmt+plain://127.0.0.1:9200"],
        Target = "tcp://127.0.0.1:8080",
    };

    private readonly string _path = Path.Combine(Path.GetTempPath(), "qmt-modes-" + Guid.NewGuid().ToString("n"));

    public void Dispose()
    {
        if (Directory.Exists(_path))
        {
            Directory.Delete(_path, recursive: true);
        }
    }

    [Fact]
    public void A_new_tunnel_is_per_connection_with_the_original_idle_timeout_and_a_30_second_failure_tolerance()
    {
        Assert.Equal(TunnelMode.PerConnection, Valid.Mode);
        Assert.Equal(TimeSpan.FromSeconds(300), Valid.IdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), Valid.FailureTolerance);
        Assert.Empty(Valid.Validate());
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(86_400, true)]
    [InlineData(0.999, false)]
    [InlineData(86_401, false)]
    public void IdleTimeout_is_one_second_to_one_day(double seconds, bool valid)
    {
        var errors = (Valid with { IdleTimeout = TimeSpan.FromSeconds(seconds) }).Validate();
        Assert.Equal(valid, errors.Count == 0);
        if (!valid)
        {
            Assert.Contains("IdleTimeout", Assert.Single(errors), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(3600, true)]
    [InlineData(-0.001, false)]
    [InlineData(3600.001, false)]
    public void FailureTolerance_is_zero_to_one_hour(double seconds, bool valid)
    {
        var errors = (Valid with { FailureTolerance = TimeSpan.FromSeconds(seconds) }).Validate();
        Assert.Equal(valid, errors.Count == 0);
        if (!valid)
        {
            Assert.Contains("FailureTolerance", Assert.Single(errors), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_mode_that_is_not_one_is_refused()
    {
        Assert.Contains("Mode 7", Assert.Single((Valid with { Mode = (TunnelMode)7 }).Validate()), StringComparison.Ordinal);
    }

    [Fact]
    public void Permanent_and_OnDemand_together_are_refused_with_the_fix()
    {
        var ex = Assert.Throws<QmTunnelException>(() => new TunnelChange { Permanent = true, OnDemand = true }.Apply(Valid));
        Assert.Equal(ErrorIds.TunnelSettingInvalid, ex.ErrorId);
        Assert.Contains("Give one of them", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(TunnelMode.PerConnection, true, null, TunnelMode.Permanent)]
    [InlineData(TunnelMode.OnDemand, true, null, TunnelMode.Permanent)]
    [InlineData(TunnelMode.Permanent, null, true, TunnelMode.OnDemand)]
    [InlineData(TunnelMode.Permanent, false, null, TunnelMode.PerConnection)]
    [InlineData(TunnelMode.OnDemand, false, null, TunnelMode.OnDemand)]
    [InlineData(TunnelMode.OnDemand, null, false, TunnelMode.PerConnection)]
    [InlineData(TunnelMode.Permanent, null, false, TunnelMode.Permanent)]
    [InlineData(TunnelMode.Permanent, false, true, TunnelMode.OnDemand)]
    [InlineData(TunnelMode.OnDemand, null, null, TunnelMode.OnDemand)]
    public void A_switch_turned_on_sets_its_mode_and_turned_off_leaves_only_its_own_mode(TunnelMode before, bool? permanent, bool? onDemand, TunnelMode after)
    {
        Assert.Equal(after, new TunnelChange { Permanent = permanent, OnDemand = onDemand }.Apply(Valid with { Mode = before }).Mode);
    }

    [Fact]
    public void IdleTimeout_is_taken_for_a_tunnel_that_is_on_demand_after_the_change_and_refused_otherwise()
    {
        Assert.Equal(TimeSpan.FromMinutes(2), new TunnelChange { IdleTimeout = TimeSpan.FromMinutes(2) }.Apply(Valid with { Mode = TunnelMode.OnDemand }).IdleTimeout);
        Assert.Equal(TimeSpan.FromMinutes(2), new TunnelChange { OnDemand = true, IdleTimeout = TimeSpan.FromMinutes(2) }.Apply(Valid).IdleTimeout);

        var ex = Assert.Throws<QmTunnelException>(() => new TunnelChange { IdleTimeout = TimeSpan.FromMinutes(2) }.Apply(Valid));
        Assert.Equal(ErrorIds.TunnelSettingInvalid, ex.ErrorId);
        Assert.Contains("add -OnDemand", ex.Message, StringComparison.Ordinal);
        Assert.Throws<QmTunnelException>(() => new TunnelChange { OnDemand = false, IdleTimeout = TimeSpan.FromMinutes(2) }.Apply(Valid with { Mode = TunnelMode.OnDemand }));
    }

    [Fact]
    public void The_modes_and_their_timeouts_are_saved_and_read_back()
    {
        using (var store = TunnelStore.Open(_path))
        {
            store.Save(Valid with { Name = "held", Mode = TunnelMode.Permanent, FailureTolerance = TimeSpan.FromSeconds(90) });
            store.Save(Valid with { Name = "lazy", Mode = TunnelMode.OnDemand, IdleTimeout = TimeSpan.FromMilliseconds(1500) });
        }
        using var again = TunnelStore.Open(_path);
        var tunnels = again.LoadTunnels().ToDictionary(t => t.Name);
        Assert.Equal(TunnelMode.Permanent, tunnels["held"].Mode);
        Assert.Equal(TimeSpan.FromSeconds(90), tunnels["held"].FailureTolerance);
        Assert.Equal(TunnelMode.OnDemand, tunnels["lazy"].Mode);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), tunnels["lazy"].IdleTimeout);
    }

    [Fact]
    public void A_tunnel_saved_before_the_modes_existed_loads_per_connection_with_the_defaults()
    {
        using (var store = TunnelStore.Open(_path))
        {
            store.Save(Valid with { Name = "old", Mode = TunnelMode.Permanent, IdleTimeout = TimeSpan.FromSeconds(5), FailureTolerance = TimeSpan.Zero });
        }
        // The document as an earlier version wrote it: without the three fields.
        using (var db = new LiteDatabase(new ConnectionString { Filename = Path.Combine(_path, TunnelStore.FileName), Connection = ConnectionType.Direct, Upgrade = false }))
        {
            var tunnels = db.GetCollection("tunnels");
            var document = tunnels.FindById("OLD");
            Assert.True(document.Remove("mode") && document.Remove("idleTimeoutMs") && document.Remove("failureToleranceMs"));
            tunnels.Update(document);
            db.Checkpoint();
        }
        using var again = TunnelStore.Open(_path);
        var old = Assert.Single(again.LoadTunnels());
        Assert.Equal(TunnelMode.PerConnection, old.Mode);
        Assert.Equal(TunnelProfile.DefaultIdleTimeout, old.IdleTimeout);
        Assert.Equal(TunnelProfile.DefaultFailureTolerance, old.FailureTolerance);
        Assert.Empty(old.Validate());
    }

    [Fact]
    public void The_reconnect_backoff_starts_at_100_ms_grows_by_half_up_to_10_s_within_its_jitter_and_starts_again_after_a_success()
    {
        var backoff = new ReconnectBackoff(new Random(1));
        var nominal = TimeSpan.FromMilliseconds(100);
        for (var i = 0; i < 20; i++)
        {
            var delay = backoff.Next();
            Assert.InRange(delay, nominal * (1 - ReconnectBackoff.Jitter), nominal * (1 + ReconnectBackoff.Jitter));
            Assert.True(delay <= backoff.Longest);
            nominal = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(10).Ticks, (long)(nominal.Ticks * 1.5)));
        }
        Assert.Equal(TimeSpan.FromSeconds(10), nominal); // reached the maximum within the 20 attempts
        backoff.Reset();
        Assert.InRange(backoff.Next(), TimeSpan.FromMilliseconds(80), TimeSpan.FromMilliseconds(120));
    }

    [Fact]
    public void The_reconnect_delays_are_spread_by_the_jitter()
    {
        var delays = Enumerable.Range(0, 50).Select(i => new ReconnectBackoff(new Random(i)).Next()).Distinct().Count();
        Assert.True(delays > 40, $"only {delays} different first delays in 50 backoffs");
    }
}

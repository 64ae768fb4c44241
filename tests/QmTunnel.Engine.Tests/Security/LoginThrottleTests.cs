using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Security;

/// <summary>The login throttle on an injected clock: counted per source and per user, never cleared by someone else, parallel no faster than serial.</summary>
public sealed class LoginThrottleTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-28T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private static void Fail(LoginThrottle throttle, string source, string user, int times)
    {
        for (var i = 0; i < times; i++)
        {
            throttle.Schedule(source, user, out _).Failed();
        }
    }

    private static TimeSpan WaitOf(LoginThrottle throttle, string source, string user)
    {
        using var attempt = throttle.Schedule(source, user, out var wait);
        return wait;
    }

    [Fact]
    public void Another_users_success_from_the_same_address_clears_nothing()
    {
        var throttle = new LoginThrottle(_time);
        Fail(throttle, "198.51.100.7", "victim", 6);
        throttle.Schedule("198.51.100.7", "attacker", out _).Succeeded();
        Assert.Equal(6, throttle.SourceFailures("198.51.100.7"));
        Assert.Equal(6, throttle.UserFailures("victim"));
        _time.Advance(TimeSpan.FromMinutes(1)); // past every booked slot
        Assert.Equal(LoginThrottle.DelayAfter(6), WaitOf(throttle, "198.51.100.7", "victim"));
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(LoginThrottle.DelayAfter(6), WaitOf(throttle, "198.51.100.7", "someone-else")); // the address is still slowed
    }

    [Fact]
    public void A_success_clears_the_failures_of_that_user_from_that_address_only()
    {
        var throttle = new LoginThrottle(_time);
        Fail(throttle, "198.51.100.7", "alice", 2);
        Fail(throttle, "198.51.100.7", "bob", 3);
        Fail(throttle, "203.0.113.5", "alice", 1);
        throttle.Schedule("198.51.100.7", "ALICE", out _).Succeeded();
        Assert.Equal(3, throttle.SourceFailures("198.51.100.7")); // bob's stay
        Assert.Equal(1, throttle.UserFailures("alice"));         // the other address's stays
    }

    [Fact]
    public void Failures_for_one_user_count_across_addresses()
    {
        var throttle = new LoginThrottle(_time);
        for (var i = 1; i <= 5; i++)
        {
            Fail(throttle, $"203.0.113.{i}", "admin", 1);
        }
        Assert.Equal(5, throttle.UserFailures("ADMIN"));
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(LoginThrottle.DelayAfter(5), WaitOf(throttle, "203.0.113.99", "admin"));
    }

    [Fact]
    public void Parallel_attempts_get_the_schedule_of_serial_ones()
    {
        var throttle = new LoginThrottle(_time);
        // Serial attempts wait 0, 0, 0, then 0.25 s, 0.5 s, 1 s, 2 s, 4 s: eight made at once get exactly those slots.
        var waits = Enumerable.Range(0, 8).Select(_ => { throttle.Schedule("198.51.100.7", "admin", out var wait); return wait; }).ToList();
        var expected = TimeSpan.Zero;
        for (var k = 0; k < waits.Count; k++)
        {
            expected += LoginThrottle.DelayAfter(k);
            Assert.Equal(expected, waits[k]);
        }
        Assert.Equal(TimeSpan.FromSeconds(7.75), waits[^1]);
        // Spread over users from one address, or over addresses for one user: no faster.
        var fresh = new LoginThrottle(_time);
        var spread = Enumerable.Range(0, 8).Select(i => { fresh.Schedule("198.51.100.8", $"user{i}", out var wait); return wait; }).ToList();
        Assert.Equal(waits, spread);
        var fresh2 = new LoginThrottle(_time);
        Assert.Equal(waits, Enumerable.Range(0, 8).Select(i => { fresh2.Schedule($"203.0.113.{i}", "admin", out var wait); return wait; }).ToList());
    }

    [Fact]
    public async Task Waiting_for_a_slot_follows_the_injected_clock()
    {
        var throttle = new LoginThrottle(_time);
        Fail(throttle, "198.51.100.7", "admin", 4);
        _time.Advance(TimeSpan.FromMinutes(1)); // past the slots those four booked
        var begin = throttle.BeginAsync("198.51.100.7", "admin", CancellationToken.None);
        Assert.False(begin.IsCompleted);
        _time.Advance(LoginThrottle.DelayAfter(4) - TimeSpan.FromMilliseconds(1));
        await Task.Delay(50);
        Assert.False(begin.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        (await begin.WaitAsync(TimeSpan.FromSeconds(10))).Failed();
        Assert.Equal(5, throttle.SourceFailures("198.51.100.7"));
    }

    [Fact]
    public void An_attempt_abandoned_before_its_proof_counts_no_failure()
    {
        var throttle = new LoginThrottle(_time);
        for (var i = 0; i < 10; i++)
        {
            using var attempt = throttle.Schedule("198.51.100.7", "admin", out _);
        }
        Assert.Equal(0, throttle.SourceFailures("198.51.100.7"));
        Assert.Equal(TimeSpan.Zero, WaitOf(throttle, "198.51.100.7", "admin"));
    }

    [Fact]
    public void Addresses_of_one_IPv6_64_share_a_count_and_failures_are_forgotten_after_a_while()
    {
        var throttle = new LoginThrottle(_time);
        Fail(throttle, "2001:db8:1:2::10", "admin", 2);
        Fail(throttle, "2001:db8:1:2:ffff::1", "root", 2);
        Assert.Equal(4, throttle.SourceFailures("2001:db8:1:2::99"));
        Assert.Equal(0, throttle.SourceFailures("2001:db8:1:3::10"));
        Assert.Equal("198.51.100.7", LoginThrottle.SourceKey("::ffff:198.51.100.7"));
        _time.Advance(LoginThrottle.Forget + TimeSpan.FromSeconds(1));
        Assert.Equal(0, throttle.SourceFailures("2001:db8:1:2::10"));
    }
}

/// <summary>The throttle and the login challenge as a network peer meets them: real links to a real engine on a fake clock.</summary>
public sealed class LoginThrottleOnTheWireTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new();
    private readonly string _path = Path.Combine(Path.GetTempPath(), "qmt-throttle-" + Guid.NewGuid().ToString("n"));
    private QmTunnelEngine _server = null!;

    public async Task InitializeAsync()
    {
        _server = new QmTunnelEngine(new ServerOptions
        {
            Port = 0, DataPath = _path, AllowPlainLinks = true, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = 150_000,
        }, timeProvider: _time);
        await _server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_path, recursive: true);
    }

    private EndpointUri Hop => EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{_server.Port}", "test");

    private Task<Link> LogInAsync(string user, string password) =>
        LinkDialer.DialAsync(Hop, new PasswordLogin(user, password), new LinkOptions { ServerName = "raw" }, NullLogger.Instance,
            new PeerCertificatePolicy(new Pins()), TimeSpan.FromSeconds(20), CancellationToken.None);

    [Fact]
    public async Task Parallel_wrong_passwords_are_held_until_their_slots_and_another_users_login_does_not_reset_the_count()
    {
        var guesses = Enumerable.Range(0, 6).Select(_ => LogInAsync("admin", "wrong-password")).ToList();
        // Three free guesses are decided at once; the fourth waits for the clock (0.25 s), the rest longer.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (guesses.Count(g => g.IsCompleted) < 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Equal(3, guesses.Count(g => g.IsCompleted));
        await Task.Delay(300); // real time passes; the fake clock does not: no more guess is decided
        Assert.Equal(3, guesses.Count(g => g.IsCompleted));
        for (var i = 0; i < 200 && !guesses.All(g => g.IsCompleted); i++)
        {
            _time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5);
        }
        foreach (var guess in guesses)
        {
            var error = await Assert.ThrowsAsync<QmTunnelException>(() => guess);
            Assert.Equal(ErrorIds.AuthenticationFailed, error.ErrorId);
        }
        _server.NewGroup("Users", GroupRights.None, []);
        _server.NewUser("bob", "Users", "bob-password-1");
        var bob = LogInAsync("bob", "bob-password-1");
        while (!bob.IsCompleted)
        {
            _time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5);
        }
        await (await bob).DisposeAsync();
        // bob's success from this address leaves admin's six failures counted there.
        var seventh = LogInAsync("admin", "wrong-password");
        await Task.Delay(300);
        Assert.False(seventh.IsCompleted, "bob's login cleared the failures of admin's guesses");
        while (!seventh.IsCompleted)
        {
            _time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5);
        }
        await Assert.ThrowsAsync<QmTunnelException>(() => seventh);
    }

    [Fact]
    public async Task An_unknown_users_challenge_looks_like_a_real_ones_with_the_servers_current_iteration_count()
    {
        async Task<(byte[] Salt, int Iterations)> QueryAsync(string user)
        {
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(System.Net.IPAddress.Loopback, _server.Port);
            return await Link.QueryLoginParametersAsync(socket, new LinkOptions(), user, CancellationToken.None);
        }
        var admin = await QueryAsync("admin");
        var unknown = await QueryAsync("no-such-user");
        Assert.Equal(150_000, admin.Iterations);
        Assert.Equal(admin.Iterations, unknown.Iterations);
        Assert.Equal(admin.Salt.Length, unknown.Salt.Length);
        Assert.Equal(unknown.Salt, (await QueryAsync("NO-SUCH-USER")).Salt); // stable per name, like a stored salt
        Assert.NotEqual(unknown.Salt, (await QueryAsync("another-user")).Salt);

        _server.SetServerConfig(new ServerConfigChange { PasswordIterations = 200_000 });
        _server.NewGroup("Users", GroupRights.None, []);
        _server.NewUser("carol", "Users", "carol-password-1");
        Assert.Equal(200_000, (await QueryAsync("carol")).Iterations);
        Assert.Equal(200_000, (await QueryAsync("no-such-user")).Iterations);
    }

    private sealed class Pins : IKnownServers
    {
        public string? Find(string server) => null;
        public void Add(string server, string thumbprint)
        {
        }
    }
}

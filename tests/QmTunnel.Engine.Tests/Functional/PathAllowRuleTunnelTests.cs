using System.Net.Sockets;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Allow-rules with unix:// and pipe:// fields, as the creating server checks a user's new tunnel and as the last server
/// checks the chain (and every connection) of a tunnel whose owner logs in there as a restricted user.
/// </summary>
public sealed class PathAllowRuleTunnelTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-rules-").FullName;
    private QmTunnelEngine _a = null!;
    private QmTunnelEngine _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A user of a new group with <paramref name="rules"/> on <paramref name="engine"/>, as a session would log it in.</summary>
    private static SecurityPrincipal UserWithRules(QmTunnelEngine engine, string name, params string[] rules)
    {
        engine.NewGroup(name + "-group", GroupRights.CreateTunnels, rules);
        engine.NewUser(name, name + "-group", name + "-password");
        return new SecurityPrincipal(new User { Name = name, Group = name + "-group" },
            new Group { Name = name + "-group", Rights = GroupRights.CreateTunnels, AllowRules = rules });
    }

    private TunnelProfile Profile(string name, string listen, string target) =>
        new() { Name = name, Listen = listen, Via = [EngineFixture.Hop(_b)], Target = target, ConnectTimeout = TimeSpan.FromSeconds(5) };

    private Task<TunnelInfo> CreateOnAAsync(SecurityPrincipal caller, string name, string listen, string target) =>
        _a.NewTunnelAsync(Profile(name, listen, target), [EngineFixture.AdminLogin], caller);

    /// <summary>Created by A's admin, logging in at B as <paramref name="user"/>: B's rules for that user decide.</summary>
    private Task<TunnelInfo> CreateThroughBAsync(string user, string name, string listen, string target) =>
        _a.NewTunnelAsync(Profile(name, listen, target), [new HopLogin(user, user + "-password")]);

    [Fact]
    public async Task On_the_creating_server_an_address_rule_allows_no_socket_listener_and_a_path_rule_only_its_paths()
    {
        var target = _echo.Uri;
        var byAddress = UserWithRules(_a, "tcpuser", "L#127.0.0.1:*#*#*:*");
        await CreateOnAAsync(byAddress, "tcp-ok", "tcp://127.0.0.1:0", target);
        var e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateOnAAsync(byAddress, "unix-no", $"unix://{_dir}/in.sock", target));
        Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
        Assert.Contains("allow-rules of group 'tcpuser-group'", e.Message);
        Assert.Contains($"the tunnel itself written as a rule is L#unix://{_dir}/in.sock#127.0.0.1:{_b.Port}#{target[6..]}", e.Message);
        Assert.Contains("Ask an administrator to add a rule", e.Message);
        e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateOnAAsync(byAddress, "pipe-no", "pipe://qmt-rule-test", target));
        Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);

        var byPath = UserWithRules(_a, "sockuser", $"L#unix://{_dir}/ok-*#*#*:*", "L#pipe://qmt-ok-*#*#*:*");
        await CreateOnAAsync(byPath, "unix-ok", $"unix://{_dir}/ok-1.sock?mode=0600", target);
        await CreateOnAAsync(byPath, "pipe-ok", "pipe://qmt-ok-1", target);
        foreach (var (name, listen) in new[] { ("unix-other", $"unix://{_dir}/other.sock"), ("pipe-other", "pipe://qmt-other"), ("tcp-other", "tcp://127.0.0.1:0") })
        {
            e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateOnAAsync(byPath, name, listen, target));
            Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
            Assert.Contains("sockuser-group", e.Message);
        }
    }

    [Fact]
    public async Task On_the_creating_server_path_targets_are_checked_like_listeners()
    {
        var user = UserWithRules(_a, "targetuser", $"L#127.0.0.1:*#*#unix://{_dir}/db-*.sock", "L#127.0.0.1:*#*#pipe://db");
        await CreateOnAAsync(user, "to-unix", "tcp://127.0.0.1:0", $"unix://{_dir}/db-1.sock");
        await CreateOnAAsync(user, "to-pipe", "tcp://127.0.0.1:0", "pipe://db");
        foreach (var target in new[] { $"unix://{_dir}/x.sock", "pipe://db2", _echo.Uri })
        {
            var e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateOnAAsync(user, "to-" + target.Length, "tcp://127.0.0.1:0", target));
            Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
        }
    }

    [Fact]
    public async Task At_the_last_server_path_rules_decide_for_targets_and_the_owners_socket_listener()
    {
        UserWithRules(_b, "remote", $"L#unix://{_dir}/*#*#{_echo.Uri[6..]}", $"L#*:*#*#unix://{_dir}/t-*.sock");

        // B's rule for the owner's unix listener: a path rule allows it, and the connections get through
        var listen = Path.Combine(_dir, "in.sock");
        await CreateThroughBAsync("remote", "unix-in", "unix://" + listen, _echo.Uri);
        await _a.StartTunnelAsync("unix-in");
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await client.ConnectAsync(new UnixDomainSocketEndPoint(listen));
            await client.SendAllAsync("ping"u8.ToArray());
            client.Shutdown(SocketShutdown.Send);
            Assert.Equal("ping"u8.ToArray(), await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        }

        // a tcp listener of the same tunnel is not matched by the path rule at B (B sees A's address, not a path)
        var e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateThroughBAsync("remote", "tcp-in", "tcp://127.0.0.1:0", _echo.Uri));
        Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
        Assert.Contains("allow-rules of group 'remote-group'", e.Message);

        // targets at B: only unix sockets t-*.sock under the directory
        await CreateThroughBAsync("remote", "to-unix", "tcp://127.0.0.1:0", $"unix://{_dir}/t-1.sock");
        foreach (var target in new[] { $"unix://{_dir}/u-1.sock", "pipe://t-1" })
        {
            e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateThroughBAsync("remote", "to-" + target.Length, "tcp://127.0.0.1:0", target));
            Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
            Assert.Contains($"the tunnel itself written as a rule is L#127.0.0.1:0#127.0.0.1:{_b.Port}#{target}", e.Message);
        }
    }

    [Fact]
    public async Task At_the_last_server_an_address_rule_for_the_owners_host_allows_no_socket_listener_there()
    {
        UserWithRules(_b, "hostonly", $"L#127.0.0.1:*#*#{_echo.Uri[6..]}");
        await CreateThroughBAsync("hostonly", "tcp-in", "tcp://127.0.0.1:0", _echo.Uri);
        var e = await Assert.ThrowsAsync<QmTunnelException>(() => CreateThroughBAsync("hostonly", "unix-in", $"unix://{_dir}/in.sock", _echo.Uri));
        Assert.Equal(ErrorIds.PermissionDenied, e.ErrorId);
        Assert.Contains("hostonly-group", e.Message);
    }
}

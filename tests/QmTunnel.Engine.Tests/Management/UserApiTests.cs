using System.Net.Sockets;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// The users / groups / server-configuration API of a real engine on loopback port 0 with a throwaway data path:
/// round trips that survive a restart, the rights check for logged-in callers, the guards of the store as the API
/// surfaces them, and settings that apply without a restart.
/// </summary>
public sealed class UserApiTests : IAsyncLifetime
{
    private const string Thumbprint = "5e:3f:2b:7a:4c:1d:9e:8f:0a:6b:5c:4d:3e:2f:1a:0b:9c:8d:7e:6f:5a:4b:3c:2d:1e:0f:9a:8b:7c:6d:5e:4f";
    private const string NormalizedThumbprint = "5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F";
    private readonly string _path = Path.Combine(Path.GetTempPath(), "qmt-userapi-" + Guid.NewGuid().ToString("n"));
    private readonly List<QmTunnelEngine> _engines = [];
    private QmTunnelEngine _engine = null!;
    private HashSet<string> _defaultUsers = [];
    private HashSet<string> _defaultGroups = [];

    public async Task InitializeAsync()
    {
        _engine = await StartAsync();
        // What the engine creates on a first start (the default admin and its group): not the tests' business.
        _defaultUsers = _engine.GetUsers().Select(u => u.Name).ToHashSet();
        _defaultGroups = _engine.GetGroups().Select(g => g.Name).ToHashSet();
        // Cheap hashes for the tests that set passwords (the floor the API accepts).
        _engine.SetServerConfig(new ServerConfigChange { PasswordIterations = QmTunnelEngine.MinPasswordIterations });
    }

    public async Task DisposeAsync()
    {
        foreach (var engine in _engines)
        {
            await engine.DisposeAsync();
        }
        if (Directory.Exists(_path))
        {
            Directory.Delete(_path, recursive: true);
        }
    }

    /// <summary>Starts an engine on the test's data path, keeping the saved AllowPlainLinks (not overriding it).</summary>
    private async Task<QmTunnelEngine> StartAsync()
    {
        var engine = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = _path });
        await engine.StartAsync();
        _engines.Add(engine);
        return engine;
    }

    private async Task RestartAsync()
    {
        await _engine.StopAsync();
        _engine = await StartAsync();
    }

    /// <summary>Reads a user as stored (hash included) while the engine is stopped, then starts it again.</summary>
    private async Task<User> StoredUserAsync(string name)
    {
        await _engine.StopAsync();
        User user;
        using (var store = TunnelStore.Open(_path))
        {
            user = store.Users.GetUser(name);
        }
        _engine = await StartAsync();
        return user;
    }

    /// <summary>The names of the users the test created, in the API's order.</summary>
    private IEnumerable<string> MyUsers(SecurityPrincipal? caller = null) =>
        _engine.GetUsers(caller: caller).Select(u => u.Name).Where(n => !_defaultUsers.Contains(n));

    private IEnumerable<string> MyGroups(SecurityPrincipal? caller = null) =>
        _engine.GetGroups(caller).Select(g => g.Name).Where(n => !_defaultGroups.Contains(n));

    private static QmTunnelException Refused(string errorId, QmErrorKind kind, Action action)
    {
        var ex = Assert.Throws<QmTunnelException>(action);
        Assert.Equal(errorId, ex.ErrorId);
        Assert.Equal(kind, ex.Kind);
        return ex;
    }

    /// <summary>A logged-in user whose snapshot (taken at an earlier login) may no longer match the database.</summary>
    private static SecurityPrincipal Principal(string user, string group, GroupRights rights) =>
        new(new User { Name = user, Group = group }, new Group { Name = group, Rights = rights });

    /// <summary>A logged-in user built from what the server holds now (its user and its group), as a session would at login.</summary>
    private SecurityPrincipal Login(string name)
    {
        var user = _engine.GetUser(name);
        var group = _engine.GetGroup(user.Group);
        return new SecurityPrincipal(
            new User { Name = user.Name, Group = user.Group, Enabled = user.Enabled, CertificateThumbprint = user.CertificateThumbprint, Description = user.Description, CreatedAt = user.CreatedAt },
            new Group { Name = group.Name, Rights = group.Rights, AllowRules = group.AllowRules, Description = group.Description });
    }

    private void CreateAdministrators()
    {
        _engine.NewGroup("Admins", GroupRights.All, Group.AllowEverything, "server admins");
        _engine.NewUser("root", "Admins", "root-password-1");
    }

    private void CreateOperators()
    {
        _engine.NewGroup("Operators", GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, ["L#127.0.0.1:*#*#*:*"], "ops");
        _engine.NewUser("bob", "operators", "bob-password-1", description: "Bob");
        _engine.NewUser("dave", "Operators", "dave-password-1");
    }

    // ---- round trips ----

    [Fact]
    public async Task Users_and_groups_round_trip_and_persist_across_a_restart()
    {
        var group = _engine.NewGroup("Operators", GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, [" L#127.0.0.1:*#*#*:* "], "ops");
        Assert.Equal("Operators", group.Name);
        Assert.Equal(["L#127.0.0.1:*#*#*:*"], group.AllowRules);
        Assert.Equal(0, group.UserCount);

        var created = _engine.NewUser("bob", "operators", "bob-password-1", Thumbprint, enabled: true, "Bob");
        Assert.Equal("bob", created.Name);
        Assert.Equal("Operators", created.Group);
        Assert.True(created.Enabled);
        Assert.True(created.HasPassword);
        Assert.Equal(NormalizedThumbprint, created.CertificateThumbprint);
        Assert.Equal("Bob", created.Description);
        Assert.InRange(created.CreatedAt, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
        _engine.NewUser("carol", "Operators", null, null, enabled: false, "no credential yet");

        var changed = _engine.SetUser("BOB", new UserChange { Enabled = false, CertificateThumbprint = "", Description = "moved" });
        Assert.False(changed.Enabled);
        Assert.Null(changed.CertificateThumbprint);
        Assert.True(changed.HasPassword);
        Assert.Equal("moved", changed.Description);
        var regrouped = _engine.SetGroup("operators", new GroupChange { Rights = GroupRights.CreateTunnels, AllowRules = ["L#*:*#*#*:*", "R#*:*#*#*:*"] });
        Assert.Equal(GroupRights.CreateTunnels, regrouped.Rights);
        Assert.Equal(2, regrouped.UserCount);

        await RestartAsync();

        var bob = _engine.GetUser("bob");
        Assert.Equal(("bob", "Operators", false, true, (string?)null, "moved", created.CreatedAt),
            (bob.Name, bob.Group, bob.Enabled, bob.HasPassword, bob.CertificateThumbprint, bob.Description, bob.CreatedAt));
        var carol = _engine.GetUser("carol");
        Assert.False(carol.HasPassword);
        Assert.False(carol.Enabled);
        Assert.Equal(["bob", "carol"], _engine.GetUsers("OPERATORS").Select(u => u.Name));
        var operators = Assert.Single(_engine.GetGroups(), g => g.Name == "Operators");
        Assert.Equal(GroupRights.CreateTunnels, operators.Rights);
        Assert.Equal(["L#*:*#*#*:*", "R#*:*#*#*:*"], operators.AllowRules);
        Assert.Equal("ops", operators.Description);
        Assert.Equal(2, operators.UserCount);

        // The password is stored as a verifier made with the saved iteration count, and only there.
        var stored = await StoredUserAsync("bob");
        Assert.True(PasswordHasher.Verify("bob-password-1", stored.PasswordHash!));
        Assert.Equal(QmTunnelEngine.MinPasswordIterations, PasswordHasher.Parse(stored.PasswordHash!).Iterations);

        _engine.SetUser("bob", new UserChange { Password = "new-bob-password" });
        stored = await StoredUserAsync("bob");
        Assert.True(PasswordHasher.Verify("new-bob-password", stored.PasswordHash!));

        _engine.RemoveUser("bob");
        _engine.RemoveUser("Carol");
        _engine.RemoveGroup("OPERATORS");
        await RestartAsync();
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => _engine.GetUser("bob"));
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => _engine.GetGroup("Operators"));
        Assert.Empty(MyGroups());
    }

    [Fact]
    public void No_returned_object_carries_a_password_verifier()
    {
        CreateOperators();
        foreach (var type in new[] { typeof(UserInfo), typeof(GroupInfo), typeof(ServerConfig) })
        {
            Assert.DoesNotContain(type.GetProperties(), p => p.Name.Contains("Hash", StringComparison.OrdinalIgnoreCase)
                || p.Name.Contains("Password", StringComparison.OrdinalIgnoreCase) && p.PropertyType != typeof(bool) && p.PropertyType != typeof(int));
        }
        var values = string.Join("|", typeof(UserInfo).GetProperties().Select(p => p.GetValue(_engine.GetUser("bob"))?.ToString()));
        Assert.DoesNotContain(PasswordHasher.Scheme, values);
        Assert.DoesNotContain("bob-password-1", new UserChange { Password = "bob-password-1" }.ToString());
    }

    [Fact]
    public void Lookups_of_what_does_not_exist_name_it()
    {
        var user = Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => _engine.GetUser("nobody"));
        Assert.Equal("nobody", user.Target);
        Assert.Contains("New-QmTunnelUser", user.Message);
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => _engine.GetUsers("NoSuchGroup"));
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => _engine.NewUser("eve", "NoSuchGroup", "eve-password-1"));
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => _engine.SetUser("nobody", new UserChange { Password = "whatever-123" }));
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => _engine.RemoveUser("nobody"));
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => _engine.RemoveGroup("nobody"));
        Assert.Empty(MyUsers());
    }

    [Fact]
    public void Refusals_write_nothing()
    {
        CreateOperators();
        var shortPassword = Refused(SecurityErrorIds.PasswordInvalid, QmErrorKind.InvalidArgument, () => _engine.NewUser("eve", "Operators", "short"));
        Assert.Contains("8 to 1024 characters", shortPassword.Message);
        Refused(SecurityErrorIds.PasswordInvalid, QmErrorKind.InvalidArgument, () => _engine.NewUser("eve", "Operators", new string('x', PasswordHasher.MaxPasswordLength + 1)));
        Refused(SecurityErrorIds.PasswordInvalid, QmErrorKind.InvalidArgument, () => _engine.SetUser("bob", new UserChange { Password = "1234567", Enabled = false }));
        Refused(SecurityErrorIds.UserNameInUse, QmErrorKind.ResourceExists, () => _engine.NewUser("BOB", "Operators", "another-password"));
        Refused(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, () => _engine.NewUser("bad name", "Operators", "eve-password-1"));
        Refused(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, () => _engine.NewUser("eve", "Operators", null, "not-a-thumbprint"));
        _engine.SetUser("dave", new UserChange { CertificateThumbprint = Thumbprint });
        Refused(SecurityErrorIds.UserCertificateInUse, QmErrorKind.ResourceExists, () => _engine.NewUser("eve", "Operators", null, NormalizedThumbprint));
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound,
            () => _engine.SetUser("bob", new UserChange { Group = "Nowhere", Password = "new-bob-password" }));

        var rule = Refused(SecurityErrorIds.AllowRuleInvalid, QmErrorKind.InvalidArgument, () => _engine.NewGroup("Lab", GroupRights.CreateTunnels, ["L#*:*#*#*:*", "X#a:1#b:2"]));
        Assert.Contains("X#a:1#b:2", rule.Message);
        Assert.Contains("L#bind-host:bind-port", rule.Message);
        Refused(SecurityErrorIds.AllowRuleInvalid, QmErrorKind.InvalidArgument, () => _engine.SetGroup("Operators", new GroupChange { AllowRules = ["L#*:*"], Description = "changed" }));
        Refused(SecurityErrorIds.GroupNameInUse, QmErrorKind.ResourceExists, () => _engine.NewGroup("OPERATORS", GroupRights.None, []));
        var notEmpty = Refused(SecurityErrorIds.GroupNotEmpty, QmErrorKind.InvalidOperation, () => _engine.RemoveGroup("Operators"));
        Assert.Contains("bob, dave", notEmpty.Message);

        Assert.Equal(["bob", "dave"], MyUsers());
        var operators = _engine.GetGroup("Operators");
        Assert.Equal(["L#127.0.0.1:*#*#*:*"], operators.AllowRules);
        Assert.Equal("ops", operators.Description);
        Assert.Equal(["Operators"], MyGroups());
        var bob = _engine.GetUser("bob");
        Assert.True(bob.Enabled);
        Assert.Equal("Operators", bob.Group);
    }

    [Fact]
    public async Task A_user_that_owns_tunnels_cannot_be_removed()
    {
        CreateOperators();
        var bob = Login("bob");
        var tunnel = await _engine.NewTunnelAsync(new TunnelProfile
        {
            Name = "bobs",
            Listen = "tcp://127.0.0.1:0",
            Via = [$"qmt://127.0.0.1:{_engine.Port}"],
            Target = "tcp://127.0.0.1:9",
            Credentials = EngineFixture.OfflineCredentials(1),
        }, caller: bob);
        Assert.Equal("bob", tunnel.Profile.Owner);
        var ex = Refused(SecurityErrorIds.UserHasTunnels, QmErrorKind.InvalidOperation, () => _engine.RemoveUser("BOB"));
        Assert.Contains("bobs", ex.Message);
        Assert.Contains("-Enabled:$false", ex.Message);
        Assert.Equal("bob", _engine.GetUser("bob").Name);

        await _engine.RemoveTunnelAsync("bobs");
        _engine.RemoveUser("bob");
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => _engine.GetUser("bob"));
    }

    // ---- rights ----

    [Fact]
    public void A_user_without_ChangeServerConfiguration_is_refused_everything_but_itself()
    {
        CreateAdministrators();
        CreateOperators();
        var bob = Login("bob");
        Assert.Equal(GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, bob.Group.Rights);

        var denied = new (string What, Action Call)[]
        {
            ("get another user", () => _engine.GetUser("dave", bob)),
            ("get an unknown user", () => _engine.GetUser("nobody", bob)),
            ("create a user", () => _engine.NewUser("eve", "Operators", "eve-password-1", caller: bob)),
            ("create an admin", () => _engine.NewUser("eve", "Admins", "eve-password-1", caller: bob)),
            ("change another user's password", () => _engine.SetUser("dave", new UserChange { Password = "dave-password-2" }, bob)),
            ("enable itself with its password", () => _engine.SetUser("bob", new UserChange { Password = "bob-password-2", Enabled = true }, bob)),
            ("move itself", () => _engine.SetUser("bob", new UserChange { Group = "Admins" }, bob)),
            ("change its own description", () => _engine.SetUser("bob", new UserChange { Description = "me" }, bob)),
            ("remove a user", () => _engine.RemoveUser("dave", bob)),
            ("remove itself", () => _engine.RemoveUser("bob", bob)),
            ("list groups", () => _engine.GetGroups(bob)),
            ("get its group", () => _engine.GetGroup("Operators", bob)),
            ("create a group", () => _engine.NewGroup("Mine", GroupRights.All, [], caller: bob)),
            ("grant itself the right", () => _engine.SetGroup("Operators", new GroupChange { Rights = GroupRights.All }, bob)),
            ("remove a group", () => _engine.RemoveGroup("Admins", bob)),
            ("read the configuration", () => _engine.GetServerConfig(bob)),
            ("allow plain links", () => _engine.SetServerConfig(new ServerConfigChange { AllowPlainLinks = true }, bob)),
        };
        foreach (var (what, call) in denied)
        {
            var ex = Assert.Throws<QmTunnelException>(call);
            Assert.True(ex.ErrorId == SecurityErrorIds.PermissionDenied, $"{what}: {ex.ErrorId} {ex.Message}");
            Assert.Equal(QmErrorKind.PermissionDenied, ex.Kind);
            Assert.Contains("User 'bob' (group 'Operators') lacks the right ChangeServerConfiguration", ex.Message);
            Assert.Contains("Set-QmTunnelGroup Operators -Rights ChangeServerConfiguration, CreateTunnels, AdministerGroupTunnels", ex.Message);
        }

        // Nothing changed.
        Assert.Equal(["bob", "dave", "root"], MyUsers());
        Assert.Equal(GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels, _engine.GetGroup("Operators").Rights);
        Assert.Equal(["Admins", "Operators"], MyGroups());
        Assert.Equal("Bob", _engine.GetUser("bob").Description);
        Assert.False(_engine.GetServerConfig().AllowPlainLinks);

        // Itself: it sees only itself and may change its own password.
        Assert.Equal("bob", _engine.GetUser("BOB", bob).Name);
        Assert.Equal(["bob"], _engine.GetUsers(caller: bob).Select(u => u.Name));
        Assert.Equal(["bob"], _engine.GetUsers("Operators", caller: bob).Select(u => u.Name));
        Assert.Empty(_engine.GetUsers("Admins", caller: bob));
        Assert.True(_engine.SetUser("bob", new UserChange { Password = "bob-password-2" }, bob).HasPassword);
    }

    [Fact]
    public async Task Own_password_change_is_saved()
    {
        CreateOperators();
        var bob = Login("bob");
        _engine.SetUser("bob", new UserChange { Password = "bob-password-2" }, bob);
        var stored = await StoredUserAsync("bob");
        Assert.True(PasswordHasher.Verify("bob-password-2", stored.PasswordHash!));
        Assert.False(PasswordHasher.Verify("bob-password-1", stored.PasswordHash!));
    }

    [Fact]
    public void Rights_are_read_at_each_call_not_at_login()
    {
        CreateAdministrators();
        CreateOperators();
        // Snapshots taken "at login": they do not decide.
        var bob = Principal("bob", "Operators", GroupRights.None);
        var root = Principal("root", "Admins", GroupRights.All);

        Refused(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, () => _engine.GetGroups(bob));
        _engine.SetGroup("Operators", new GroupChange { Rights = GroupRights.ChangeServerConfiguration }, root);
        Assert.Equal(["Admins", "Operators"], MyGroups(bob));
        Assert.Equal("eve", _engine.NewUser("eve", "Operators", "eve-password-1", caller: bob).Name);

        _engine.SetGroup("Operators", new GroupChange { Rights = GroupRights.CreateTunnels }, root);
        Refused(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, () => _engine.GetGroups(bob));

        // A disabled or removed caller may do nothing, not even change its password.
        _engine.SetUser("bob", new UserChange { Enabled = false }, root);
        var disabled = Refused(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied,
            () => _engine.SetUser("bob", new UserChange { Password = "bob-password-3" }, bob));
        Assert.Contains("is disabled", disabled.Message);
        _engine.RemoveUser("eve");
        var gone = Refused(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied,
            () => _engine.GetUser("eve", Principal("eve", "Operators", GroupRights.All)));
        Assert.Contains("no longer exists", gone.Message);
    }

    // ---- the last administrator ----

    [Fact]
    public void The_last_user_who_can_manage_the_server_is_kept()
    {
        CreateAdministrators();
        CreateOperators();
        // Every other user who could manage the server (a default admin, if the engine made one) is disabled first.
        var adminGroups = _engine.GetGroups().Where(g => g.Rights.HasFlag(GroupRights.ChangeServerConfiguration)).Select(g => g.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var other in _engine.GetUsers().Where(u => u.Name != "root" && u.Enabled && adminGroups.Contains(u.Group)))
        {
            _engine.SetUser(other.Name, new UserChange { Enabled = false });
        }

        var remove = Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => _engine.RemoveUser("root"));
        Assert.Contains("ChangeServerConfiguration", remove.Message);
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => _engine.SetUser("root", new UserChange { Enabled = false }));
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => _engine.SetUser("root", new UserChange { Group = "Operators" }));
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => _engine.SetGroup("Admins", new GroupChange { Rights = GroupRights.CreateTunnels }));
        // Through a logged-in administrator too.
        var root = Login("root");
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => _engine.RemoveUser("root", root));

        Assert.True(_engine.GetUser("root").Enabled);
        Assert.Equal(GroupRights.All, _engine.GetGroup("Admins").Rights);

        // Once another administrator exists, root may go.
        _engine.SetGroup("Operators", new GroupChange { Rights = GroupRights.All });
        _engine.RemoveUser("root");
    }

    // ---- server configuration ----

    [Fact]
    public async Task Server_configuration_round_trips_and_persists()
    {
        var config = _engine.GetServerConfig();
        Assert.Equal(_engine.Port, config.Port);
        Assert.Equal("127.0.0.1", config.ListenAddress);
        Assert.Equal(_path, config.DataPath);
        Assert.Equal(Environment.MachineName, config.ServerName);
        Assert.Equal(_engine.CertificateThumbprint, config.CertificateThumbprint);
        Assert.False(config.AllowPlainLinks);
        Assert.Equal(QmTunnelEngine.MinPasswordIterations, config.PasswordIterations);

        var changed = _engine.SetServerConfig(new ServerConfigChange { AllowPlainLinks = true, PasswordIterations = 250_000 });
        Assert.True(changed.AllowPlainLinks);
        Assert.Equal(250_000, changed.PasswordIterations);
        // A change without fields changes nothing.
        Assert.Equal(250_000, _engine.SetServerConfig(new ServerConfigChange()).PasswordIterations);

        foreach (var bad in new[] { 0, 99_999, PasswordHasher.MaxIterations + 1 })
        {
            var ex = Refused(SecurityErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument,
                () => _engine.SetServerConfig(new ServerConfigChange { PasswordIterations = bad, AllowPlainLinks = false }));
            Assert.Contains("100000 to 10000000", ex.Message);
        }
        Assert.True(_engine.GetServerConfig().AllowPlainLinks); // the refused change wrote nothing

        await RestartAsync();
        var kept = _engine.GetServerConfig();
        Assert.True(kept.AllowPlainLinks);
        Assert.Equal(250_000, kept.PasswordIterations);
        Assert.True(_engine.GetServerInfo().AllowPlainLinks);

        // New passwords use the saved count.
        CreateOperators();
        var stored = await StoredUserAsync("bob");
        Assert.Equal(250_000, PasswordHasher.Parse(stored.PasswordHash!).Iterations);
    }

    [Fact]
    public async Task A_new_server_hashes_with_the_default_iteration_count()
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-userapi-fresh-" + Guid.NewGuid().ToString("n"));
        await using (var fresh = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = path }))
        {
            await fresh.StartAsync();
            Assert.Equal(PasswordHasher.DefaultIterations, fresh.GetServerConfig().PasswordIterations);
        }
        Directory.Delete(path, recursive: true);
    }

    [Fact]
    public async Task AllowPlainLinks_applies_to_the_next_link_without_a_restart()
    {
        // Each plain connection below sends a cut-short preamble, so the server counts one protocol error for it once
        // it has handled it; PlainLinksRefused says whether the plain-link check refused it first.
        Assert.False(_engine.GetServerInfo().AllowPlainLinks);
        await PlainConnectionAsync(1);
        Assert.Equal(1, _engine.GetServerInfo().PlainLinksRefused);

        _engine.SetServerConfig(new ServerConfigChange { AllowPlainLinks = true });
        Assert.True(_engine.GetServerInfo().AllowPlainLinks);
        await PlainConnectionAsync(2);
        Assert.Equal(1, _engine.GetServerInfo().PlainLinksRefused);

        _engine.SetServerConfig(new ServerConfigChange { AllowPlainLinks = false });
        await PlainConnectionAsync(3);
        Assert.Equal(2, _engine.GetServerInfo().PlainLinksRefused);
    }

    /// <summary>The <paramref name="n"/>-th plain connection of a test: the preamble, then EOF; waits until the server has handled it.</summary>
    private async Task PlainConnectionAsync(long n)
    {
        await SendPlainPreambleAsync(_engine.Port);
        await TunnelTests.WaitUntil(() => _engine.GetServerInfo().ProtocolErrors >= n);
        Assert.Equal(n, _engine.GetServerInfo().ProtocolErrors);
    }

    /// <summary>Opens a TCP connection, sends the first bytes of a plain link's preamble, and closes it.</summary>
    private static async Task SendPlainPreambleAsync(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(System.Net.IPAddress.Loopback, port);
        await socket.SendAsync("QMTL"u8.ToArray(), SocketFlags.None);
        socket.Shutdown(SocketShutdown.Send);
        var buffer = new byte[4096];
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // reset by the server: fine, it has decided
        }
    }
}

using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Security;

public sealed class UserStoreTests : IDisposable
{
    private const string Thumbprint = "5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F";
    private static readonly string AdminHash = PasswordHasher.Hash("admin-password", 1000);
    private static readonly string AliceHash = PasswordHasher.Hash("alice-password", 1000);

    private readonly string _path = Path.Combine(Path.GetTempPath(), "qmt-users-" + Guid.NewGuid().ToString("n"));
    private TunnelStore _store;

    public UserStoreTests()
    {
        _store = TunnelStore.Open(_path);
    }

    private UserStore Users => _store.Users;

    public void Dispose()
    {
        _store.Dispose();
        if (Directory.Exists(_path))
        {
            Directory.Delete(_path, true);
        }
    }

    private void Reopen()
    {
        _store.Dispose();
        _store = TunnelStore.Open(_path);
    }

    private static Group Developers => new()
    {
        Name = "Developers",
        Rights = GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels,
        AllowRules = ["L#127.0.0.1:*#*#*.dev.lan:*"],
        Description = "the devs",
    };

    private static User Alice => new() { Name = "alice", Group = "developers", PasswordHash = AliceHash, Description = "Alice" };

    private static QmTunnelException Refused(string errorId, QmErrorKind kind, Action action)
    {
        var ex = Assert.Throws<QmTunnelException>(action);
        Assert.Equal(errorId, ex.ErrorId);
        Assert.Equal(kind, ex.Kind);
        return ex;
    }

    // ---- defaults ----

    [Fact]
    public void Defaults_are_created_on_first_start_only_and_persist()
    {
        Assert.False(Users.DefaultsCreated);
        Assert.Empty(Users.GetGroups());
        Assert.True(Users.EnsureDefaults(AdminHash));
        Assert.True(Users.DefaultsCreated);

        var administrators = Users.GetGroup("administrators");
        Assert.Equal("Administrators", administrators.Name);
        Assert.Equal(GroupRights.All, administrators.Rights);
        Assert.Equal(Group.AllowEverything, administrators.AllowRules);
        var admin = Users.GetUser("ADMIN");
        Assert.Equal("admin", admin.Name);
        Assert.Equal("Administrators", admin.Group);
        Assert.True(admin.Enabled);
        Assert.True(PasswordHasher.Verify("admin-password", admin.PasswordHash!));
        Assert.InRange(admin.CreatedAt, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));

        var called = false;
        Assert.False(Users.EnsureDefaults(() =>
        {
            called = true;
            return AliceHash;
        }));
        Assert.False(called);

        Reopen();
        Assert.True(Users.DefaultsCreated);
        Assert.False(Users.EnsureDefaults(AliceHash));
        Assert.Equal(admin, Users.GetUser("admin"));
        Assert.True(PasswordHasher.Verify("admin-password", Users.GetUser("admin").PasswordHash!));
        Assert.Single(Users.GetUsers());
        Assert.Single(Users.GetGroups());
    }

    [Fact]
    public void Removed_defaults_are_not_created_again()
    {
        Users.EnsureDefaults(AdminHash);
        Users.NewGroup(new Group { Name = "Ops", Rights = GroupRights.All });
        Users.NewUser(new User { Name = "root", Group = "Ops", PasswordHash = AliceHash });
        Users.RemoveUser("admin");
        Users.RemoveGroup("Administrators");
        Reopen();
        Assert.False(Users.EnsureDefaults(AdminHash));
        Assert.Null(Users.FindUser("admin"));
        Assert.Null(Users.FindGroup("Administrators"));
    }

    [Fact]
    public void A_malformed_admin_hash_creates_nothing()
    {
        Refused(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, () => Users.EnsureDefaults("not-a-hash"));
        Assert.False(Users.DefaultsCreated);
        Assert.Empty(Users.GetGroups());
        Assert.Empty(Users.GetUsers());
        Assert.True(Users.EnsureDefaults(AdminHash));
    }

    [Fact]
    public void Defaults_keep_a_group_that_already_exists()
    {
        Users.NewGroup(new Group { Name = "ADMINISTRATORS", Rights = GroupRights.All, Description = "mine" });
        Assert.True(Users.EnsureDefaults(AdminHash));
        Assert.Equal("mine", Users.GetGroup("Administrators").Description);
        Assert.Equal("ADMINISTRATORS", Users.GetUser("admin").Group);
    }

    // ---- groups ----

    [Fact]
    public void Groups_are_created_read_changed_and_removed()
    {
        var created = Users.NewGroup(Developers);
        Assert.Equal(Developers.Name, created.Name);
        var read = Users.GetGroup("DEVELOPERS");
        Assert.Equal("Developers", read.Name);
        Assert.Equal(Developers.Rights, read.Rights);
        Assert.Equal(Developers.AllowRules, read.AllowRules);
        Assert.Equal("the devs", read.Description);

        var changed = Users.SetGroup("developers", g => g with
        {
            Rights = GroupRights.CreateTunnels,
            AllowRules = [.. g.AllowRules, "R#*:*#*#*:*"],
            Description = "changed",
        });
        Assert.Equal(2, changed.AllowRules.Count);

        Reopen();
        read = Users.GetGroup("Developers");
        Assert.Equal(GroupRights.CreateTunnels, read.Rights);
        Assert.Equal(["L#127.0.0.1:*#*#*.dev.lan:*", "R#*:*#*#*:*"], read.AllowRules);
        Assert.Equal("changed", read.Description);

        Users.RemoveGroup("DEVELOPERS");
        Assert.Null(Users.FindGroup("Developers"));
        Reopen();
        Assert.Empty(Users.GetGroups());
    }

    [Fact]
    public void Group_errors_name_the_group_and_the_fix()
    {
        Users.NewGroup(Developers);
        var ex = Refused(SecurityErrorIds.GroupNameInUse, QmErrorKind.ResourceExists, () => Users.NewGroup(Developers with { Name = "DEVELOPERS" }));
        Assert.Contains("'Developers' already exists", ex.Message, StringComparison.Ordinal);

        ex = Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => Users.GetGroup("nope"));
        Assert.Equal("nope", ex.Target);
        Assert.Contains("Get-QmTunnelGroup", ex.Message, StringComparison.Ordinal);
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => Users.SetGroup("nope", g => g));
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => Users.RemoveGroup("nope"));

        ex = Refused(SecurityErrorIds.GroupSettingInvalid, QmErrorKind.InvalidArgument,
            () => Users.NewGroup(new Group { Name = "bad name", AllowRules = ["L#*:*#*#*:http"] }));
        Assert.Contains("Group name 'bad name' is not valid", ex.Message, StringComparison.Ordinal);
        Assert.Contains("port 'http' is not valid", ex.Message, StringComparison.Ordinal);

        ex = Refused(SecurityErrorIds.GroupSettingInvalid, QmErrorKind.InvalidArgument,
            () => Users.SetGroup("Developers", g => g with { AllowRules = ["nonsense"] }));
        Assert.Contains("'nonsense'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Developers.AllowRules, Users.GetGroup("Developers").AllowRules);
    }

    [Fact]
    public void Groups_cannot_be_renamed_but_their_case_can_change()
    {
        Users.NewGroup(Developers);
        Users.NewUser(Alice);
        Refused(SecurityErrorIds.RenameNotSupported, QmErrorKind.InvalidArgument, () => Users.SetGroup("Developers", g => g with { Name = "Devs" }));
        Users.SetGroup("Developers", g => g with { Name = "DEVELOPERS" });
        Assert.Equal("DEVELOPERS", Users.GetGroup("developers").Name);
        Assert.Equal("DEVELOPERS", Users.GetUser("alice").Group);
    }

    [Fact]
    public void A_group_with_users_cannot_be_removed()
    {
        Users.NewGroup(Developers);
        Users.NewUser(Alice);
        Users.NewUser(Alice with { Name = "bob" });
        var ex = Refused(SecurityErrorIds.GroupNotEmpty, QmErrorKind.InvalidOperation, () => Users.RemoveGroup("developers"));
        Assert.Contains("alice, bob", ex.Message, StringComparison.Ordinal);
        Assert.NotNull(Users.FindGroup("Developers"));
        Users.RemoveUser("alice");
        Users.RemoveUser("bob");
        Users.RemoveGroup("developers");
    }

    // ---- users ----

    [Fact]
    public void Users_are_created_read_changed_and_removed()
    {
        Users.NewGroup(Developers);
        var created = Users.NewUser(Alice);
        Assert.Equal("Developers", created.Group);
        Assert.NotEqual(default, created.CreatedAt);
        Assert.Equal(created, Users.GetUser("ALICE"));

        var changed = Users.SetUser("Alice", u => u with
        {
            Enabled = false,
            CertificateThumbprint = Thumbprint.ToLowerInvariant(),
            PasswordHash = null,
            Description = "cert only",
            CreatedAt = DateTimeOffset.UnixEpoch,
        });
        Assert.Equal(Thumbprint, changed.CertificateThumbprint);
        Assert.Equal(created.CreatedAt, changed.CreatedAt);

        Reopen();
        var read = Users.GetUser("alice");
        Assert.Equal(changed, read);
        Assert.False(read.Enabled);
        Assert.Null(read.PasswordHash);
        Assert.Equal("cert only", read.Description);

        Users.RemoveUser("ALICE");
        Assert.Null(Users.FindUser("alice"));
        Reopen();
        Assert.Empty(Users.GetUsers());
    }

    [Fact]
    public void User_errors_name_the_user_and_the_fix()
    {
        Users.NewGroup(Developers);
        Users.NewUser(Alice);
        var ex = Refused(SecurityErrorIds.UserNameInUse, QmErrorKind.ResourceExists, () => Users.NewUser(Alice with { Name = "ALICE" }));
        Assert.Contains("'alice' already exists", ex.Message, StringComparison.Ordinal);

        ex = Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => Users.GetUser("zed"));
        Assert.Equal("zed", ex.Target);
        Assert.Contains("Get-QmTunnelUser", ex.Message, StringComparison.Ordinal);
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => Users.SetUser("zed", u => u));
        Refused(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, () => Users.RemoveUser("zed"));

        ex = Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => Users.NewUser(Alice with { Name = "bob", Group = "Nobody" }));
        Assert.Equal("Nobody", ex.Target);
        Refused(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, () => Users.SetUser("alice", u => u with { Group = "Nobody" }));

        ex = Refused(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument,
            () => Users.NewUser(new User { Name = "b@d", Group = "Developers", PasswordHash = "hunter2", CertificateThumbprint = "12" }));
        Assert.Contains("User name 'b@d'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("PasswordHash is not valid", ex.Message, StringComparison.Ordinal);
        Assert.Contains("CertificateThumbprint '12'", ex.Message, StringComparison.Ordinal);

        Refused(SecurityErrorIds.RenameNotSupported, QmErrorKind.InvalidArgument, () => Users.SetUser("alice", u => u with { Name = "alicia" }));
        Assert.Equal(["alice"], Users.GetUsers().Select(u => u.Name));
        Assert.Equal(Alice.PasswordHash, Users.GetUser("alice").PasswordHash);
    }

    [Fact]
    public void Users_are_found_by_client_certificate_and_a_certificate_belongs_to_one_user()
    {
        Users.NewGroup(Developers);
        var colons = string.Join(':', Enumerable.Range(0, 32).Select(i => Thumbprint.Substring(i * 2, 2).ToLowerInvariant()));
        var alice = Users.NewUser(Alice with { CertificateThumbprint = colons });
        Assert.Equal(Thumbprint, alice.CertificateThumbprint);
        Assert.Equal("alice", Users.FindUserByCertificate(Thumbprint)?.Name);
        Assert.Equal("alice", Users.FindUserByCertificate(colons)?.Name);
        Assert.Null(Users.FindUserByCertificate(new string('0', 64)));

        var ex = Refused(SecurityErrorIds.UserCertificateInUse, QmErrorKind.ResourceExists,
            () => Users.NewUser(new User { Name = "bob", Group = "Developers", CertificateThumbprint = Thumbprint }));
        Assert.Contains("'alice'", ex.Message, StringComparison.Ordinal);
        Assert.Null(Users.FindUser("bob"));
        Users.NewUser(new User { Name = "bob", Group = "Developers" });
        Refused(SecurityErrorIds.UserCertificateInUse, QmErrorKind.ResourceExists,
            () => Users.SetUser("bob", u => u with { CertificateThumbprint = Thumbprint }));
        Users.SetUser("alice", u => u with { CertificateThumbprint = Thumbprint }); // its own certificate again
    }

    [Fact]
    public void Users_of_a_group_and_principals()
    {
        Users.EnsureDefaults(AdminHash);
        Users.NewGroup(Developers);
        Users.NewUser(Alice);
        Users.NewUser(Alice with { Name = "Bob" });
        Assert.Equal(["admin", "alice", "Bob"], Users.GetUsers().Select(u => u.Name));
        Assert.Equal(["alice", "Bob"], Users.GetUsers("DEVELOPERS").Select(u => u.Name));
        Assert.Empty(Users.GetUsers("nobody"));

        var principal = Users.FindPrincipal("BOB");
        Assert.NotNull(principal);
        Assert.Equal("Bob", principal.User.Name);
        Assert.Equal("Developers", principal.Group.Name);
        Assert.True(principal.CanAdministerTunnel("alice", "Developers"));
        Assert.False(principal.CanChangeServerConfiguration);
        Assert.Null(Users.FindPrincipal("nobody"));
        Assert.True(Users.FindPrincipal("admin")!.CanChangeServerConfiguration);
    }

    // ---- the last administrator ----

    [Fact]
    public void The_last_administrator_cannot_be_removed_disabled_stripped_or_moved()
    {
        Users.EnsureDefaults(AdminHash);
        Users.NewGroup(Developers);
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => Users.RemoveUser("admin"));
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => Users.SetUser("admin", u => u with { Enabled = false }));
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => Users.SetUser("admin", u => u with { PasswordHash = null }));
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => Users.SetUser("admin", u => u with { Group = "Developers" }));
        var ex = Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation,
            () => Users.SetGroup("Administrators", g => g with { Rights = GroupRights.All & ~GroupRights.ChangeServerConfiguration }));
        Assert.Contains("ChangeServerConfiguration", ex.Message, StringComparison.Ordinal);

        var admin = Users.GetUser("admin");
        Assert.True(admin.Enabled);
        Assert.NotNull(admin.PasswordHash);
        Assert.Equal("Administrators", admin.Group);
        Assert.Equal(GroupRights.All, Users.GetGroup("Administrators").Rights);

        // With a second administrator, the first may go.
        Users.NewUser(new User { Name = "root", Group = "Administrators", CertificateThumbprint = Thumbprint });
        Users.SetUser("admin", u => u with { Enabled = false });
        Users.RemoveUser("admin");
        Refused(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, () => Users.RemoveUser("root"));
    }

    [Fact]
    public void Before_any_administrator_exists_the_guard_does_not_block()
    {
        Users.NewGroup(Developers);
        Users.NewUser(Alice);
        Users.SetUser("alice", u => u with { Enabled = false });
        Assert.False(Users.GetUser("alice").Enabled); // not blocked: the change was made, not skipped
        Users.RemoveUser("alice");
        Assert.Null(Users.FindUser("alice"));
    }

    // ---- secrets and corruption ----

    [Fact]
    public void Secrets_are_created_once_and_kept()
    {
        var secret = Users.GetOrCreateSecret("fakeSalt");
        Assert.Equal(32, secret.Length);
        Assert.Equal(secret, Users.GetOrCreateSecret("fakeSalt"));
        Assert.NotEqual(secret, Users.GetOrCreateSecret("other"));
        Reopen();
        Assert.Equal(secret, Users.GetOrCreateSecret("fakeSalt"));
    }

    [Fact]
    public void A_damaged_user_document_is_reported_as_a_corrupt_database_and_left_alone()
    {
        Users.EnsureDefaults(AdminHash);
        _store.Dispose();
        var file = Path.Combine(_path, TunnelStore.FileName);
        using (var db = new LiteDatabase(new ConnectionString { Filename = file, Connection = ConnectionType.Direct }))
        {
            db.GetCollection("users").Insert(new BsonDocument { ["_id"] = "BROKEN", ["name"] = 42 });
        }
        var before = File.ReadAllBytes(file);
        // Checked when the store opens (the server does not start), not at first use.
        var ex = Refused(ErrorIds.DatabaseCorrupt, QmErrorKind.InvalidData, () => _ = TunnelStore.Open(_path));
        Assert.Equal(file, ex.Target);
        Assert.Contains("users and groups", ex.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(file));
        File.Delete(file);
        _store = TunnelStore.Open(_path);
    }

    [Fact]
    public void Users_and_tunnels_share_the_file_without_disturbing_each_other()
    {
        Users.EnsureDefaults(AdminHash);
        _store.Save(new TunnelProfile { Name = "web", Listen = "tcp://127.0.0.1:0", Via = ["qmt+plain://127.0.0.1:9"], Target = "tcp://web:80" });
        Reopen();
        Assert.Equal("web", Assert.Single(_store.LoadTunnels()).Name);
        Assert.Equal("admin", Assert.Single(Users.GetUsers()).Name);
    }
}

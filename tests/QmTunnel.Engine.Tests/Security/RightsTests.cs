using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Security;

public sealed class RightsTests
{
    private static readonly string Hash = PasswordHasher.Hash("pw", 1000);

    [Fact]
    public void All_is_every_right()
    {
        Assert.Equal(GroupRights.ChangeServerConfiguration | GroupRights.CreateTunnels | GroupRights.AdministerGroupTunnels | GroupRights.AdministerAllTunnels, GroupRights.All);
        Assert.Equal(0, (int)GroupRights.None);
    }

    [Fact]
    public void The_defaults_are_the_originals()
    {
        var administrators = Group.CreateAdministrators();
        Assert.Equal("Administrators", administrators.Name);
        Assert.Equal(GroupRights.All, administrators.Rights);
        Assert.Equal(["L#*:*#*#*:*", "R#*:*#*#*:*"], administrators.AllowRules);
        Assert.Empty(administrators.Validate());

        var admin = User.CreateAdmin(Hash, DateTimeOffset.UnixEpoch);
        Assert.Equal("admin", admin.Name);
        Assert.Equal("Administrators", admin.Group);
        Assert.True(admin.Enabled);
        Assert.True(admin.CanLogIn);
        Assert.Null(admin.CertificateThumbprint);
        Assert.Empty(admin.Validate());
    }

    [Fact]
    public void Group_validation_lists_every_problem()
    {
        var group = new Group
        {
            Name = "-bad name",
            Rights = (GroupRights)64,
            AllowRules = ["L#*:*#*#*:*", "X#*:*#*:*", "L#*:*#*#db:99999"],
            Description = new string('d', SecurityNames.MaxDescriptionLength + 1),
        };
        var errors = group.Validate();
        Assert.Equal(5, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("Group name '-bad name' is not valid", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("unknown bits", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("field 1 (direction) 'X'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("field 4 (target host:port) 'db:99999'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Description", StringComparison.Ordinal));
    }

    [Fact]
    public void User_validation_lists_every_problem()
    {
        var user = new User
        {
            Name = "",
            Group = "a b",
            PasswordHash = "plain-text-password",
            CertificateThumbprint = "AB:CD",
        };
        var errors = user.Validate();
        Assert.Equal(4, errors.Count);
        Assert.StartsWith("User name '' is not valid", errors[0], StringComparison.Ordinal);
        Assert.StartsWith("Group name 'a b' is not valid", errors[1], StringComparison.Ordinal);
        Assert.StartsWith("PasswordHash is not valid", errors[2], StringComparison.Ordinal);
        Assert.StartsWith("CertificateThumbprint 'AB:CD' is not a SHA-256 thumbprint", errors[3], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a", true)]
    [InlineData("Alice.Smith-2_x", true)]
    [InlineData("0day", true)]
    [InlineData("", false)]
    [InlineData("-x", false)]
    [InlineData(".x", false)]
    [InlineData("a b", false)]
    [InlineData("a@b", false)]
    [InlineData("jörg", false)]
    public void Names_follow_the_tunnel_name_rules(string name, bool valid)
    {
        Assert.Equal(valid, SecurityNames.IsValid(name));
        Assert.Equal(valid, new User { Name = name, Group = "g" }.Validate().Count == 0);
        Assert.Equal(valid, new Group { Name = name }.Validate().Count == 0);
    }

    [Fact]
    public void Names_are_at_most_64_characters()
    {
        Assert.True(SecurityNames.IsValid(new string('a', 64)));
        Assert.False(SecurityNames.IsValid(new string('a', 65)));
    }

    [Theory]
    [InlineData("5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F", true)]
    [InlineData("5e3f2b7a4c1d9e8f0a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f", true)]
    [InlineData("5E:3F:2B:7A:4C:1D:9E:8F:0A:6B:5C:4D:3E:2F:1A:0B:9C:8D:7E:6F:5A:4B:3C:2D:1E:0F:9A:8B:7C:6D:5E:4F", true)]
    [InlineData("5E3F2B7A 4C1D9E8F 0A6B5C4D 3E2F1A0B 9C8D7E6F 5A4B3C2D 1E0F9A8B 7C6D5E4F", true)]
    [InlineData("5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4", false)]
    [InlineData("5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F00", false)]
    [InlineData("5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4G", false)]
    [InlineData("SHA256 Fingerprint=5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F", false)]
    [InlineData("", false)]
    public void Thumbprints_are_64_hex_digits_with_optional_separators(string thumbprint, bool valid)
    {
        Assert.Equal(valid, User.IsValidThumbprint(thumbprint));
    }

    [Fact]
    public void A_user_without_credentials_or_disabled_cannot_log_in()
    {
        Assert.False(new User { Name = "u", Group = "g" }.CanLogIn);
        Assert.False(new User { Name = "u", Group = "g", PasswordHash = Hash, Enabled = false }.CanLogIn);
        Assert.True(new User { Name = "u", Group = "g", CertificateThumbprint = new string('A', 64) }.CanLogIn);
    }

    private static SecurityPrincipal Principal(string user, string group, GroupRights rights) =>
        new(new User { Name = user, Group = group }, new Group { Name = group, Rights = rights });

    [Theory]
    // owner user, owner group, expected for: plain user, group admin, all admin (all three in group "dev")
    [InlineData("alice", "dev", true, true, true)]
    [InlineData("ALICE", "DEV", true, true, true)]
    [InlineData("bob", "dev", false, true, true)]
    [InlineData("carol", "ops", false, false, true)]
    [InlineData("alice", "ops", true, true, true)]
    public void Users_administer_their_own_tunnels_group_admins_their_groups_and_all_admins_every(
        string ownerUser, string ownerGroup, bool plain, bool groupAdmin, bool allAdmin)
    {
        Assert.Equal(plain, Principal("alice", "dev", GroupRights.CreateTunnels).CanAdministerTunnel(ownerUser, ownerGroup));
        Assert.Equal(groupAdmin, Principal("alice", "dev", GroupRights.AdministerGroupTunnels).CanAdministerTunnel(ownerUser, ownerGroup));
        Assert.Equal(allAdmin, Principal("alice", "dev", GroupRights.AdministerAllTunnels).CanAdministerTunnel(ownerUser, ownerGroup));
    }

    [Fact]
    public void Principal_rights()
    {
        var creator = Principal("u", "g", GroupRights.CreateTunnels);
        Assert.True(creator.CanCreateTunnels);
        Assert.False(creator.CanChangeServerConfiguration);
        var admin = Principal("u", "g", GroupRights.All);
        Assert.True(admin.CanCreateTunnels && admin.CanChangeServerConfiguration);
        Assert.True(admin.Group.Has(GroupRights.CreateTunnels | GroupRights.AdministerAllTunnels));
        Assert.False(creator.Group.Has(GroupRights.CreateTunnels | GroupRights.AdministerAllTunnels));
    }
}

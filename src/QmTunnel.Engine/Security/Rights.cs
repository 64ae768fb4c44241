using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Security;

/// <summary>
/// What the members of a group may do, as in the original qmTunnel. Rights say which operations a user may ask for;
/// which tunnels the user may build is decided by the group's allow-rules (<see cref="AllowRuleSet"/>), separately.
/// </summary>
[Flags]
public enum GroupRights
{
    None = 0,
    /// <summary>Get and set the server configuration, users, groups and known servers.</summary>
    ChangeServerConfiguration = 1,
    /// <summary>Create tunnels (owned by the creating user and their group).</summary>
    CreateTunnels = 2,
    /// <summary>See and change every tunnel owned by the group, not only one's own.</summary>
    AdministerGroupTunnels = 4,
    /// <summary>See and change every tunnel of every user.</summary>
    AdministerAllTunnels = 8,
    All = ChangeServerConfiguration | CreateTunnels | AdministerGroupTunnels | AdministerAllTunnels,
}

/// <summary>
/// A group: rights and the tunnel allow-rules its members are held to. Immutable; <see cref="Validate"/> lists every
/// problem at once. It does not list its members (users name their group) and is not stored by itself (see
/// <see cref="Storage.UserStore"/>).
/// </summary>
public sealed record Group
{
    public const string AdministratorsName = "Administrators";

    /// <summary>Allow everything, as the original's default rules: any bind, any chain, any target, both directions.</summary>
    public static readonly IReadOnlyList<string> AllowEverything = ["L#*:*#*#*:*", "R#*:*#*#*:*"];

    public required string Name { get; init; }
    public GroupRights Rights { get; init; }
    /// <summary>Rules in the original's format (<see cref="AllowRule"/>); a tunnel is allowed when one matches. Empty = no tunnel allowed.</summary>
    public IReadOnlyList<string> AllowRules { get; init; } = [];
    public string Description { get; init; } = string.Empty;

    /// <summary>The default group of the original: all rights, every tunnel allowed.</summary>
    public static Group CreateAdministrators() => new()
    {
        Name = AdministratorsName,
        Rights = GroupRights.All,
        AllowRules = AllowEverything,
        Description = "Administrators of this server: all rights, every tunnel allowed.",
    };

    public bool Has(GroupRights rights) => (Rights & rights) == rights;

    /// <summary>Every problem with this group, each naming the setting and the fix. Empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!SecurityNames.IsValid(Name))
        {
            errors.Add(SecurityNames.Problem("Group name", Name));
        }
        if ((Rights & ~GroupRights.All) != 0)
        {
            errors.Add($"Rights value {(int)Rights} holds unknown bits: use a combination of {string.Join(", ", Enum.GetNames<GroupRights>())}.");
        }
        if (AllowRules is null)
        {
            errors.Add("AllowRules is null: give a list of rules (empty allows no tunnel).");
        }
        else
        {
            if (AllowRules.Count > MaxAllowRules)
            {
                errors.Add($"AllowRules lists {AllowRules.Count} rules: at most {MaxAllowRules}.");
            }
            foreach (var rule in AllowRules)
            {
                if (!AllowRule.TryParse(rule, out _, out var error))
                {
                    errors.Add(error);
                }
            }
        }
        if (Description is null || Description.Length > SecurityNames.MaxDescriptionLength)
        {
            errors.Add($"Description is {(Description is null ? "null" : Description.Length + " characters long")}: use at most {SecurityNames.MaxDescriptionLength} characters.");
        }
        return errors;
    }

    public const int MaxAllowRules = 1000;

    public override string ToString() => Name;
}

/// <summary>
/// A user of a server: the group that gives rights and allow-rules, and the credentials it logs in with (a password
/// verifier, a client certificate's SHA-256 thumbprint, or both). Immutable; <see cref="Validate"/> lists every
/// problem. It never holds a clear password.
/// </summary>
public sealed record User
{
    public const string AdminName = "admin";

    public required string Name { get; init; }
    /// <summary>Name of the user's group (names are case-insensitive).</summary>
    public required string Group { get; init; }
    /// <summary>A disabled user cannot log in; its tunnels stay.</summary>
    public bool Enabled { get; init; } = true;
    /// <summary>Password verifier from <see cref="PasswordHasher.Hash"/>; null = no password login (certificate only).</summary>
    public string? PasswordHash { get; init; }
    /// <summary>SHA-256 thumbprint (hex) of a client certificate that authenticates this user; null = none.</summary>
    public string? CertificateThumbprint { get; init; }
    public string Description { get; init; } = string.Empty;
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>The default user of the original: <c>admin</c> in the Administrators group.</summary>
    public static User CreateAdmin(string passwordHash, DateTimeOffset createdAt) => new()
    {
        Name = AdminName,
        Group = Security.Group.AdministratorsName,
        PasswordHash = passwordHash,
        Description = "Administrator created on first start.",
        CreatedAt = createdAt,
    };

    /// <summary>True when the user has a credential it could log in with (and is enabled).</summary>
    public bool CanLogIn => Enabled && (PasswordHash is not null || CertificateThumbprint is not null);

    /// <summary>Every problem with this user, each naming the setting and the fix. Empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!SecurityNames.IsValid(Name))
        {
            errors.Add(SecurityNames.Problem("User name", Name));
        }
        if (!SecurityNames.IsValid(Group))
        {
            errors.Add(SecurityNames.Problem("Group name", Group));
        }
        if (PasswordHash is not null && !PasswordHasher.TryParse(PasswordHash, out _, out var hashError))
        {
            errors.Add($"PasswordHash is not valid: {hashError} Set the password again (the hash is made by qmTunnel, never typed).");
        }
        if (CertificateThumbprint is not null && !IsValidThumbprint(CertificateThumbprint))
        {
            errors.Add($"CertificateThumbprint '{CertificateThumbprint}' is not a SHA-256 thumbprint: give 64 hex digits (colons and spaces allowed), e.g. from 'openssl x509 -noout -fingerprint -sha256 -in client.pem'.");
        }
        if (Description is null || Description.Length > SecurityNames.MaxDescriptionLength)
        {
            errors.Add($"Description is {(Description is null ? "null" : Description.Length + " characters long")}: use at most {SecurityNames.MaxDescriptionLength} characters.");
        }
        return errors;
    }

    /// <summary>64 hex digits once colons, spaces and dashes are dropped (as openssl and Windows print them).</summary>
    public static bool IsValidThumbprint(string? thumbprint)
    {
        if (thumbprint is null)
        {
            return false;
        }
        var digits = 0;
        foreach (var c in thumbprint)
        {
            if (Uri.IsHexDigit(c))
            {
                digits++;
            }
            else if (c is not ':' and not ' ' and not '-')
            {
                return false;
            }
        }
        return digits == 64;
    }

    public override string ToString() => Name;
}

/// <summary>A logged-in user with its group: what access checks look at.</summary>
public sealed record SecurityPrincipal(User User, Group Group)
{
    public bool CanChangeServerConfiguration => Group.Has(GroupRights.ChangeServerConfiguration);

    public bool CanCreateTunnels => Group.Has(GroupRights.CreateTunnels);

    /// <summary>
    /// Whether this principal may see and change a tunnel owned by <paramref name="ownerUser"/> of
    /// <paramref name="ownerGroup"/>: its own tunnels always, its group's with AdministerGroupTunnels, every tunnel
    /// with AdministerAllTunnels. Names compare case-insensitively.
    /// </summary>
    public bool CanAdministerTunnel(string ownerUser, string ownerGroup) =>
        Group.Has(GroupRights.AdministerAllTunnels)
        || string.Equals(ownerUser, User.Name, StringComparison.OrdinalIgnoreCase)
        || (Group.Has(GroupRights.AdministerGroupTunnels) && string.Equals(ownerGroup, Group.Name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>Name rules of users and groups: the same as tunnel names (1..64 letters, digits, '-', '_', '.'), case-insensitive.</summary>
public static class SecurityNames
{
    public const int MaxDescriptionLength = 1024;

    public static bool IsValid(string? name) => TunnelProfile.IsValidName(name);

    public static string Problem(string what, string? name) =>
        $"{what} '{name}' is not valid: use 1 to {TunnelProfile.MaxNameLength} letters, digits, '-', '_' or '.', starting with a letter or digit.";

    /// <summary>The case-insensitive key a name is stored and compared under.</summary>
    public static string Key(string name) => name.ToUpperInvariant();
}

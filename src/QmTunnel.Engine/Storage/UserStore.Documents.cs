using System.Security.Cryptography;
using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>The checks of <see cref="UserStore"/> and how users and groups map to documents.</summary>
public sealed partial class UserStore
{
    // ---- checks ----

    private static void Throw(string errorId, QmErrorKind kind, string target, string what, IReadOnlyList<string> problems)
    {
        if (problems.Count > 0)
        {
            throw new QmTunnelException(errorId, kind, target, $"{what} is not valid: {string.Join(" ", problems)}");
        }
    }

    private static void CheckSameName(string kind, string current, string changed)
    {
        if (!Same(current, changed))
        {
            throw new QmTunnelException(SecurityErrorIds.RenameNotSupported, QmErrorKind.InvalidArgument, current,
                $"The {kind} '{current}' cannot be renamed to '{changed}': tunnels and {(kind == "user" ? "sessions" : "users")} refer to it by name. Create a new {kind} and move what belongs to the old one.");
        }
    }

    private void CheckCertificateFree(User user)
    {
        if (user.CertificateThumbprint is null)
        {
            return;
        }
        var other = Read(AllUsers).FirstOrDefault(u => u.CertificateThumbprint == user.CertificateThumbprint && !Same(u.Name, user.Name));
        if (other is not null)
        {
            throw new QmTunnelException(SecurityErrorIds.UserCertificateInUse, QmErrorKind.ResourceExists, user.Name,
                $"The client certificate {user.CertificateThumbprint} already authenticates user '{other.Name}'. A certificate identifies one user: issue another certificate for '{user.Name}'.");
        }
    }

    /// <summary>Refuses a change after which no enabled user with a credential is in a group that may change the configuration — if one exists now.</summary>
    private void CheckAdministratorKept(IReadOnlyList<User> usersAfter, IReadOnlyList<Group> groupsAfter, string change)
    {
        if (!HasAdministrator(Read(AllUsers), Read(AllGroups)) || HasAdministrator(usersAfter, groupsAfter))
        {
            return;
        }
        throw new QmTunnelException(SecurityErrorIds.AdministratorRequired, QmErrorKind.InvalidOperation, change,
            $"Refused {change}: afterwards no enabled user with a password or certificate would be in a group with the ChangeServerConfiguration right, and nobody could manage this server. Give that right to another enabled user first.");
    }

    private static bool HasAdministrator(IReadOnlyList<User> users, IReadOnlyList<Group> groups) =>
        users.Any(u => u.CanLogIn && groups.Any(g => Same(g.Name, u.Group) && g.Has(GroupRights.ChangeServerConfiguration)));

    private static User Normalize(User user) => user with
    {
        CertificateThumbprint = user.CertificateThumbprint is null ? null : PeerCertificatePolicy.Normalize(user.CertificateThumbprint),
    };

    private static bool Same(string a, string b) => string.Equals(SecurityNames.Key(a), SecurityNames.Key(b), StringComparison.Ordinal);

    private static QmTunnelException GroupNotFound(string name) =>
        new(SecurityErrorIds.GroupNotFound, QmErrorKind.ObjectNotFound, name,
            $"No group named '{name}' exists on this server. List the groups with Get-QmTunnelGroup, or create it with New-QmTunnelGroup.");

    private static QmTunnelException UserNotFound(string name) =>
        new(SecurityErrorIds.UserNotFound, QmErrorKind.ObjectNotFound, name,
            $"No user named '{name}' exists on this server. List the users with Get-QmTunnelUser, or create it with New-QmTunnelUser.");

    private DateTimeOffset Now() => Truncate(_time.GetUtcNow());

    /// <summary>Stored with millisecond precision: what is returned equals what is read back.</summary>
    private static DateTimeOffset Truncate(DateTimeOffset value) => DateTimeOffset.FromUnixTimeMilliseconds(value.ToUnixTimeMilliseconds());

    // ---- documents ----

    private Group? FindGroupUnlocked(string name)
    {
        var doc = _groups.FindById(SecurityNames.Key(name));
        return doc is null ? null : GroupFromDocument(doc);
    }

    private User? FindUserUnlocked(string name)
    {
        var doc = _users.FindById(SecurityNames.Key(name));
        return doc is null ? null : UserFromDocument(doc);
    }

    private List<Group> AllGroups() =>
        _groups.FindAll().Select(GroupFromDocument).OrderBy(g => g.Name, StringComparer.OrdinalIgnoreCase).ToList();

    private List<User> AllUsers() =>
        _users.FindAll().Select(UserFromDocument).OrderBy(u => u.Name, StringComparer.OrdinalIgnoreCase).ToList();

    private T Read<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception ex) when (ex is LiteException or InvalidCastException or KeyNotFoundException or ArgumentException or FormatException or OverflowException)
        {
            throw DatabaseFiles.Corrupt(FilePath, $"the users and groups in it cannot be read ({ex.GetType().Name}: {ex.Message}).", DatabaseFiles.Fix.RestoreBoth, ex);
        }
    }

    private void Transaction(Action write)
    {
        var own = _db.BeginTrans();
        try
        {
            write();
            if (own)
            {
                _db.Commit();
            }
        }
        catch
        {
            if (own)
            {
                _db.Rollback();
            }
            throw;
        }
    }

    private static BsonDocument ToDocument(Group g) => new()
    {
        ["_id"] = SecurityNames.Key(g.Name),
        ["name"] = g.Name,
        ["rights"] = new BsonArray(Enum.GetValues<GroupRights>()
            .Where(r => r is not GroupRights.None and not GroupRights.All && g.Rights.HasFlag(r))
            .Select(r => new BsonValue(r.ToString()))),
        ["allowRules"] = new BsonArray(g.AllowRules.Select(r => new BsonValue(r))),
        ["description"] = g.Description,
    };

    private static Group GroupFromDocument(BsonDocument d) => new()
    {
        Name = Text(d, "name"),
        Rights = Array(d, "rights").Aggregate(GroupRights.None, (all, r) => all | ParseRight(r)),
        AllowRules = Array(d, "allowRules").Select(r => r.IsString ? r.AsString : throw new InvalidCastException("an allow-rule is not a string")).ToList(),
        Description = Text(d, "description"),
    };

    private static GroupRights ParseRight(BsonValue value) =>
        value.IsString && Enum.TryParse<GroupRights>(value.AsString, ignoreCase: false, out var right) && Enum.IsDefined(right)
            ? right
            : throw new InvalidCastException($"unknown right '{value}'");

    private static BsonDocument ToDocument(User u) => new()
    {
        ["_id"] = SecurityNames.Key(u.Name),
        ["name"] = u.Name,
        ["group"] = u.Group,
        ["enabled"] = u.Enabled,
        ["passwordHash"] = u.PasswordHash is null ? BsonValue.Null : new BsonValue(u.PasswordHash),
        ["certificateThumbprint"] = u.CertificateThumbprint is null ? BsonValue.Null : new BsonValue(u.CertificateThumbprint),
        ["description"] = u.Description,
        ["createdAtMs"] = u.CreatedAt.ToUnixTimeMilliseconds(),
    };

    private static User UserFromDocument(BsonDocument d) => new()
    {
        Name = Text(d, "name"),
        Group = Text(d, "group"),
        Enabled = d["enabled"].IsBoolean ? d["enabled"].AsBoolean : throw new InvalidCastException("user without 'enabled'"),
        PasswordHash = OptionalText(d, "passwordHash"),
        CertificateThumbprint = OptionalText(d, "certificateThumbprint"),
        Description = Text(d, "description"),
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(d["createdAtMs"].IsNumber ? d["createdAtMs"].AsInt64 : throw new InvalidCastException("user without 'createdAtMs'")),
    };

    private static string Text(BsonDocument d, string key) =>
        d[key].IsString ? d[key].AsString : throw new InvalidCastException($"'{key}' is missing or not a string in document {d["_id"]}");

    private static string? OptionalText(BsonDocument d, string key) =>
        d[key].IsNull ? null : Text(d, key);

    private static BsonArray Array(BsonDocument d, string key) =>
        d[key].IsArray ? d[key].AsArray : throw new InvalidCastException($"'{key}' is missing or not an array in document {d["_id"]}");
}

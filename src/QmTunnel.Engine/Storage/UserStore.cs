using System.Security.Cryptography;
using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// Users and groups in the server's LiteDB file (collections <c>users</c> and <c>groups</c>, beside the tunnels of
/// <see cref="TunnelStore"/>, which hands this store its database and lock). Documents are mapped by hand; names are
/// case-insensitive keys (<c>_id</c> = upper-case name) and keep the casing they were created with.
/// Every refusal is a <see cref="QmTunnelException"/> with an id from <see cref="SecurityErrorIds"/>, raised before
/// anything is written. Guards: a group with users cannot be removed; users and groups cannot be renamed (tunnels
/// name their owner); a change that would leave no enabled user able to log in with ChangeServerConfiguration
/// (once there was one) is refused; two users cannot share a client certificate.
/// It does not check who asks (the caller checks rights) and does not hash passwords (see <see cref="PasswordHasher"/>).
/// </summary>
public sealed partial class UserStore
{
    private const string DefaultsMarker = "securityDefaults";
    private readonly LiteDatabase _db;
    private readonly object _gate;
    private readonly TimeProvider _time;
    private readonly ILiteCollection<BsonDocument> _users;
    private readonly ILiteCollection<BsonDocument> _groups;
    private readonly ILiteCollection<BsonDocument> _meta;
    private readonly Action _committed;

    /// <param name="db">The open database (owned by the caller).</param>
    /// <param name="gate">The lock every access to <paramref name="db"/> takes (the owning store's).</param>
    /// <param name="filePath">The database file, named in errors.</param>
    /// <param name="time">Clock for CreatedAt.</param>
    /// <param name="committed">Called (under the gate, outside any transaction) after each write: the owning store's checkpoint.</param>
    public UserStore(LiteDatabase db, object gate, string filePath, TimeProvider? time = null, Action? committed = null)
    {
        _committed = committed ?? (() => { });
        _db = db;
        _gate = gate;
        FilePath = filePath;
        _time = time ?? TimeProvider.System;
        _users = db.GetCollection("users");
        _groups = db.GetCollection("groups");
        _meta = db.GetCollection("meta");
    }

    public string FilePath { get; }

    private long _version;

    /// <summary>Rises with every change to users or groups: a cache of principals is good while it is unchanged.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>Reads every user and group once; a document that cannot be mapped is DatabaseCorrupt naming the file.</summary>
    public void CheckReadable()
    {
        lock (_gate)
        {
            Read(() =>
            {
                _ = AllGroups();
                _ = AllUsers();
                return 0;
            });
        }
    }

    // ---- defaults ----

    /// <summary>True once <see cref="EnsureDefaults(Func{string})"/> has run on this database.</summary>
    public bool DefaultsCreated
    {
        get
        {
            lock (_gate)
            {
                return _meta.FindById(DefaultsMarker) is not null;
            }
        }
    }

    /// <inheritdoc cref="EnsureDefaults(Func{string})"/>
    public bool EnsureDefaults(string adminPasswordHash) => EnsureDefaults(() => adminPasswordHash);

    /// <summary>
    /// On the first start of a database only: creates the Administrators group (all rights, allow everything) and the
    /// <c>admin</c> user in it with the given password verifier (asked for only then, as hashing is slow), all in one
    /// transaction. Returns true when it created the admin user, i.e. when a generated password must be shown. Later
    /// calls do nothing and return false, even if the administrator has since removed or renamed the defaults.
    /// </summary>
    public bool EnsureDefaults(Func<string> adminPasswordHash)
    {
        ArgumentNullException.ThrowIfNull(adminPasswordHash);
        lock (_gate)
        {
            if (_meta.FindById(DefaultsMarker) is not null)
            {
                return false;
            }
            var hash = adminPasswordHash();
            var admin = User.CreateAdmin(hash, Now());
            Throw(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, admin.Name, "The default admin user", admin.Validate());
            var created = false;
            Transaction(() =>
            {
                if (_groups.FindById(SecurityNames.Key(Group.AdministratorsName)) is null)
                {
                    _groups.Insert(ToDocument(Group.CreateAdministrators()));
                    Interlocked.Increment(ref _version);
                }
                if (_users.FindById(SecurityNames.Key(User.AdminName)) is null)
                {
                    var group = GroupFromDocument(_groups.FindById(SecurityNames.Key(Group.AdministratorsName)));
                    _users.Insert(ToDocument(admin with { Group = group.Name }));
                    Interlocked.Increment(ref _version);
                    created = true;
                }
                _meta.Insert(new BsonDocument { ["_id"] = DefaultsMarker, ["createdAtMs"] = Now().ToUnixTimeMilliseconds() });
            });
            _committed();
            return created;
        }
    }

    /// <summary>
    /// A random secret of <paramref name="size"/> bytes kept in the database under <paramref name="name"/>, created on
    /// first use (e.g. the key of the fake salts of <see cref="PasswordChallenge.CreateChallenge"/>).
    /// </summary>
    public byte[] GetOrCreateSecret(string name, int size = 32)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 16);
        lock (_gate)
        {
            var id = "secret:" + name;
            var doc = _meta.FindById(id);
            if (doc is not null && doc["value"].IsBinary && doc["value"].AsBinary.Length == size)
            {
                return doc["value"].AsBinary;
            }
            var secret = RandomNumberGenerator.GetBytes(size);
            _meta.Upsert(new BsonDocument { ["_id"] = id, ["value"] = secret });
            _committed();
            return secret;
        }
    }

    // ---- groups ----

    public IReadOnlyList<Group> GetGroups()
    {
        lock (_gate)
        {
            return Read(AllGroups);
        }
    }

    public Group? FindGroup(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_gate)
        {
            return Read(() => FindGroupUnlocked(name));
        }
    }

    public Group GetGroup(string name) => FindGroup(name) ?? throw GroupNotFound(name);

    /// <summary>Adds a group; GroupSettingInvalid lists every problem, GroupNameInUse when the name (any case) exists.</summary>
    public Group NewGroup(Group group)
    {
        ArgumentNullException.ThrowIfNull(group);
        Throw(SecurityErrorIds.GroupSettingInvalid, QmErrorKind.InvalidArgument, group.Name, $"Group '{group.Name}'", group.Validate());
        lock (_gate)
        {
            if (FindGroupUnlocked(group.Name) is { } existing)
            {
                throw new QmTunnelException(SecurityErrorIds.GroupNameInUse, QmErrorKind.ResourceExists, group.Name,
                    $"A group named '{existing.Name}' already exists. Choose another name, or change that group with Set-QmTunnelGroup.");
            }
            _groups.Insert(ToDocument(group));
            Interlocked.Increment(ref _version);
            _committed();
            return group;
        }
    }

    /// <summary>Changes a group (all but its name, whose case alone may change) and returns it as saved.</summary>
    public Group SetGroup(string name, Func<Group, Group> change)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(change);
        lock (_gate)
        {
            var current = Read(() => FindGroupUnlocked(name)) ?? throw GroupNotFound(name);
            var changed = change(current);
            CheckSameName("group", current.Name, changed.Name);
            Throw(SecurityErrorIds.GroupSettingInvalid, QmErrorKind.InvalidArgument, current.Name, $"Group '{current.Name}'", changed.Validate());
            var groups = Read(AllGroups).Select(g => Same(g.Name, current.Name) ? changed : g).ToList();
            CheckAdministratorKept(Read(AllUsers), groups, $"changing the rights of group '{current.Name}'");
            _groups.Update(ToDocument(changed));
            Interlocked.Increment(ref _version);
            if (changed.Name != current.Name)
            {
                // Only the case changed: keep the users' references in the same case.
                foreach (var user in Read(AllUsers).Where(u => Same(u.Group, current.Name)))
                {
                    _users.Update(ToDocument(user with { Group = changed.Name }));
                    Interlocked.Increment(ref _version);
                }
            }
            _committed();
            return changed;
        }
    }

    /// <summary>Removes an empty group; GroupNotEmpty names its users.</summary>
    public void RemoveGroup(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_gate)
        {
            var group = Read(() => FindGroupUnlocked(name)) ?? throw GroupNotFound(name);
            var members = Read(AllUsers).Where(u => Same(u.Group, group.Name)).Select(u => u.Name).ToList();
            if (members.Count > 0)
            {
                throw new QmTunnelException(SecurityErrorIds.GroupNotEmpty, QmErrorKind.InvalidOperation, group.Name,
                    $"Group '{group.Name}' still has {members.Count} user(s): {string.Join(", ", members)}. Move them to another group (Set-QmTunnelUser -Group) or remove them first.");
            }
            _groups.Delete(SecurityNames.Key(group.Name));
            Interlocked.Increment(ref _version);
            _committed();
        }
    }

    // ---- users ----

    /// <summary>All users, or those of <paramref name="group"/>, ordered by name.</summary>
    public IReadOnlyList<User> GetUsers(string? group = null)
    {
        lock (_gate)
        {
            var users = Read(AllUsers);
            return group is null ? users : users.Where(u => Same(u.Group, group)).ToList();
        }
    }

    public User? FindUser(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_gate)
        {
            return Read(() => FindUserUnlocked(name));
        }
    }

    public User GetUser(string name) => FindUser(name) ?? throw UserNotFound(name);

    /// <summary>The user a client certificate authenticates (thumbprint with or without separators, any case), or null.</summary>
    public User? FindUserByCertificate(string thumbprint)
    {
        ArgumentNullException.ThrowIfNull(thumbprint);
        var normalized = PeerCertificatePolicy.Normalize(thumbprint);
        lock (_gate)
        {
            return Read(AllUsers).FirstOrDefault(u => u.CertificateThumbprint == normalized);
        }
    }

    /// <summary>A user with its group, for a login or an access check; null when the user does not exist.</summary>
    public SecurityPrincipal? FindPrincipal(string userName)
    {
        ArgumentNullException.ThrowIfNull(userName);
        lock (_gate)
        {
            return Read(() =>
            {
                var user = FindUserUnlocked(userName);
                var group = user is null ? null : FindGroupUnlocked(user.Group);
                return user is null || group is null ? null : new SecurityPrincipal(user, group);
            });
        }
    }

    /// <summary>
    /// Adds a user (CreatedAt set to now when not given; the thumbprint stored as upper-case hex). UserSettingInvalid
    /// lists every problem; GroupNotFound, UserNameInUse and UserCertificateInUse as their names say.
    /// </summary>
    public User NewUser(User user)
    {
        ArgumentNullException.ThrowIfNull(user);
        Throw(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, user.Name, $"User '{user.Name}'", user.Validate());
        lock (_gate)
        {
            if (Read(() => FindUserUnlocked(user.Name)) is { } existing)
            {
                throw new QmTunnelException(SecurityErrorIds.UserNameInUse, QmErrorKind.ResourceExists, user.Name,
                    $"A user named '{existing.Name}' already exists. Choose another name, or change that user with Set-QmTunnelUser.");
            }
            var group = Read(() => FindGroupUnlocked(user.Group)) ?? throw GroupNotFound(user.Group);
            var saved = Normalize(user) with
            {
                Group = group.Name,
                CreatedAt = user.CreatedAt == default ? Now() : Truncate(user.CreatedAt),
            };
            CheckCertificateFree(saved);
            _users.Insert(ToDocument(saved));
            Interlocked.Increment(ref _version);
            _committed();
            return saved;
        }
    }

    /// <summary>
    /// Changes a user (all but its name, whose case alone may change, and CreatedAt) and returns it as saved. Refused
    /// with AdministratorRequired when it would disable, strip or move the last user who can administer the server.
    /// </summary>
    public User SetUser(string name, Func<User, User> change)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(change);
        lock (_gate)
        {
            var current = Read(() => FindUserUnlocked(name)) ?? throw UserNotFound(name);
            var changed = change(current) with { CreatedAt = current.CreatedAt };
            CheckSameName("user", current.Name, changed.Name);
            Throw(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, current.Name, $"User '{current.Name}'", changed.Validate());
            var group = Read(() => FindGroupUnlocked(changed.Group)) ?? throw GroupNotFound(changed.Group);
            changed = Normalize(changed) with { Group = group.Name };
            CheckCertificateFree(changed);
            var users = Read(AllUsers).Select(u => Same(u.Name, current.Name) ? changed : u).ToList();
            CheckAdministratorKept(users, Read(AllGroups), $"changing user '{current.Name}'");
            _users.Update(ToDocument(changed));
            Interlocked.Increment(ref _version);
            _committed();
            return changed;
        }
    }

    /// <summary>Removes a user (its tunnels are the caller's business). Refused for the last user who can administer the server.</summary>
    public void RemoveUser(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_gate)
        {
            var user = Read(() => FindUserUnlocked(name)) ?? throw UserNotFound(name);
            var users = Read(AllUsers).Where(u => !Same(u.Name, user.Name)).ToList();
            CheckAdministratorKept(users, Read(AllGroups), $"removing user '{user.Name}'");
            _users.Delete(SecurityNames.Key(user.Name));
            Interlocked.Increment(ref _version);
            _committed();
        }
    }
}

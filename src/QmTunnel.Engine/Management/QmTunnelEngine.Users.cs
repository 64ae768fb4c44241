using QmTunnel.Engine.Security;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>
/// Users, groups and the server's saved settings (the API of New/Get/Set/Remove-QmTunnelUser, …-QmTunnelGroup and
/// Get/Set-QmTunnelServerConfig). Every method takes the <c>caller</c>: null is the in-process host (the OS user that
/// owns the data path), who may do everything; a logged-in user needs the group right ChangeServerConfiguration,
/// except to read its own user and to change its own password. The caller's rights are read from the database at
/// each call, so a right taken away applies at once. The guards on the data (last administrator, group not empty,
/// unique certificate, no rename) are <see cref="UserStore"/>'s. No method returns a password verifier.
/// Passwords are hashed outside the engine's gate (a hash takes about 0.3 s), between two gated steps that both
/// check the caller and the server state.
/// </summary>
public sealed partial class QmTunnelEngine
{
    public const int MinPasswordLength = 8;
    /// <summary>Lowest PBKDF2 iteration count Set-QmTunnelServerConfig accepts (OWASP's 2023 floor is 600,000).</summary>
    public const int MinPasswordIterations = 100_000;
    private const string PasswordIterationsSetting = "passwordIterations";
    private const string MaxManagementSessionsSetting = "maxManagementSessions";
    /// <summary>The original qmTunnel's default for concurrent management connections.</summary>
    public const int DefaultMaxManagementSessions = 100;

    // ---- users ----

    /// <summary>
    /// All users, or those of <paramref name="group"/> (GroupNotFound when it does not exist), ordered by name. A
    /// caller without ChangeServerConfiguration gets only its own user.
    /// </summary>
    public IReadOnlyList<UserInfo> GetUsers(string? group = null, SecurityPrincipal? caller = null)
    {
        _gate.Wait();
        try
        {
            EnsureRunning();
            var users = _store!.Users;
            var self = CurrentPrincipal(caller);
            if (group is not null)
            {
                // Only an administrator learns which groups exist.
                if (self is null || self.CanChangeServerConfiguration)
                {
                    _ = users.GetGroup(group);
                }
            }
            var list = users.GetUsers(group);
            if (self is not null && !self.CanChangeServerConfiguration)
            {
                list = list.Where(u => SameName(u.Name, self.User.Name)).ToList();
            }
            return list.Select(UserInfo.From).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>One user (UserNotFound when there is none). A caller without ChangeServerConfiguration may get only itself.</summary>
    public UserInfo GetUser(string name, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"get user '{name}'", name, self => SameName(self.User.Name, name));
            return UserInfo.From(_store!.Users.GetUser(name));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Adds a user to <paramref name="group"/> with a password (8 to 1024 characters; hashed with the saved
    /// PasswordIterations) and/or a client certificate's SHA-256 thumbprint; neither is allowed (the user cannot log
    /// in until one is set). Refusals (UserSettingInvalid, UserNameInUse, GroupNotFound, UserCertificateInUse,
    /// PasswordInvalid, PermissionDenied) come before anything is written.
    /// </summary>
    public UserInfo NewUser(string name, string group, string? password = null, string? certificateThumbprint = null,
        bool enabled = true, string description = "", SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(group);
        var user = new User
        {
            Name = name,
            Group = group,
            Enabled = enabled,
            CertificateThumbprint = string.IsNullOrEmpty(certificateThumbprint) ? null : certificateThumbprint,
            Description = description ?? string.Empty,
        };
        int iterations;
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"create user '{name}'", name);
            // The cheap checks first, so a refused user costs no hashing.
            var problems = user.Validate();
            if (problems.Count > 0)
            {
                throw new QmTunnelException(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, name,
                    $"User '{name}' is not valid: {string.Join(" ", problems)}");
            }
            if (_store!.Users.FindUser(name) is { } existing)
            {
                throw new QmTunnelException(SecurityErrorIds.UserNameInUse, QmErrorKind.ResourceExists, name,
                    $"A user named '{existing.Name}' already exists. Choose another name, or change that user with Set-QmTunnelUser.");
            }
            _ = _store.Users.GetGroup(group);
            CheckPassword(password, name);
            iterations = ReadPasswordIterations();
        }
        finally
        {
            _gate.Release();
        }
        if (password is not null)
        {
            user = user with { PasswordHash = PasswordHasher.Hash(password, iterations) };
        }
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"create user '{name}'", name);
            return UserInfo.From(_store!.Users.NewUser(user));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Changes the fields of <paramref name="change"/> that are given. A caller without ChangeServerConfiguration may
    /// change only its own password. AdministratorRequired when the change would leave nobody able to manage the
    /// server; the other refusals as <see cref="NewUser"/>.
    /// </summary>
    public UserInfo SetUser(string name, UserChange change, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(change);
        var action = change.IsPasswordOnly ? $"change the password of user '{name}'" : $"change user '{name}'";
        Func<SecurityPrincipal, bool> ownPassword = self => change.IsPasswordOnly && SameName(self.User.Name, name);
        string? hash = null;
        if (change.Password is not null)
        {
            int iterations;
            _gate.Wait();
            try
            {
                EnsureRunning();
                Authorize(caller, action, name, ownPassword);
                _ = _store!.Users.GetUser(name);
                if (change.Group is not null)
                {
                    _ = _store.Users.GetGroup(change.Group);
                }
                CheckPassword(change.Password, name);
                iterations = ReadPasswordIterations();
            }
            finally
            {
                _gate.Release();
            }
            hash = PasswordHasher.Hash(change.Password, iterations);
        }
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, action, name, ownPassword);
            var saved = _store!.Users.SetUser(name, user => user with
            {
                Group = change.Group ?? user.Group,
                Enabled = change.Enabled ?? user.Enabled,
                PasswordHash = hash ?? user.PasswordHash,
                CertificateThumbprint = change.CertificateThumbprint is null ? user.CertificateThumbprint
                    : change.CertificateThumbprint.Length == 0 ? null : change.CertificateThumbprint,
                Description = change.Description ?? user.Description,
            });
            if (!saved.Enabled)
            {
                CloseLinksOf(saved.Name, $"user '{saved.Name}' was disabled on this server");
            }
            return UserInfo.From(saved);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Removes a user (UserNotFound; AdministratorRequired for the last one who can manage the server). A user that
    /// still owns tunnels is refused with UserHasTunnels naming them: tunnels name their owner, and a user created
    /// later under the same name would otherwise inherit them.
    /// </summary>
    public void RemoveUser(string name, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"remove user '{name}'", name);
            var user = _store!.Users.GetUser(name);
            var owned = _tunnels.Values.Select(t => t.Profile).Where(p => SameName(p.Owner, user.Name)).Select(p => p.Name)
                .Order(StringComparer.OrdinalIgnoreCase).ToList();
            if (owned.Count > 0)
            {
                throw new QmTunnelException(SecurityErrorIds.UserHasTunnels, QmErrorKind.InvalidOperation, user.Name,
                    $"User '{user.Name}' still owns {owned.Count} tunnel(s): {string.Join(", ", owned)}. Remove them with Remove-QmTunnel first, or disable the user instead (Set-QmTunnelUser {user.Name} -Enabled:$false).");
            }
            _store.Users.RemoveUser(user.Name);
            CloseLinksOf(user.Name, $"user '{user.Name}' was removed from this server");
        }
        finally
        {
            _gate.Release();
        }
    }

    // ---- helpers (called under _gate, server running) ----

    private ServerConfig ReadServerConfig() => new()
    {
        ServerName = Options.ServerName,
        ListenAddress = Options.ListenAddress,
        Port = Port,
        AllowPlainLinks = _allowPlainLinks,
        CertificateThumbprint = CertificateThumbprint,
        PasswordIterations = ReadPasswordIterations(),
        MaxManagementSessions = _maxManagementSessions,
        ManagementSessions = ManagementSessionCount,
        MaxManagementSessionsPerUser = _maxManagementSessionsPerUser,
        ManagementIdleTimeout = _managementIdleTimeout,
        MaxStreamsPerLink = _linkLimits.MaxStreams,
        LinkIdleTimeout = _linkIdleTimeout,
        MaxLinks = _linkLimits.MaxLinks,
        MaxBufferedMB = (int)(_linkLimits.MaxBufferedBytes / (1024 * 1024)),
        UdpPortRange = _udp.PortRange.ToString(),
        AcceptCompression = _linkLimits.AcceptCompression,
        DataPath = Options.DataPath,
    };

    /// <summary>The saved PBKDF2 iteration count for new passwords; the default when unset or out of range.</summary>
    private int ReadPasswordIterations() =>
        _store!.GetIntSetting(PasswordIterationsSetting) is { } saved && saved is >= MinPasswordIterations and <= PasswordHasher.MaxIterations
            ? saved
            : PasswordHasher.DefaultIterations;

    /// <summary>
    /// The caller as it is now in the database (null for the in-process host). A caller whose user was removed or
    /// disabled since it logged in is refused.
    /// </summary>
    /// <summary>The caller as the database has it now (rights changed since its login apply at once); null for the host.</summary>
    internal SecurityPrincipal? CurrentPrincipal(SecurityPrincipal? caller)
    {
        if (caller is null)
        {
            return null;
        }
        var current = _store!.Users.FindPrincipal(caller.User.Name);
        if (current is null || !current.User.Enabled)
        {
            throw new QmTunnelException(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, caller.User.Name,
                $"User '{caller.User.Name}' {(current is null ? "no longer exists" : "is disabled")} on this server, so it may do nothing. Log in again as an enabled user; an administrator can enable it with Set-QmTunnelUser {caller.User.Name} -Enabled.");
        }
        return current;
    }

    /// <summary>
    /// The one rights check of this API: the in-process host (null) may do everything; a user needs its group's
    /// ChangeServerConfiguration, unless <paramref name="selfAllowed"/> allows this operation on itself.
    /// </summary>
    internal void Authorize(SecurityPrincipal? caller, string action, object? target, Func<SecurityPrincipal, bool>? selfAllowed = null)
    {
        var self = CurrentPrincipal(caller);
        if (self is null || self.CanChangeServerConfiguration || (selfAllowed?.Invoke(self) ?? false))
        {
            return;
        }
        var group = self.Group;
        throw new QmTunnelException(SecurityErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, target,
            $"User '{self.User.Name}' (group '{group.Name}') lacks the right {GroupRights.ChangeServerConfiguration} needed to {action}; " +
            $"an administrator can grant it with Set-QmTunnelGroup {group.Name} -Rights {FormatRights(group.Rights | GroupRights.ChangeServerConfiguration)}.");
    }

    private static string FormatRights(GroupRights rights) =>
        rights == GroupRights.All ? nameof(GroupRights.All)
            : string.Join(", ", Enum.GetValues<GroupRights>().Where(r => r is not GroupRights.None and not GroupRights.All && (rights & r) == r));

    /// <summary>8 to 1024 characters (null = no password); PasswordInvalid otherwise.</summary>
    private static void CheckPassword(string? password, string userName)
    {
        if (password is null)
        {
            return;
        }
        if (password.Length < MinPasswordLength || password.Length > PasswordHasher.MaxPasswordLength)
        {
            throw new QmTunnelException(SecurityErrorIds.PasswordInvalid, QmErrorKind.InvalidArgument, userName,
                $"The password of user '{userName}' is {password.Length} characters long: use {MinPasswordLength} to {PasswordHasher.MaxPasswordLength} characters (a long passphrase is best).");
        }
    }

    /// <summary>Each rule parsed (AllowRuleInvalid names the first bad one); returned trimmed, as they are matched.</summary>
    private static List<string> ParseRules(IReadOnlyList<string> rules) =>
        rules.Select(r => AllowRule.Parse(r).Text).ToList();

    private static bool SameName(string a, string b) => SecurityNames.Key(a) == SecurityNames.Key(b);
}

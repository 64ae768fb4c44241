using QmTunnel.Engine.Security;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>Groups and the saved server configuration (New/Get/Set/Remove-QmTunnelGroup, Get/Set-QmTunnelServerConfig).</summary>
public sealed partial class QmTunnelEngine
{
    // ---- groups ----

    /// <summary>All groups, ordered by name, each with its number of users.</summary>
    public IReadOnlyList<GroupInfo> GetGroups(SecurityPrincipal? caller = null)
    {
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, "list the groups", "groups");
            var users = _store!.Users.GetUsers();
            return _store.Users.GetGroups().Select(g => GroupInfo.From(g, users.Count(u => SameName(u.Group, g.Name)))).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>One group (GroupNotFound when there is none).</summary>
    public GroupInfo GetGroup(string name, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"get group '{name}'", name);
            var group = _store!.Users.GetGroup(name);
            return GroupInfo.From(group, _store.Users.GetUsers(group.Name).Count);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Adds a group. Each allow-rule is parsed first (AllowRuleInvalid names the rule, the field and the format);
    /// GroupSettingInvalid, GroupNameInUse as their names say. An empty rule list allows no tunnel.
    /// </summary>
    public GroupInfo NewGroup(string name, GroupRights rights, IReadOnlyList<string> allowRules, string description = "", SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(allowRules);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"create group '{name}'", name);
            var group = new Group
            {
                Name = name,
                Rights = rights,
                AllowRules = ParseRules(allowRules),
                Description = description ?? string.Empty,
            };
            return GroupInfo.From(_store!.Users.NewGroup(group), 0);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Changes the fields of <paramref name="change"/> that are given (the allow-rules as a whole list).
    /// AdministratorRequired when taking ChangeServerConfiguration away would leave nobody able to manage the server.
    /// </summary>
    public GroupInfo SetGroup(string name, GroupChange change, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(change);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"change group '{name}'", name);
            var rules = change.AllowRules is null ? null : ParseRules(change.AllowRules);
            var saved = _store!.Users.SetGroup(name, group => group with
            {
                Rights = change.Rights ?? group.Rights,
                AllowRules = rules ?? group.AllowRules,
                Description = change.Description ?? group.Description,
            });
            return GroupInfo.From(saved, _store.Users.GetUsers(saved.Name).Count);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Removes a group without users (GroupNotFound, GroupNotEmpty naming its users).</summary>
    public void RemoveGroup(string name, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, $"remove group '{name}'", name);
            _store!.Users.RemoveGroup(name);
        }
        finally
        {
            _gate.Release();
        }
    }

    // ---- server configuration ----

    public ServerConfig GetServerConfig(SecurityPrincipal? caller = null)
    {
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, "read the server configuration", "server configuration");
            return ReadServerConfig();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Saves the settings given and applies them at once: AllowPlainLinks to the next link accepted (links already up
    /// stay), PasswordIterations to the next password set, MaxManagementSessions and MaxManagementSessionsPerUser to the
    /// next session (sessions already open stay), MaxStreamsPerLink to the next stream opened on any link, MaxLinks to
    /// the next link accepted (links up stay), MaxBufferedMB to the next reservation (a raise wakes waiting senders), the
    /// idle timeouts to sessions and links idle now, AcceptCompression to the next link accepted (links up keep what they
    /// agreed). ServerSettingInvalid for a value out of range (nothing is changed then).
    /// </summary>
    public ServerConfig SetServerConfig(ServerConfigChange change, SecurityPrincipal? caller = null)
    {
        ArgumentNullException.ThrowIfNull(change);
        _gate.Wait();
        try
        {
            EnsureRunning();
            Authorize(caller, "change the server configuration", "server configuration");
            if (change.PasswordIterations is { } iterations && iterations is < MinPasswordIterations or > PasswordHasher.MaxIterations)
            {
                throw new QmTunnelException(SecurityErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, iterations,
                    $"PasswordIterations {iterations} is out of range: give {MinPasswordIterations} to {PasswordHasher.MaxIterations} ({PasswordHasher.DefaultIterations} is the default). More iterations make a stolen database harder to crack and each login slower.");
            }
            CheckLimits(change);
            ApplyLimits(change);
            if (change.PasswordIterations is { } newIterations)
            {
                _store!.SetIntSetting(PasswordIterationsSetting, newIterations);
            }
            if (change.AllowPlainLinks is { } allow)
            {
                _store!.SetBoolSetting(AllowPlainLinksSetting, allow);
                // The accept loop reads it for each new link (the gate's release publishes the write).
                _allowPlainLinks = allow;
            }
            return ReadServerConfig();
        }
        finally
        {
            _gate.Release();
        }
    }
}

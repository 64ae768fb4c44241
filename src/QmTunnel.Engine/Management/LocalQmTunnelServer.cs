using System.Runtime.CompilerServices;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management;

/// <summary>
/// <see cref="IQmTunnelServer"/> over an engine in this process, acting as <see cref="Caller"/>: null is the host
/// (the OS user that owns the data path: every right), a user is held to its rights — tunnels it does not administer
/// are invisible to it and refused with PermissionDenied, users/groups/configuration/pins need
/// ChangeServerConfiguration. The management service serves each remote session through one of these.
/// </summary>
public sealed class LocalQmTunnelServer(QmTunnelEngine engine, SecurityPrincipal? caller = null) : IQmTunnelServer
{
    public QmTunnelEngine Engine { get; } = engine;
    public SecurityPrincipal? Caller { get; } = caller;

    /// <summary>What every object this answers with carries as its origin: the in-process server (this engine's run).</summary>
    public QmTunnelOrigin Origin { get; } = QmTunnelOrigin.InProcess(engine.ServerId);
    public string Address => Caller is null ? "in-process" : $"{Engine.GetServerInfo().Address} as {Caller.User.Name}";

    /// <summary>
    /// The server's state. A caller without ChangeServerConfiguration gets what any peer can see anyway (address,
    /// certificate, whether plain links are accepted, when it started) and the number of tunnels it administers, not
    /// the data path, process id or the counters of other users' traffic.
    /// </summary>
    public Task<ServerInfo> GetServerInfoAsync(CancellationToken cancellationToken)
    {
        var self = Engine.CurrentPrincipal(Caller);
        var info = self is null || self.CanChangeServerConfiguration
            ? Engine.GetServerInfo()
            : Engine.GetServerInfo(full: false, visibleTunnels: Engine.GetTunnels().Count(t => MayAdminister(self, t)));
        return Task.FromResult(info.With(Origin));
    }

    // ---- tunnels ----

    private bool MayAdminister(SecurityPrincipal? self, TunnelInfo tunnel) => self is null || self.CanAdministerTunnel(tunnel.Owner, tunnel.OwnerGroup);

    /// <summary>
    /// The tunnel, when the caller may see and change it; otherwise TunnelNotFound, the same answer as for a tunnel
    /// that does not exist, so a user learns nothing of the tunnels it may not administer (not even their owner).
    /// </summary>
    private TunnelInfo Accessible(string name)
    {
        var tunnel = Engine.GetTunnel(name);
        var self = Engine.CurrentPrincipal(Caller);
        if (!MayAdminister(self, tunnel))
        {
            throw QmTunnelEngine.TunnelNotFound(name);
        }
        return tunnel;
    }

    public Task<IReadOnlyList<TunnelInfo>> GetTunnelsAsync(CancellationToken cancellationToken)
    {
        var self = Engine.CurrentPrincipal(Caller);
        return Task.FromResult<IReadOnlyList<TunnelInfo>>(Engine.GetTunnels().Where(t => MayAdminister(self, t)).ToList().With(Origin));
    }

    public Task<TunnelInfo> GetTunnelAsync(string name, CancellationToken cancellationToken) => Task.FromResult(Accessible(name).With(Origin));

    public Task<TunnelInfo> NewTunnelAsync(TunnelProfile profile, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken) =>
        Stamp(Engine.NewTunnelAsync(profile, logins, Engine.CurrentPrincipal(Caller), cancellationToken));

    public Task<TunnelInfo> StartTunnelAsync(string name, CancellationToken cancellationToken)
    {
        Accessible(name);
        return Stamp(Engine.StartTunnelAsync(name, cancellationToken));
    }

    public Task<TunnelInfo> StopTunnelAsync(string name, CancellationToken cancellationToken)
    {
        Accessible(name);
        return Stamp(Engine.StopTunnelAsync(name, cancellationToken));
    }

    public Task<TunnelInfo> SetTunnelAsync(string name, TunnelChange change, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(change);
        Accessible(name);
        return Stamp(Engine.SetTunnelAsync(name, change.Apply, logins, cancellationToken));
    }

    public Task RemoveTunnelAsync(string name, CancellationToken cancellationToken)
    {
        Accessible(name);
        return Engine.RemoveTunnelAsync(name, cancellationToken);
    }

    public async Task<TunnelStats> GetTunnelStatsAsync(string name, CancellationToken cancellationToken)
    {
        Accessible(name);
        return (await Engine.GetTunnelStatsAsync(name, cancellationToken).ConfigureAwait(false)).With(Origin);
    }

    public Task<IReadOnlyList<ConnectionInfo>> GetConnectionsAsync(string name, CancellationToken cancellationToken)
    {
        Accessible(name);
        return Task.FromResult(Engine.GetConnections(name).With(Origin));
    }

    public IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken) =>
        Watch(names, interval, Engine.WatchTunnelStatsAsync, s => s.Name, cancellationToken);

    public IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken) =>
        Watch(names, interval, Engine.WatchConnectionsAsync, c => c.Tunnel, cancellationToken);

    /// <summary>The engine's watch, limited to the tunnels the caller administers (checked once per update).</summary>
    private async IAsyncEnumerable<IReadOnlyList<T>> Watch<T>(IReadOnlyList<string>? names, TimeSpan interval,
        Func<IReadOnlyList<string>?, TimeSpan, CancellationToken, IAsyncEnumerable<IReadOnlyList<T>>> watch, Func<T, string> tunnelOf,
        [EnumeratorCancellation] CancellationToken cancellationToken) where T : QmTunnelObject
    {
        if (Caller is null)
        {
            await foreach (var update in watch(names, interval, cancellationToken).ConfigureAwait(false))
            {
                yield return update.With(Origin);
            }
            yield break;
        }
        foreach (var name in names ?? [])
        {
            Accessible(name);
        }
        await foreach (var update in watch(names, interval, cancellationToken).ConfigureAwait(false))
        {
            var self = Engine.CurrentPrincipal(Caller);
            var visible = Engine.GetTunnels().Where(t => MayAdminister(self, t)).Select(t => t.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
            yield return update.Where(item => visible.Contains(tunnelOf(item))).ToList().With(Origin);
        }
    }

    // ---- known servers ----

    public Task<IReadOnlyList<KnownServer>> GetKnownServersAsync(CancellationToken cancellationToken)
    {
        Engine.Authorize(Caller, "list the known servers", null);
        return Task.FromResult(Engine.GetKnownServers().With(Origin));
    }

    public Task RemoveKnownServerAsync(string server, CancellationToken cancellationToken)
    {
        Engine.Authorize(Caller, $"remove the pin of {server}", server);
        Engine.RemoveKnownServer(server);
        return Task.CompletedTask;
    }

    // ---- users, groups, configuration (the engine checks the caller) ----

    public Task<IReadOnlyList<UserInfo>> GetUsersAsync(string? group, CancellationToken cancellationToken) => Task.FromResult(Engine.GetUsers(group, Caller).With(Origin));
    public Task<UserInfo> GetUserAsync(string name, CancellationToken cancellationToken) => Task.FromResult(Engine.GetUser(name, Caller).With(Origin));

    public Task<UserInfo> NewUserAsync(string name, string group, string? password, string? certificateThumbprint, bool enabled, string description, CancellationToken cancellationToken) =>
        Task.Run(() => Engine.NewUser(name, group, password, certificateThumbprint, enabled, description, Caller).With(Origin), cancellationToken);

    public Task<UserInfo> SetUserAsync(string name, UserChange change, CancellationToken cancellationToken) =>
        Task.Run(() => Engine.SetUser(name, change, Caller).With(Origin), cancellationToken);

    public Task RemoveUserAsync(string name, CancellationToken cancellationToken)
    {
        Engine.RemoveUser(name, Caller);
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<GroupInfo>> GetGroupsAsync(CancellationToken cancellationToken) => Task.FromResult(Engine.GetGroups(Caller).With(Origin));
    public Task<GroupInfo> GetGroupAsync(string name, CancellationToken cancellationToken) => Task.FromResult(Engine.GetGroup(name, Caller).With(Origin));

    public Task<GroupInfo> NewGroupAsync(string name, GroupRights rights, IReadOnlyList<string> allowRules, string description, CancellationToken cancellationToken) =>
        Task.FromResult(Engine.NewGroup(name, rights, allowRules, description, Caller).With(Origin));

    public Task<GroupInfo> SetGroupAsync(string name, GroupChange change, CancellationToken cancellationToken) => Task.FromResult(Engine.SetGroup(name, change, Caller).With(Origin));

    public Task RemoveGroupAsync(string name, CancellationToken cancellationToken)
    {
        Engine.RemoveGroup(name, Caller);
        return Task.CompletedTask;
    }

    public Task<ServerConfig> GetServerConfigAsync(CancellationToken cancellationToken) => Task.FromResult(Engine.GetServerConfig(Caller).With(Origin));
    public Task<ServerConfig> SetServerConfigAsync(ServerConfigChange change, CancellationToken cancellationToken) => Task.FromResult(Engine.SetServerConfig(change, Caller).With(Origin));

    private async Task<TunnelInfo> Stamp(Task<TunnelInfo> answer) => (await answer.ConfigureAwait(false)).With(Origin);

    // ---- the server itself ----

    public Task StopServerAsync(CancellationToken cancellationToken)
    {
        Engine.RequestStop(Caller);
        return Task.CompletedTask;
    }
}

using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Tunnels;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

public sealed partial class QmTunnelEngine
{
    private TunnelRuntime CreateRuntime(TunnelProfile profile)
    {
        var errors = profile.Validate();
        if (errors.Count > 0)
        {
            var id = TunnelProfile.IsValidName(profile.Name) ? ErrorIds.TunnelSettingInvalid : ErrorIds.TunnelNameInvalid;
            throw new QmTunnelException(id, QmErrorKind.InvalidArgument, profile.Name, string.Join(" ", errors));
        }
        var (listen, target) = CheckedEnds(profile);
        CheckReverseEnds(profile, listen, target);
        return new TunnelRuntime(profile, _pool!, _linkOptions, _loggerFactory.CreateLogger("QmTunnel.Tunnel"), _time)
        {
            OwnerCheck = request => OwnerDenial(profile.Owner, request),
            Binds = _router?.Binds,
        };
    }

    // The database keeps milliseconds: so does the profile in memory, so times do not change across a restart.
    private static DateTimeOffset TruncateToMilliseconds(DateTimeOffset t) => DateTimeOffset.FromUnixTimeMilliseconds(t.ToUnixTimeMilliseconds());

    private TunnelRuntime Find(string name)
    {
        EnsureRunning();
        if (string.IsNullOrEmpty(name) || !_tunnels.TryGetValue(name, out var runtime))
        {
            throw TunnelNotFound(name);
        }
        return runtime;
    }

    /// <summary>The one answer for a tunnel that is not there, or not there for this caller.</summary>
    internal static QmTunnelException TunnelNotFound(string name) => new(ErrorIds.TunnelNotFound, QmErrorKind.ObjectNotFound, name,
        $"There is no tunnel named '{name}' on this server. List the tunnels with Get-QmTunnel.");

    private TunnelInfo Info(TunnelRuntime runtime) => new(runtime.Profile, runtime.State, runtime.BoundListen, runtime.LastError);

    /// <summary>The profile as the engine keeps it, hop keys included (tests: output objects must not have them).</summary>
    internal TunnelProfile ProfileWithCredentials(string name)
    {
        _gate.Wait();
        try
        {
            return Find(name).Profile;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Creates (and saves, when Persistent) a tunnel, stopped, with the credentials its profile holds.</summary>
    public TunnelInfo NewTunnel(TunnelProfile profile) => NewTunnelAsync(profile).GetAwaiter().GetResult();

    /// <summary>
    /// Creates (and saves, when Persistent) a tunnel, stopped, owned by <paramref name="caller"/> (null: the host
    /// process, as admin). <paramref name="logins"/> (one per Via entry, null where none) are turned into the keys the
    /// profile keeps; when any is given the whole chain is then checked (every server authenticates and applies its
    /// allow-rules), so wrong credentials or a refused rule fail here and nothing is saved. Errors: TunnelNameInUse,
    /// TunnelNameInvalid, TunnelSettingInvalid, EndpointUriInvalid, PermissionDenied, AuthenticationFailed,
    /// HopConnectFailed, CredentialOnPlainLink.
    /// </summary>
    public async Task<TunnelInfo> NewTunnelAsync(TunnelProfile profile, IReadOnlyList<HopLogin?>? logins = null, Security.SecurityPrincipal? caller = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(profile);
        var now = TruncateToMilliseconds(_time.GetUtcNow());
        profile = profile with
        {
            CreatedAt = now,
            ModifiedAt = now,
            AutoStart = false,
            Owner = caller?.User.Name ?? Security.User.AdminName,
            OwnerGroup = caller?.Group.Name ?? Security.Group.AdministratorsName,
        };
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckNewName(profile.Name);
            CreateRuntime(profile); // all settings valid before anything goes on the network
            CheckMayBuild(caller, profile);
            CheckHopLogins(profile, logins);
        }
        finally
        {
            _gate.Release();
        }
        TunnelRuntime runtime;
        if (logins is not null && logins.Any(l => l is not null))
        {
            var hops = ParseVia(profile);
            var held = profile.Credentials.Count == hops.Count ? hops.Select((h, i) => (h, profile.Credentials[i])).ToList() : [];
            var credentials = await ResolveCredentialsAsync(profile, logins, held, cancellationToken).ConfigureAwait(false);
            profile = profile with { Credentials = credentials, Via = WithUsers(hops, credentials) };
            runtime = CreateRuntime(profile);
            await CheckChainAsync(runtime, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            runtime = CreateRuntime(profile);
        }
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckNewName(profile.Name);
            if (profile.Persistent)
            {
                _store!.Save(profile);
            }
            _tunnels[profile.Name] = runtime;
            EngineLog.TunnelChanged(_logger, profile.Name, "created");
            return Info(runtime);
        }
        finally
        {
            _gate.Release();
        }
    }

    private void CheckNewName(string name)
    {
        EnsureRunning();
        if (!TunnelProfile.IsValidName(name))
        {
            throw new QmTunnelException(ErrorIds.TunnelNameInvalid, QmErrorKind.InvalidArgument, name ?? string.Empty,
                $"Name '{name}' is not valid: use 1 to {TunnelProfile.MaxNameLength} letters, digits, '-', '_' or '.', starting with a letter or digit.");
        }
        if (_tunnels.ContainsKey(name))
        {
            throw new QmTunnelException(ErrorIds.TunnelNameInUse, QmErrorKind.ResourceExists, name,
                $"A tunnel named '{name}' already exists. Choose another name, or change it with Set-QmTunnel -Name {name}.");
        }
    }

    /// <summary>The hop addresses with the user each logs in as (<c>qmt://alice@host:9200</c>), as Via shows them.</summary>
    private static List<string> WithUsers(IReadOnlyList<Endpoints.EndpointUri> hops, IReadOnlyList<HopCredential?> credentials) =>
        hops.Select((h, i) => credentials[i] is { User.Length: > 0 } c ? (h with { User = c.User }).ToString() : h.ToString()).ToList();

    private static List<Endpoints.EndpointUri> ParseVia(TunnelProfile profile) =>
        profile.Via.Select((v, i) => Endpoints.EndpointUri.ParseServer(v, $"Via[{i}]")).ToList();

    /// <summary>A remote caller needs CreateTunnels and an allow-rule of its group for the tunnel on this server.</summary>
    private void CheckMayBuild(Security.SecurityPrincipal? caller, TunnelProfile profile)
    {
        if (caller is null)
        {
            return;
        }
        // a socks5:// tunnel has no target yet: its bind and servers are checked here, each client's target per connection
        var (listen, target) = CheckedEnds(profile);
        var request = Security.AccessControl.RequestFor(listen, ParseVia(profile), target,
            profile.Direction == TunnelDirection.RemoteToLocal ? Security.RuleDirection.RemoteToLocal : Security.RuleDirection.LocalToRemote);
        if (Security.AccessControl.Denial(caller, request, Options.ServerName) is { } denial)
        {
            throw new QmTunnelException(ErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, profile.Name, "The tunnel was refused by " + denial);
        }
    }

    public IReadOnlyList<TunnelInfo> GetTunnels()
    {
        _gate.Wait();
        try
        {
            EnsureRunning();
            return _tunnels.Values.OrderBy(t => t.Profile.Name, StringComparer.OrdinalIgnoreCase).Select(Info).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    public TunnelInfo GetTunnel(string name)
    {
        _gate.Wait();
        try
        {
            return Info(Find(name));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Starts listening (PortInUse, BindFailed) and records that the tunnel runs, so a restart brings it back.</summary>
    public async Task<TunnelInfo> StartTunnelAsync(string name, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var runtime = Find(name);
            await runtime.StartAsync(cancellationToken).ConfigureAwait(false);
            SaveAutoStart(runtime, true);
            return Info(runtime);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<TunnelInfo> StopTunnelAsync(string name, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var runtime = Find(name);
            await runtime.StopAsync().ConfigureAwait(false);
            SaveAutoStart(runtime, false);
            return Info(runtime);
        }
        finally
        {
            _gate.Release();
        }
    }

    private void SaveAutoStart(TunnelRuntime runtime, bool autoStart)
    {
        if (runtime.Profile.AutoStart == autoStart)
        {
            return;
        }
        var profile = runtime.Profile with { AutoStart = autoStart, ModifiedAt = TruncateToMilliseconds(_time.GetUtcNow()) };
        var replacement = CreateRuntimeLike(runtime, profile);
        if (profile.Persistent)
        {
            _store!.Save(profile);
        }
        _tunnels[profile.Name] = replacement;
    }

    // AutoStart lives in the profile, which is immutable: the running runtime keeps running under the new profile.
    private TunnelRuntime CreateRuntimeLike(TunnelRuntime runtime, TunnelProfile profile)
    {
        runtime.ReplaceProfile(profile);
        return runtime;
    }

    /// <summary>
    /// Changes a tunnel's settings. The change is validated as a whole first. A running tunnel restarts (its open
    /// connections are closed) only when its listen address, chain, target or logins change (<see cref="NeedsRestart"/>);
    /// when the restart fails, the old settings are put back. Other settings apply to its next connections.
    /// </summary>
    public Task<TunnelInfo> SetTunnelAsync(string name, Func<TunnelProfile, TunnelProfile> change, CancellationToken cancellationToken = default) =>
        SetTunnelAsync(name, change, null, cancellationToken);

    /// <summary>
    /// As <see cref="SetTunnelAsync(string, Func{TunnelProfile, TunnelProfile}, CancellationToken)"/>; when Via changes,
    /// each hop keeps the credential it had (same server and user) unless <paramref name="logins"/> gives a new one,
    /// and new logins are checked through the chain before anything changes.
    /// </summary>
    public async Task<TunnelInfo> SetTunnelAsync(string name, Func<TunnelProfile, TunnelProfile> change, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        IReadOnlyList<HopCredential?>? credentials = null;
        {
            TunnelProfile before, proposed;
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                before = Find(name).Profile;
                proposed = change(before);
                CreateRuntime(proposed with { Credentials = [] });
            }
            finally
            {
                _gate.Release();
            }
            var oldHops = ParseVia(before);
            var existing = oldHops.Select((h, i) => (h, before.Credentials.Count == oldHops.Count ? before.Credentials[i] : null)).ToList();
            CheckHopLogins(before.Name, ParseVia(proposed), logins, existing);
            if (!proposed.Via.SequenceEqual(before.Via, StringComparer.OrdinalIgnoreCase) || (logins?.Any(l => l is not null) ?? false))
            {
                credentials = await ResolveCredentialsAsync(proposed, logins ?? [], existing, cancellationToken).ConfigureAwait(false);
                if (logins?.Any(l => l is not null) ?? false)
                {
                    await CheckChainAsync(CreateRuntime(proposed with { Credentials = credentials }), cancellationToken).ConfigureAwait(false);
                }
            }
        }
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Find(name);
            var previous = current.Profile;
            var changed = change(current.Profile) with { Name = current.Profile.Name, CreatedAt = current.Profile.CreatedAt, ModifiedAt = TruncateToMilliseconds(_time.GetUtcNow()) };
            if (credentials is not null)
            {
                changed = changed with { Credentials = credentials, Via = WithUsers(ParseVia(changed), credentials) };
            }
            var replacement = CreateRuntime(changed);
            if (!NeedsRestart(current.Profile, changed))
            {
                // Nothing that is bound or dialed changes: the running tunnel takes the settings for its next connections,
                // and the open ones go on.
                current.ReplaceProfile(changed);
                replacement = current;
            }
            else
            {
                replacement.CopyHistoryFrom(current);
            }
            var restart = current.IsRunning && !ReferenceEquals(replacement, current);
            if (restart)
            {
                await current.StopAsync().ConfigureAwait(false);
                try
                {
                    await replacement.StartAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (QmTunnelException)
                {
                    await current.StartAsync(cancellationToken).ConfigureAwait(false);
                    throw;
                }
            }
            if (changed.Persistent)
            {
                _store!.Save(changed);
            }
            else if (previous.Persistent)
            {
                _store!.Delete(changed.Name);
            }
            _tunnels[changed.Name] = replacement;
            EngineLog.TunnelChanged(_logger, changed.Name, "settings changed");
            return Info(replacement);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops the tunnel if it runs and deletes it from the database.</summary>
    public async Task RemoveTunnelAsync(string name, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var runtime = Find(name);
            await runtime.StopAsync().ConfigureAwait(false);
            _store!.Delete(runtime.Profile.Name);
            _tunnels.Remove(runtime.Profile.Name);
            EngineLog.TunnelChanged(_logger, runtime.Profile.Name, "removed");
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The counters of tunnel <paramref name="name"/> now, without its chain's hops (no gateway is asked;
    /// <see cref="GetTunnelStatsAsync"/> asks them). Errors: TunnelNotFound.
    /// </summary>
    public TunnelStats GetTunnelStats(string name)
    {
        _gate.Wait();
        try
        {
            return Find(name).GetStats();
        }
        finally
        {
            _gate.Release();
        }
    }

    public IReadOnlyList<ConnectionInfo> GetConnections(string name)
    {
        _gate.Wait();
        try
        {
            var runtime = Find(name);
            return runtime.Connections.Snapshot(runtime.Profile.Name);
        }
        finally
        {
            _gate.Release();
        }
    }
}

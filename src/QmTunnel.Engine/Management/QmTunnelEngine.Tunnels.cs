using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Tunnels;

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
        return new TunnelRuntime(profile, _pool!, _linkOptions, _loggerFactory.CreateLogger("QmTunnel.Tunnel"), _time);
    }

    // The database keeps milliseconds: so does the profile in memory, so times do not change across a restart.
    private static DateTimeOffset TruncateToMilliseconds(DateTimeOffset t) => DateTimeOffset.FromUnixTimeMilliseconds(t.ToUnixTimeMilliseconds());

    private TunnelRuntime Find(string name)
    {
        EnsureRunning();
        if (string.IsNullOrEmpty(name) || !_tunnels.TryGetValue(name, out var runtime))
        {
            throw new QmTunnelException(ErrorIds.TunnelNotFound, QmErrorKind.ObjectNotFound, name,
                $"There is no tunnel named '{name}' on this server. List the tunnels with Get-QmTunnel.");
        }
        return runtime;
    }

    private TunnelInfo Info(TunnelRuntime runtime) => new(runtime.Profile, runtime.State, runtime.BoundListen, runtime.LastError);

    /// <summary>Creates (and saves, when Persistent) a tunnel, stopped. TunnelNameInUse, TunnelNameInvalid, TunnelSettingInvalid, EndpointUriInvalid, TlsNotAvailable.</summary>
    public TunnelInfo NewTunnel(TunnelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        _gate.Wait();
        try
        {
            EnsureRunning();
            if (!TunnelProfile.IsValidName(profile.Name))
            {
                throw new QmTunnelException(ErrorIds.TunnelNameInvalid, QmErrorKind.InvalidArgument, profile.Name ?? string.Empty,
                    $"Name '{profile.Name}' is not valid: use 1 to {TunnelProfile.MaxNameLength} letters, digits, '-', '_' or '.', starting with a letter or digit.");
            }
            if (_tunnels.ContainsKey(profile.Name))
            {
                throw new QmTunnelException(ErrorIds.TunnelNameInUse, QmErrorKind.ResourceExists, profile.Name,
                    $"A tunnel named '{profile.Name}' already exists. Choose another name, or change it with Set-QmTunnel -Name {profile.Name}.");
            }
            var now = TruncateToMilliseconds(_time.GetUtcNow());
            profile = profile with { CreatedAt = now, ModifiedAt = now, AutoStart = false };
            var runtime = CreateRuntime(profile);
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
    /// Changes a tunnel's settings. The change is validated as a whole first; a running tunnel restarts with the new
    /// settings (its open connections are closed); when the restart fails, the old settings are put back.
    /// </summary>
    public async Task<TunnelInfo> SetTunnelAsync(string name, Func<TunnelProfile, TunnelProfile> change, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Find(name);
            var changed = change(current.Profile) with { Name = current.Profile.Name, CreatedAt = current.Profile.CreatedAt, ModifiedAt = TruncateToMilliseconds(_time.GetUtcNow()) };
            var replacement = CreateRuntime(changed);
            replacement.CopyHistoryFrom(current);
            var wasRunning = current.IsRunning;
            if (wasRunning)
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
            else if (current.Profile.Persistent)
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

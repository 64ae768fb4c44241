using Microsoft.Extensions.Logging;

namespace QmTunnel.Engine.Management;

/// <summary>
/// A qmTunnel server: accepts links on its port, carries streams to their targets, owns its tunnels and its
/// LiteDB database. This is the in-process management API the cmdlets and the daemon drive. Every failure the
/// user can act on is a <see cref="QmTunnelException"/>.
/// </summary>
public sealed partial class QmTunnelEngine : IAsyncDisposable
{
    public QmTunnelEngine(ServerOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        Options = options;
        _loggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
        _time = timeProvider ?? TimeProvider.System;
    }

    private readonly ILoggerFactory _loggerFactory;
    private readonly TimeProvider _time;

    public ServerOptions Options { get; }

    public bool IsRunning => throw new InvalidOperationException("under construction");
    public int Port => throw new InvalidOperationException("under construction");
    public Task StartAsync(CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public Task StopAsync(CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public ValueTask DisposeAsync() => throw new InvalidOperationException("under construction");
    public ServerInfo GetServerInfo() => throw new InvalidOperationException("under construction");
    public TunnelInfo NewTunnel(TunnelProfile profile) => throw new InvalidOperationException("under construction");
    public IReadOnlyList<TunnelInfo> GetTunnels() => throw new InvalidOperationException("under construction");
    public TunnelInfo GetTunnel(string name) => throw new InvalidOperationException("under construction");
    public Task<TunnelInfo> StartTunnelAsync(string name, CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public Task<TunnelInfo> StopTunnelAsync(string name, CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public Task<TunnelInfo> SetTunnelAsync(string name, Func<TunnelProfile, TunnelProfile> change, CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public Task RemoveTunnelAsync(string name, CancellationToken cancellationToken = default) => throw new InvalidOperationException("under construction");
    public TunnelStats GetTunnelStats(string name) => throw new InvalidOperationException("under construction");
    public IReadOnlyList<ConnectionInfo> GetConnections(string name) => throw new InvalidOperationException("under construction");
}

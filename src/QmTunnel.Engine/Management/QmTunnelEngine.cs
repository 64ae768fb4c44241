using QmTunnel.Engine.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tunnels;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>
/// A qmTunnel server: accepts links on its port, carries the streams they open to their targets (or on to the next
/// hop), owns its tunnels and its LiteDB database. This is the in-process management API the cmdlets and the daemon
/// drive. Every failure the user can act on is a <see cref="QmTunnelException"/>. It is not thread-affine; management
/// calls are serialized internally.
/// </summary>
public sealed partial class QmTunnelEngine : IAsyncDisposable
{
    private readonly SafeLoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly LinkOptions _linkOptions;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, TunnelRuntime> _tunnels = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<Link> _inbound = [];
    private readonly TrafficCounters _transit = new();
    private readonly Endpoints.UdpAppEndpoint _udp = new();
    private LinkPool? _pool;
    private StreamRouter? _router;

    /// <summary>Hold streams this server carries now, as last server or gateway (tests).</summary>
    internal int HoldCount => _router?.HoldCount ?? 0;

    /// <summary>Reverse-tunnel listeners this server holds now, as the last server of their chains (tests).</summary>
    internal int FarListenerCount => _router?.FarListenerCount ?? 0;

    /// <summary>The far listeners' Bind streams: the link each came on and its id there (tests).</summary>
    internal IReadOnlyList<(Links.Link Link, uint BindId)> FarListenerBinds => _router?.FarListenerBinds ?? [];
    private TunnelStore? _store;
    private Socket? _listener;
    private CancellationTokenSource? _shutdown;
    private DateTimeOffset _startedAt;
    private long _protocolErrors, _transitStreams, _plainRefused;
    private X509Certificate2? _certificate;
    private SslStreamCertificateContext? _certificateContext;
    private bool _allowPlainLinks;
    private LinkAuthenticator? _authenticator;
    private LoginThrottle? _throttle;
    private volatile bool _running;

    public QmTunnelEngine(ServerOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        _time = timeProvider ?? TimeProvider.System;
        // Every line the engine logs: peer text escaped, length capped, a flood of one event throttled.
        _loggerFactory = new SafeLoggerFactory(loggerFactory ?? NullLoggerFactory.Instance, _time);
        _logger = _loggerFactory.CreateLogger("QmTunnel.Engine");
        _linkOptions = new LinkOptions
        {
            ServerName = options.ServerName, HandshakeTimeout = options.HandshakeTimeout, Time = _time, Limits = _linkLimits,
        };
    }

    public ServerOptions Options { get; }
    public bool IsRunning => _running;
    /// <summary>The port actually listened on (differs from Options.Port when that was 0).</summary>
    public int Port { get; private set; }
    /// <summary>This server's id in link handshakes.</summary>
    public string ServerId => _linkOptions.ServerId;
    private const string AllowPlainLinksSetting = "allowPlainLinks";

    /// <summary>SHA-256 thumbprint (hex) of the server's TLS certificate while it runs.</summary>
    public string? CertificateThumbprint => _certificate is null ? null : ServerCertificate.Thumbprint(_certificate);

    /// <summary>Whether this server accepts unencrypted links (a saved setting; see ServerOptions.AllowPlainLinks).</summary>
    public bool AllowPlainLinks => _allowPlainLinks;

    /// <summary>Streams open on the links this server accepted (tunnels passing through, management requests).</summary>
    public int InboundStreamCount
    {
        get
        {
            lock (_inbound)
            {
                return _inbound.Sum(l => l.StreamCount);
            }
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Version, SecurityPrincipal? Principal, AllowRuleSet? Rules)> _access =
        new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// A user as the database has it now (null when removed or disabled) with its group's rules parsed: read once per
    /// change of users or groups, not per connection.
    /// </summary>
    private (SecurityPrincipal? Principal, AllowRuleSet? Rules) CurrentAccess(string user)
    {
        var users = (_store ?? throw new ObjectDisposedException(nameof(QmTunnelEngine))).Users;
        var version = users.Version;
        if (_access.TryGetValue(user, out var cached) && cached.Version == version)
        {
            return (cached.Principal, cached.Rules);
        }
        var principal = users.FindPrincipal(user) is { User.Enabled: true } current ? current : null;
        var rules = principal is null ? null : AllowRuleSet.For(principal.Group);
        _access[user] = (version, principal, rules);
        return (principal, rules);
    }

    /// <summary>Links closed because the peer broke the protocol (malformed frames, bad handshake).</summary>
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors) + (_acceptor?.ProtocolErrors ?? 0);

    /// <summary>
    /// Opens the database (DatabaseCorrupt / DatabaseLocked / DataPathInvalid), binds the port (PortInUse, BindFailed),
    /// starts accepting links, and restores saved tunnels, starting those that were running.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_running)
            {
                throw new QmTunnelException(ErrorIds.ServerAlreadyRunning, QmErrorKind.InvalidOperation, Options.Port,
                    "This qmTunnel server is already running. Stop it first.");
            }
            var errors = Options.Validate();
            if (errors.Count > 0)
            {
                throw new QmTunnelException(ErrorIds.ServerStartFailed, QmErrorKind.InvalidArgument, Options, string.Join(" ", errors));
            }
            _store = TunnelStore.Open(Options.DataPath, _logger);
            _access.Clear(); // versions start again with the store
            try
            {
                _certificate = Options.CertificatePath is { } certificatePath
                    ? ServerCertificate.LoadFromFiles(certificatePath, Options.CertificateKeyPath, Options.CertificatePassword)
                    : ServerCertificate.LoadOrCreate(Options.DataPath, Options.ServerName);
                _certificateContext = SslStreamCertificateContext.Create(_certificate, additionalCertificates: null, offline: true);
                if (Options.AllowPlainLinks is { } allow)
                {
                    _store.SetBoolSetting(AllowPlainLinksSetting, allow);
                }
                _allowPlainLinks = _store.GetBoolSetting(AllowPlainLinksSetting) ?? false;
                // Bound before the admin is created: a start that cannot listen (PortInUse) leaves no account whose
                // generated password nobody saw.
                _listener = Bind();
                InitialAdminPassword = EnsureAdministrator(_store);
                ReadLimits();
                _throttle = new LoginThrottle(_time);
                _authenticator = new LinkAuthenticator(_store.Users, _throttle, _logger, Options.ServerName,
                    () => _store is null ? PasswordHasher.DefaultIterations : ReadPasswordIterations());
            }
            catch
            {
                _listener?.Dispose();
                _listener = null;
                _store.Dispose();
                _store = null;
                throw;
            }
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            _shutdown = new CancellationTokenSource();
            var shutdown = _shutdown.Token;
            _router = new StreamRouter(new StreamRouterContext(Options.ServerName, () => _pool!, _linkOptions, _logger, CurrentAccess, ServeManagementAsync,
                _transit, () => Interlocked.Increment(ref _transitStreams)) { Udp = _udp, Time = _time });
            // Dialed links route what their peer opens too (docs/architecture.md, "Stream router").
            _pool = new LinkPool(_linkOptions, _logger, new PeerCertificatePolicy(_store), link => _router.Install(link, shutdown));
            _startedAt = _time.GetUtcNow();
            _running = true;
            StartIdleSweep();
            _acceptor = CreateAcceptor(_listener, _shutdown.Token);
            _acceptor.Start();
            EngineLog.Started(_logger, Options.ListenAddress, Port, _store.FilePath);

            foreach (var profile in _store.LoadTunnels())
            {
                TunnelRuntime runtime;
                try
                {
                    runtime = CreateRuntime(profile);
                }
                catch (QmTunnelException ex)
                {
                    EngineLog.TunnelNotRestored(_logger, profile.Name, ex.Message);
                    continue;
                }
                _tunnels[profile.Name] = runtime;
                if (profile.AutoStart)
                {
                    try
                    {
                        await runtime.StartAsync(cancellationToken, unattended: true).ConfigureAwait(false);
                    }
                    catch (QmTunnelException ex)
                    {
                        EngineLog.TunnelNotRestored(_logger, profile.Name, ex.Message);
                    }
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops accepting, stops every tunnel (their AutoStart is kept), closes links and the database.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_running)
            {
                return;
            }
            _running = false;
            StopIdleSweep();
            await StopAcceptingAsync().ConfigureAwait(false);
            _router?.CloseHolds(); // held chains are not connections to drain: their owners learn now that this server goes
            // Stop accepting everywhere, let connections (ours and those passing through) finish for DrainTimeout,
            // then close what is left.
            var draining = _tunnels.Values.Select(t => t.StopAsync(Options.DrainTimeout)).ToList();
            Link[] inbound;
            lock (_inbound)
            {
                inbound = [.. _inbound];
            }
            var deadline = _time.GetUtcNow() + Options.DrainTimeout;
            while (inbound.Any(l => l.StreamCount > 0 && !l.IsClosed) && _time.GetUtcNow() < deadline)
            {
                await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
            }
            await Task.WhenAll(draining).ConfigureAwait(false);
            _tunnels.Clear();
            _shutdown?.Cancel();
            await Task.WhenAll(inbound.Select(l => l.CloseAsync(ProtocolErrorCode.Shutdown, "the server is stopping"))).ConfigureAwait(false);
            if (_pool is not null)
            {
                await _pool.DisposeAsync().ConfigureAwait(false);
            }
            _store?.Dispose();
            _store = null;
            _certificate?.Dispose();
            _certificate = null;
            _loggerFactory.Flush();
            EngineLog.Stopped(_logger, Port);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    public ServerInfo GetServerInfo() => GetServerInfo(full: true, visibleTunnels: 0);

    /// <summary>
    /// The server's state; with <paramref name="full"/> false, only what a user without ChangeServerConfiguration may
    /// see: what any peer sees anyway (address, certificate, plain links, start time) and its own
    /// <paramref name="visibleTunnels"/>, not the data path, the process or the counters of other users' traffic.
    /// </summary>
    internal ServerInfo GetServerInfo(bool full, int visibleTunnels)
    {
        EnsureRunning();
        int links, streams;
        lock (_inbound)
        {
            links = _inbound.Count(l => !l.IsClosed);
            streams = _inbound.Sum(l => l.StreamCount);
        }
        return new ServerInfo
        {
            ServerId = ServerId,
            ListenAddress = Options.ListenAddress,
            Port = Port,
            DataPath = full ? Options.DataPath : string.Empty,
            StartedAt = _startedAt,
            ProcessId = full ? Options.ProcessId : null,
            IsDaemon = Options.ProcessId is not null,
            Tunnels = full ? _tunnels.Count : visibleTunnels,
            Links = full ? links + (_pool?.Count ?? 0) : 0,
            TransitStreams = full ? Interlocked.Read(ref _transitStreams) : 0,
            ProtocolErrors = full ? ProtocolErrors : 0,
            CertificateThumbprint = CertificateThumbprint,
            AllowPlainLinks = _allowPlainLinks,
            PlainLinksRefused = full ? Interlocked.Read(ref _plainRefused) + (_acceptor?.PlainLinksRefused ?? 0) : 0,
            OpenStreams = full ? streams + (_pool?.StreamCount ?? 0) : 0,
            PendingLinks = full ? _acceptor?.PendingCount ?? 0 : 0,
            PendingLinksPeak = full ? _acceptor?.PendingPeak ?? 0 : 0,
            PendingLinksRefused = full ? _acceptor?.PendingRefused ?? 0 : 0,
            PendingLinksEvicted = full ? _acceptor?.PendingEvicted ?? 0 : 0,
            PendingLinksTimedOut = full ? _acceptor?.HandshakeTimeouts ?? 0 : 0,
            LinksRefused = full ? _linkLimits.LinksRefused : 0,
            StreamsRefused = full ? _linkLimits.StreamsRefused : 0,
            BufferedBytes = full ? _linkLimits.BufferedBytes : 0,
            BufferedBytesPeak = full ? _linkLimits.BufferedBytesPeak : 0,
            BufferWaits = full ? _linkLimits.BufferWaits : 0,
        };
    }

    private void EnsureRunning()
    {
        if (!_running)
        {
            throw new QmTunnelException(ErrorIds.ServerNotRunning, QmErrorKind.InvalidOperation, null,
                "The qmTunnel server is not running. Start it with Start-QmTunnelServer.");
        }
    }
}

internal static partial class EngineLog
{
    // Event ids: Diagnostics/EventIds.cs (engine, 1-99).
    [LoggerMessage(EventId = EventIds.ServerStarted, Level = LogLevel.Information, Message = "qmTunnel server listening on {Address}:{Port}, database {Database}")]
    public static partial void Started(ILogger logger, string address, int port, string database);

    [LoggerMessage(EventId = EventIds.ServerStopped, Level = LogLevel.Information, Message = "qmTunnel server on port {Port} stopped")]
    public static partial void Stopped(ILogger logger, int port);

    [LoggerMessage(EventId = EventIds.LinkRefused, Level = LogLevel.Warning, Message = "Link from {Peer} refused ({Code}): {Detail}")]
    public static partial void HandshakeRefused(ILogger logger, string peer, ProtocolErrorCode code, string detail);

    [LoggerMessage(EventId = EventIds.TargetUnreachable, Level = LogLevel.Warning, Message = "Tunnel {Tunnel}: target {Target} unreachable: {Detail}")]
    public static partial void TargetFailed(ILogger logger, string tunnel, string target, string detail);

    [LoggerMessage(EventId = EventIds.TunnelNotRestored, Level = LogLevel.Error, Message = "Saved tunnel {Name} was not restored: {Detail}")]
    public static partial void TunnelNotRestored(ILogger logger, string name, string detail);

    [LoggerMessage(EventId = EventIds.TunnelChanged, Level = LogLevel.Information, Message = "Tunnel {Name}: {Change}")]
    public static partial void TunnelChanged(ILogger logger, string name, string change);

    [LoggerMessage(EventId = EventIds.TunnelDenied, Level = LogLevel.Warning, Message = "Tunnel {Name} of user {User} refused: {Reason}")]
    public static partial void TunnelDenied(ILogger logger, string name, string user, string reason);

    [LoggerMessage(EventId = EventIds.AdminCreated, Level = LogLevel.Warning, Message = "First start: user {User} created in group Administrators with {Source}")]
    public static partial void AdminCreated(ILogger logger, string user, string source);
}

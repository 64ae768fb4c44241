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

namespace QmTunnel.Engine.Management;

/// <summary>
/// A qmTunnel server: accepts links on its port, carries the streams they open to their targets (or on to the next
/// hop), owns its tunnels and its LiteDB database. This is the in-process management API the cmdlets and the daemon
/// drive. Every failure the user can act on is a <see cref="QmTunnelException"/>. It is not thread-affine; management
/// calls are serialized internally.
/// </summary>
public sealed partial class QmTunnelEngine : IAsyncDisposable
{
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly LinkOptions _linkOptions;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, TunnelRuntime> _tunnels = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<Link> _inbound = [];
    private readonly TrafficCounters _transit = new();
    private LinkPool? _pool;
    private TunnelStore? _store;
    private Socket? _listener;
    private CancellationTokenSource? _shutdown;
    private Task? _acceptLoop;
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
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger("QmTunnel.Engine");
        _time = timeProvider ?? TimeProvider.System;
        _linkOptions = new LinkOptions { ServerName = options.ServerName, HandshakeTimeout = options.HandshakeTimeout };
    }

    public ServerOptions Options { get; }
    public bool IsRunning => _running;
    /// <summary>The port actually listened on (differs from Options.Port when that was 0).</summary>
    public int Port { get; private set; }
    /// <summary>This server's id in link handshakes.</summary>
    public string ServerId => _linkOptions.ServerId;
    private const string AllowPlainLinksSetting = "allowPlainLinks";
    private const byte TlsHandshakeRecord = 0x16;

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

    private readonly HashSet<Link> _managementLinks = [];
    private volatile int _maxManagementSessions = DefaultMaxManagementSessions;

    /// <summary>Management sessions open now: accepted links that have made a management request.</summary>
    public int ManagementSessionCount
    {
        get
        {
            lock (_managementLinks)
            {
                return _managementLinks.Count;
            }
        }
    }

    /// <summary>
    /// A link becomes a management session with its first management request; one over MaxManagementSessions is
    /// refused. It stops counting when it closes.
    /// </summary>
    private bool AdmitManagementLink(Link link)
    {
        lock (_managementLinks)
        {
            if (_managementLinks.Contains(link))
            {
                return true;
            }
            if (_managementLinks.Count >= _maxManagementSessions)
            {
                return false;
            }
            _managementLinks.Add(link);
        }
        _ = link.Completion.ContinueWith(_ =>
        {
            lock (_managementLinks)
            {
                _managementLinks.Remove(link);
            }
        }, TaskScheduler.Default);
        return true;
    }

    /// <summary>Closes the accepted links logged in as <paramref name="user"/> (disabled or removed): its streams end now.</summary>
    private void CloseLinksOf(string user, string reason)
    {
        Link[] links;
        lock (_inbound)
        {
            links = _inbound.Where(l => l.Principal is { } p && string.Equals(p.User.Name, user, StringComparison.OrdinalIgnoreCase)).ToArray();
        }
        foreach (var link in links)
        {
            _ = link.CloseAsync(ProtocolErrorCode.AuthenticationFailed, reason);
        }
    }

    /// <summary>The TLS cipher suites of the links this server accepted (tests).</summary>
    internal IReadOnlyList<string?> InboundCipherSuites()
    {
        lock (_inbound)
        {
            return _inbound.Select(l => l.TlsCipherSuite).ToList();
        }
    }

    /// <summary>Links closed because the peer broke the protocol (malformed frames, bad handshake).</summary>
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors);

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
            _store = TunnelStore.Open(Options.DataPath);
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
                InitialAdminPassword = EnsureAdministrator(_store);
                _maxManagementSessions = ReadMaxManagementSessions();
                _throttle = new LoginThrottle(_time);
                _authenticator = new LinkAuthenticator(_store.Users, _throttle, _logger, Options.ServerName);
                _listener = Bind();
            }
            catch
            {
                _store.Dispose();
                _store = null;
                throw;
            }
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            _shutdown = new CancellationTokenSource();
            _pool = new LinkPool(_linkOptions, _logger, new PeerCertificatePolicy(_store));
            _startedAt = _time.GetUtcNow();
            _running = true;
            _acceptLoop = Task.Run(() => AcceptLoopAsync(_listener, _shutdown.Token));
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
                        await runtime.StartAsync(cancellationToken).ConfigureAwait(false);
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

    /// <summary>
    /// The admin password generated on the first start of this data path (no -AdminCredential given), to show once;
    /// null otherwise. A daemon also writes it to <c>initial-admin-password</c> in the data path (owner-only).
    /// </summary>
    public string? InitialAdminPassword { get; private set; }

    /// <summary>File in the data path where a daemon leaves a generated admin password for its starter (owner-only).</summary>
    public const string InitialAdminPasswordFileName = "initial-admin-password";

    /// <summary>Writes <see cref="InitialAdminPassword"/> (when there is one) to the data path, owner-only; returns the file or null.</summary>
    public string? WriteInitialAdminPasswordFile()
    {
        if (InitialAdminPassword is null)
        {
            return null;
        }
        var path = Path.Combine(Options.DataPath, InitialAdminPasswordFileName);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var writer = new StreamWriter(path, System.Text.Encoding.UTF8, options))
        {
            writer.WriteLine(InitialAdminPassword);
        }
        return path;
    }

    /// <summary>First start: the Administrators group and admin user. Later starts: checks a given admin password.</summary>
    private string? EnsureAdministrator(TunnelStore store)
    {
        if (Options.PasswordIterations is { } iterations)
        {
            store.SetIntSetting(PasswordIterationsSetting, iterations);
        }
        var hashIterations = store.GetIntSetting(PasswordIterationsSetting) ?? PasswordHasher.DefaultIterations;
        string? generated = null;
        var created = store.Users.EnsureDefaults(() =>
        {
            generated = Options.AdminPassword is null ? PasswordHasher.GeneratePassword() : null;
            return PasswordHasher.Hash(Options.AdminPassword ?? generated!, hashIterations);
        });
        if (created)
        {
            EngineLog.AdminCreated(_logger, Security.User.AdminName, generated is null ? "the given admin credential" : "a generated password");
            return generated;
        }
        if (Options.AdminPassword is { } password)
        {
            var admin = store.Users.FindUser(Security.User.AdminName);
            if (admin?.PasswordHash is { } hash && !PasswordHasher.Verify(password, hash))
            {
                throw new QmTunnelException(ErrorIds.AdminCredentialMismatch, QmErrorKind.AuthenticationError, Security.User.AdminName,
                    $"-AdminCredential does not match the password of user '{Security.User.AdminName}' in {store.FilePath}: the admin password is set on the first start only. " +
                    "Start without -AdminCredential (or with the current password); change it with Set-QmTunnelUser admin -Password.");
            }
        }
        return null;
    }

    private Socket Bind() => Listener.Open(
        new IPEndPoint(IPAddress.Parse(Options.ListenAddress), Options.Port), 512, $"{Options.ListenAddress}:{Options.Port}",
        "The qmTunnel server", "Stop the other qmTunnel server or program, or start this server with -Port.",
        "Use an address of this host with -ListenAddress.");

    private async Task AcceptLoopAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            _ = AcceptLinkAsync(socket, cancellationToken);
        }
    }

    private async Task AcceptLinkAsync(Socket socket, CancellationToken cancellationToken)
    {
        socket.NoDelay = true;
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        Link link;
        SslStream? tls = null;
        try
        {
            // One port for both: a TLS ClientHello starts with 0x16, a plain link with the preamble "QMTL".
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Options.HandshakeTimeout);
            var first = new byte[1];
            var n = await socket.ReceiveAsync(first, SocketFlags.Peek, timeout.Token).ConfigureAwait(false);
            if (n == 0)
            {
                socket.Dispose();
                return;
            }
            string? refusePlain = null;
            if (first[0] == TlsHandshakeRecord)
            {
                var coalescing = new CoalescingStream(new NetworkStream(socket, ownsSocket: false));
                tls = new SslStream(coalescing, leaveInnerStreamOpen: false);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = _certificateContext,
                    EnabledSslProtocols = TlsDefaults.Protocols,
                    CipherSuitesPolicy = TlsDefaults.CipherSuites,
                    // Asked for, never required: a client certificate is one way to log in (mapped to a user by thumbprint).
                    ClientCertificateRequired = true,
                    RemoteCertificateValidationCallback = (_, _, _, _) => true,
                }, timeout.Token).ConfigureAwait(false);
                coalescing.Coalesce = true; // TLS handshake done: from now on TLS records are sent per flushed batch
            }
            else if (!_allowPlainLinks)
            {
                Interlocked.Increment(ref _plainRefused);
                refusePlain = $"this server accepts only TLS links: dial qmt://{Options.ServerName}:{Port}, or allow plain links there (Set-QmTunnelServerConfig -AllowPlainLinks $true, or start it with -AllowPlainLinks) to accept qmt+plain://";
            }
            var clientCertificate = tls?.RemoteCertificate is { } remote ? remote as X509Certificate2 ?? new X509Certificate2(remote) : null;
            var channelBinding = tls is null ? [] : PasswordChallenge.TlsServerEndPoint(_certificate!);
            link = await Link.HandshakeAsAcceptorAsync(socket, _linkOptions, _logger, cancellationToken, tls, refusePlain,
                _authenticator, clientCertificate, channelBinding).ConfigureAwait(false);
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.AuthenticationFailed)
        {
            // logged by the authenticator, with the failure count of the source
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        catch (ProtocolException ex) when (ex.Code == ProtocolErrorCode.PlainLinkRefused)
        {
            EngineLog.HandshakeRefused(_logger, peer, ex.Code, ex.Message);
            socket.Dispose();
            return;
        }
        catch (AuthenticationException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, peer, ProtocolErrorCode.HandshakeFailed, "TLS: " + ex.Message);
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        catch (ProtocolException ex)
        {
            Interlocked.Increment(ref _protocolErrors);
            EngineLog.HandshakeRefused(_logger, peer, ex.Code, ex.Message);
            socket.Dispose();
            return;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            EngineLog.HandshakeRefused(_logger, peer, ProtocolErrorCode.HandshakeFailed, ex.Message);
            tls?.Dispose();
            socket.Dispose();
            return;
        }
        link.StreamOpened = (stream, open) => OpenStreamAsync(link, stream, open, cancellationToken);
        link.ProtocolError += _ => Interlocked.Increment(ref _protocolErrors);
        lock (_inbound)
        {
            _inbound.Add(link);
        }
        _ = link.Completion.ContinueWith(_ =>
        {
            lock (_inbound)
            {
                _inbound.Remove(link);
            }
        }, TaskScheduler.Default);
        link.Start();
        LinkLog.Up(_logger, peer, link.Peer.ServerName, 0);
    }

    /// <summary>
    /// A stream arrived on an accepted link: checks that the link's user may build this tunnel (right and allow-rule;
    /// PermissionDenied otherwise), then answers a Check, a login-parameter query, or carries the stream on.
    /// </summary>
    private async Task OpenStreamAsync(Link link, MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (open.Protocol == StreamProtocol.Tcp)
        {
            Interlocked.Increment(ref _transitStreams);
        }
        if (open.Protocol == StreamProtocol.Management)
        {
            if (!AdmitManagementLink(link))
            {
                await Remote.ManagementService.RefuseAsync(stream, new QmTunnelException(ErrorIds.ManagementSessionLimit, QmErrorKind.ResourceBusy, Options.ServerName,
                    $"{Options.ServerName} already serves {_maxManagementSessions} management sessions (MaxManagementSessions). Close one with Disconnect-QmTunnelServer, " +
                    "or raise the limit with Set-QmTunnelServerConfig -MaxManagementSessions."), cancellationToken).ConfigureAwait(false);
                return;
            }
            // rights are checked per operation, as for a local caller of the same user
            await new Remote.ManagementService(this, _logger).ServeAsync(link, stream, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (open.Protocol != StreamProtocol.AuthQuery && link.Principal is { } loggedIn)
        {
            string? denial;
            // As the database has the user now: a right or rule changed since the login applies to the next connection.
            (SecurityPrincipal? Principal, AllowRuleSet? Rules) access;
            try
            {
                access = CurrentAccess(loggedIn.User.Name);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or LiteDB.LiteException)
            {
                stream.Reset(ProtocolErrorCode.Shutdown, "the server is stopping");
                return;
            }
            try
            {
                denial = access.Principal is null
                    ? $"{Options.ServerName}: user '{loggedIn.User.Name}' is disabled or no longer exists on this server."
                    : AccessControl.Denial(access.Principal, access.Rules!, AccessControl.RequestFor(open), Options.ServerName);
            }
            catch (Exception ex) when (ex is QmTunnelException or ProtocolException)
            {
                stream.Reset(ProtocolErrorCode.OpenRejected, ex.Message);
                return;
            }
            if (denial is not null)
            {
                EngineLog.TunnelDenied(_logger, open.Tunnel, loggedIn.User.Name, denial);
                stream.Reset(ProtocolErrorCode.PermissionDenied, denial);
                return;
            }
        }
        switch (open.Protocol)
        {
            case StreamProtocol.AuthQuery:
                await AnswerLoginQueryAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            case StreamProtocol.Check when open.Route.Count == 0:
                stream.SendOpenAck();
                stream.SendFin();
                return;
        }
        await OpenTargetAsync(stream, open, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Connects to the stream's target (last hop) or carries it on to the next server of its route. A target that
    /// cannot be reached resets the stream with TargetConnectFailed and the reason.
    /// </summary>
    private async Task OpenTargetAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        EndpointUri target;
        try
        {
            target = EndpointUri.ParseApplication(open.Target, "Target");
        }
        catch (QmTunnelException ex)
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, ex.Message);
            return;
        }
        if (open.Route.Count > 0)
        {
            await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            timeout.CancelAfter(open.ConnectTimeoutMs);
            try
            {
                socket.NoDelay = (open.Options & OpenOptions.NoDelay) != 0;
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, (open.Options & OpenOptions.KeepAlive) != 0);
                // An address connects directly; only a name goes through the resolver.
                if (IPAddress.TryParse(target.Host, out var address))
                {
                    await socket.ConnectAsync(new IPEndPoint(address, target.Port), timeout.Token).ConfigureAwait(false);
                }
                else
                {
                    await socket.ConnectAsync(target.Host, target.Port, timeout.Token).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                var why = ex is SocketException se
                    ? $"{se.SocketErrorCode}: {se.Message}"
                    : cancellationToken.IsCancellationRequested ? "the server is stopping" : $"no answer within {open.ConnectTimeoutMs} ms";
                EngineLog.TargetFailed(_logger, open.Tunnel, target.ToString(), why);
                stream.Reset(ProtocolErrorCode.TargetConnectFailed, $"cannot connect to {target} from {Options.ServerName}: {why}");
                return;
            }
        }
        stream.SendOpenAck();
        await Relay.RunAsync(socket, stream, _linkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
    }

    private async Task ForwardAsync(MuxStream inbound, OpenMessage open, CancellationToken cancellationToken)
    {
        EndpointUri next;
        try
        {
            next = EndpointUri.ParseServer(open.Route[0], "Route");
        }
        catch (QmTunnelException ex)
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, ex.Message);
            return;
        }
        LinkLogin? login;
        try
        {
            login = open.RouteCredentials.Count > 0 && open.RouteCredentials[0] is { } credential
                ? HopCredential.FromRouteCredential(credential).ToLogin()
                : null;
        }
        catch (ArgumentException ex)
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{Options.ServerName}: the login given for {next.Address} is malformed ({ex.Message})");
            return;
        }
        var onwardCredentials = open.RouteCredentials.Skip(1).ToList();
        if (next.Scheme == EndpointScheme.QmtPlain && onwardCredentials.Any(c => c is not null))
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{Options.ServerName} will not send the logins of later servers over the unencrypted link to {next}: write that hop as qmt://{next.HostPort}.");
            return;
        }
        Link link;
        try
        {
            link = await _pool!.GetAsync(next, login, TimeSpan.FromMilliseconds(open.ConnectTimeoutMs), cancellationToken).ConfigureAwait(false);
        }
        catch (QmTunnelException ex)
        {
            inbound.Reset(ex.Kind == QmErrorKind.AuthenticationError ? ProtocolErrorCode.HopAuthenticationFailed : ProtocolErrorCode.TargetConnectFailed,
                $"{Options.ServerName}: {ex.Message}");
            return;
        }
        var onward = link.OpenStream(open with
        {
            Route = open.Route.Skip(1).ToList(),
            RouteCredentials = onwardCredentials.Any(c => c is not null) ? onwardCredentials : [],
        }, _transit, _linkOptions.InitialWindow);
        await Splice.RunAsync(inbound, onward, _linkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// AuthQuery: the Target names a server and user (<c>qmt://user@host:port</c>); this server asks it for that
    /// user's login parameters and sends them back (u16 salt length, salt, i32 iterations), so the tunnel's owner can
    /// derive keys for a server it cannot reach itself. Passed on when the route is not finished.
    /// </summary>
    private async Task AnswerLoginQueryAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (open.Route.Count > 0)
        {
            await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        try
        {
            var server = EndpointUri.ParseServer(open.Target, "Target");
            if (server.User is null)
            {
                stream.Reset(ProtocolErrorCode.OpenRejected, $"a login query names a user: qmt://user@{server.HostPort}");
                return;
            }
            var (salt, iterations) = await _pool!.QueryLoginAsync(server, server.User, TimeSpan.FromMilliseconds(open.ConnectTimeoutMs), cancellationToken).ConfigureAwait(false);
            var answer = new byte[2 + salt.Length + 4];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(answer, (ushort)salt.Length);
            salt.CopyTo(answer, 2);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(answer.AsSpan(2 + salt.Length), iterations);
            stream.SendOpenAck();
            await stream.SendAsync(answer, cancellationToken).ConfigureAwait(false);
            stream.SendFin();
        }
        catch (QmTunnelException ex)
        {
            stream.Reset(ex.Kind == QmErrorKind.AuthenticationError ? ProtocolErrorCode.HopAuthenticationFailed : ProtocolErrorCode.TargetConnectFailed, $"{Options.ServerName}: {ex.Message}");
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
            _listener?.Dispose();
            if (_acceptLoop is not null)
            {
                await _acceptLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
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
            EngineLog.Stopped(_logger, Port);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    public ServerInfo GetServerInfo()
    {
        EnsureRunning();
        int links;
        lock (_inbound)
        {
            links = _inbound.Count;
        }
        return new ServerInfo
        {
            ServerId = ServerId,
            ListenAddress = Options.ListenAddress,
            Port = Port,
            DataPath = Options.DataPath,
            StartedAt = _startedAt,
            ProcessId = Options.ProcessId,
            Tunnels = _tunnels.Count,
            Links = links + (_pool?.Count ?? 0),
            TransitStreams = Interlocked.Read(ref _transitStreams),
            ProtocolErrors = ProtocolErrors,
            CertificateThumbprint = CertificateThumbprint,
            AllowPlainLinks = _allowPlainLinks,
            PlainLinksRefused = Interlocked.Read(ref _plainRefused),
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
    // Event ids 1-99 belong to the engine. Next free: 9.
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "qmTunnel server listening on {Address}:{Port}, database {Database}")]
    public static partial void Started(ILogger logger, string address, int port, string database);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "qmTunnel server on port {Port} stopped")]
    public static partial void Stopped(ILogger logger, int port);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Link from {Peer} refused ({Code}): {Detail}")]
    public static partial void HandshakeRefused(ILogger logger, string peer, ProtocolErrorCode code, string detail);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Tunnel {Tunnel}: target {Target} unreachable: {Detail}")]
    public static partial void TargetFailed(ILogger logger, string tunnel, string target, string detail);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Saved tunnel {Name} was not restored: {Detail}")]
    public static partial void TunnelNotRestored(ILogger logger, string name, string detail);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Tunnel {Name}: {Change}")]
    public static partial void TunnelChanged(ILogger logger, string name, string change);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Tunnel {Name} of user {User} refused: {Reason}")]
    public static partial void TunnelDenied(ILogger logger, string name, string user, string reason);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "First start: user {User} created in group Administrators with {Source}")]
    public static partial void AdminCreated(ILogger logger, string user, string source);
}

using QmTunnel.Engine.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// A running LocalToRemote tunnel on its owning server: listens on its application endpoint (<see cref="AppEndpoint"/>:
/// tcp, unix, pipe, socks5...), lets the connection handler pick each client's target (<see cref="IConnectionHandler"/>),
/// and carries the connection as a stream over the shared link to the first hop, asking the chain to open that target.
/// Keeps the tunnel's counters and connection list. It does not persist anything (the engine does) and does not own the links (the pool does).
/// </summary>
internal sealed partial class TunnelRuntime
{
    private readonly LinkPool _links;
    private readonly LinkOptions _linkOptions;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly EndpointUri _listen;
    private readonly EndpointUri _firstHop;
    private readonly IReadOnlyList<string> _route;
    private readonly IReadOnlyList<RouteCredential?> _routeCredentials;
    private readonly IReadOnlyList<string> _servers;
    private readonly IReadOnlyList<string> _hopServers;
    private readonly IReadOnlyList<EndpointUri> _hops;
    private readonly LinkLogin? _firstLogin;
    private readonly string _target;
    private readonly IConnectionHandler _handler;
    private readonly object _statsGate = new();
    private readonly HashSet<ConnectionRecord> _open = [];
    private readonly HashSet<Task> _connections = [];
    private readonly DatagramCounters _closedDatagrams = new();
    private long _listenerDropped;
    private IAppListener? _listener;
    private CancellationTokenSource? _stop;
    private Task? _acceptLoop;
    private long _total, _failed, _rejected, _closedIn, _closedOut, _closedLinkSent, _closedLinkReceived;
    private volatile TunnelState _state = TunnelState.Stopped;

    public TunnelRuntime(TunnelProfile profile, LinkPool links, LinkOptions linkOptions, ILogger logger, TimeProvider time)
    {
        Profile = profile;
        _links = links;
        _linkOptions = linkOptions;
        _logger = logger;
        _time = time;
        _listen = EndpointUri.ParseApplication(profile.Listen, "Listen");
        var hops = profile.Via.Select((v, i) => EndpointUri.ParseServer(v, $"Via[{i}]")).ToList();
        _firstHop = hops[0];
        _hops = hops;
        _route = hops.Skip(1).Select(h => h.ToString()).ToList();
        _servers = hops.Select(h => h.HostPort).ToList();
        _hopServers = hops.Select(h => h.Address).ToList();
        var credentials = profile.Credentials.Count == hops.Count ? profile.Credentials : hops.Select(_ => (HopCredential?)null).ToList();
        _firstLogin = credentials[0]?.ToLogin();
        _routeCredentials = credentials.Skip(1).Any(c => c is not null)
            ? credentials.Skip(1).Select(c => c?.HasKeys == true ? c.ToRouteCredential() : null).ToList()
            : [];
        if (_listen.Scheme == EndpointScheme.Socks5)
        {
            // each client names its target; the chain's own streams (Hold, Check, LinkInfo) carry none (docs/protocol.md)
            _target = string.Empty;
            _handler = new Socks5Handler(time, profile.ConnectTimeout);
        }
        else
        {
            var target = EndpointUri.ParseTarget(profile.Target, "Target");
            _target = target.ToString();
            _handler = new FixedTargetHandler(target);
        }
        Connections = new ConnectionLog(time);
    }

    public TunnelProfile Profile { get; private set; }

    /// <summary>An Open of this tunnel: its target, the route after the first hop with the logins for it, and the allow-rule fields.</summary>
    public OpenMessage NewOpen(StreamProtocol protocol, OpenOptions options, string client) => NewOpen(protocol, options, client, _target);

    /// <summary>An Open of one connection to the target its handler chose (a reverse tunnel's say so: RemoteToLocal).</summary>
    private OpenMessage NewOpen(StreamProtocol protocol, OpenOptions options, string client, string target) =>
        new(protocol, Profile.Name, target, _route, (int)Profile.ConnectTimeout.TotalMilliseconds,
            IsReverse ? options | OpenOptions.RemoteToLocal : options, client)
        {
            // a reverse tunnel's far listener of udp:// says so (the far server binds what the Open names)
            Listen = IsReverse && _listen.IsDatagram ? _listen.ToString() : _listen.HostPort,
            Servers = _servers,
            RouteCredentials = _routeCredentials,
            MaxConnections = protocol == StreamProtocol.Bind ? (uint)Profile.MaxConnections : 0,
        };

    /// <summary>The link to the first hop (dialed when there is none). Errors as <see cref="LinkPool.GetAsync"/>.</summary>
    public Task<Link> GetFirstLinkAsync(CancellationToken cancellationToken) =>
        _links.GetAsync(_firstHop, _firstLogin, Profile.ConnectTimeout, cancellationToken, Session);

    /// <summary>
    /// Takes a profile whose listener, chain and target are the same (settings for the next connections, bookkeeping);
    /// a running tunnel whose mode or idle timeout changed takes them at once (<see cref="ApplyMode"/>).
    /// </summary>
    public void ReplaceProfile(TunnelProfile profile)
    {
        var before = Profile;
        Profile = profile;
        // A reverse tunnel's Bind carries its MaxConnections to the far listener: a new one is bound with the new value.
        if (IsRunning && (before.Mode != profile.Mode || (IsReverse && before.MaxConnections != profile.MaxConnections)))
        {
            ApplyMode();
        }
        else if (IsRunning && before.IdleTimeout != profile.IdleTimeout)
        {
            RearmIdleTimer();
        }
    }

    public ConnectionLog Connections { get; }
    public string? LastError { get; private set; }
    public DateTimeOffset? LastErrorAt { get; private set; }
    public DateTimeOffset? StartedAt { get; private set; }
    public string? BoundListen { get; private set; }

    /// <summary>
    /// The session settings of the link to the first hop: the hop's timing and this tunnel's FailureTolerance (passed on
    /// hop by hop: each gateway's next link keeps its session as long). Part of the pool's key.
    /// </summary>
    private LinkSessionSettings Session => LinkSessionSettings.For(_firstHop.Timing, Profile.FailureTolerance);

    public TunnelState State
    {
        get
        {
            var state = _state;
            if (state is TunnelState.Listening or TunnelState.Established)
            {
                // A link whose connection is lost and waiting (within the tunnel's FailureTolerance) to resume: Resuming.
                var first = _links.TryGet(_firstHop, _firstLogin, Session);
                if (Profile.Mode != TunnelMode.PerConnection)
                {
                    return _chainState == TunnelState.Established && first is { State: LinkState.Resuming } ? TunnelState.Resuming : _chainState;
                }
                return first is null ? TunnelState.Listening : first.State == LinkState.Resuming ? TunnelState.Resuming : TunnelState.Established;
            }
            return state;
        }
    }

    public bool IsRunning => _state is TunnelState.Starting or TunnelState.Listening or TunnelState.Established;

    /// <summary>
    /// Binds the listener (errors: PortInUse, BindFailed) and starts accepting; then, by mode, dials the first hop in the
    /// background (PerConnection), brings the chain up and holds it (Permanent), or waits for a client (OnDemand: Idle).
    /// </summary>
    /// <param name="unattended">Started again with its server (AutoStart): a reverse tunnel then keeps trying after a refusal of its far listener instead of failing.</param>
    public async Task StartAsync(CancellationToken cancellationToken, bool unattended = false)
    {
        if (IsRunning)
        {
            return;
        }
        _state = TunnelState.Starting;
        if (IsReverse)
        {
            await StartReverseAsync(cancellationToken, unattended).ConfigureAwait(false);
            return;
        }
        try
        {
            _listener = await BindAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (QmTunnelException ex)
        {
            _state = TunnelState.Failed;
            RecordError(ex.Message);
            throw;
        }
        BoundListen = _listener.Bound.ToString();
        _stop = new CancellationTokenSource();
        StartedAt = _time.GetUtcNow();
        _state = TunnelState.Listening;
        _acceptLoop = Task.Run(() => AcceptLoopAsync(_listener, _stop.Token));
        TunnelLog.Started(_logger, Profile.Name, BoundListen, _firstHop.ToString(), TargetText);
        ApplyMode();
        if (Profile.Mode == TunnelMode.PerConnection)
        {
            _ = WarmUpLinkAsync(_stop.Token);
        }
    }

    private async Task WarmUpLinkAsync(CancellationToken cancellationToken)
    {
        try
        {
            var link = await _links.GetAsync(_firstHop, _firstLogin, Profile.ConnectTimeout, cancellationToken, Session).ConfigureAwait(false);
            // A refusal over the hop's MaxLinks comes after the dial, on the link: say so before a client finds out.
            _ = link.Completion.ContinueWith(_ =>
            {
                if (link.CloseCode == ProtocolErrorCode.LinkLimit && IsRunning)
                {
                    RecordError(LinkPool.LinkLimitError(_firstHop, link.CloseReason).Message);
                }
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        catch (QmTunnelException ex)
        {
            RecordError(ex.Message);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private Task<IAppListener> BindAsync(CancellationToken cancellationToken) =>
        AppEndpoint.For(_listen.Scheme).ListenAsync(_listen, new AppListenOptions($"Tunnel '{Profile.Name}'",
            _listen.IsPath
                ? $"Stop the program that listens there, or choose another path with Set-QmTunnel -Name {Profile.Name} -Listen."
                : $"Free the port, or choose another one with Set-QmTunnel -Name {Profile.Name} -Listen {EndpointUri.SchemeText(_listen.Scheme)}://{_listen.Host}:PORT.",
            _listen.IsPath ? "Use a path this server may create." : "Use an address of this host and a port you may bind."), cancellationToken);

    private void RecordError(string message)
    {
        LastError = message;
        LastErrorAt = _time.GetUtcNow();
        TunnelLog.Error(_logger, Profile.Name, message);
    }

    /// <summary>
    /// Stops listening, lets open connections finish for up to <paramref name="drain"/> (zero: none), then closes
    /// the rest (their streams are reset).
    /// </summary>
    public async Task StopAsync(TimeSpan drain = default)
    {
        if (!IsRunning)
        {
            return;
        }
        _state = TunnelState.Stopping;
        _listener?.Dispose();
        await StopChainAsync().ConfigureAwait(false);
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        Task[] running;
        lock (_statsGate)
        {
            running = [.. _connections];
        }
        if (drain > TimeSpan.Zero && running.Length > 0)
        {
            TunnelLog.Draining(_logger, Profile.Name, running.Length, drain.TotalSeconds);
            await Task.WhenAll(running).WaitAsync(drain, _time).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        _stop?.Cancel();
        await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop?.Dispose();
        _stop = null;
        lock (_statsGate)
        {
            _listenerDropped += (_listener as UdpAssociationListener)?.Dropped ?? 0;
            _listener = null;
        }
        BoundListen = null;
        _state = TunnelState.Stopped;
        TunnelLog.Stopped(_logger, Profile.Name);
    }
}

using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management;

/// <summary>
/// Accepted links as management sessions (limits per server and per user, requests in progress, idle sessions), and
/// closing the links of a user. Rights are not checked here: ManagementService checks each operation.
/// </summary>
public sealed partial class QmTunnelEngine
{
    /// <summary>One accepted link that made a management request, with its requests in progress.</summary>
    private sealed class ManagementSession(Link link, string user, bool administrator, long now)
    {
        private int _inProgress, _limitLogged, _timeoutLogged;
        private long _idleSince = now;

        public Link Link { get; } = link;
        public string User { get; } = user;
        public bool IsAdministrator { get; } = administrator;
        public int InProgress => Volatile.Read(ref _inProgress);
        public long IdleSince => Interlocked.Read(ref _idleSince);

        /// <summary>Counts one more request in progress; false when <paramref name="max"/> are already.</summary>
        public bool TryBeginRequest(int max)
        {
            while (true)
            {
                var current = Volatile.Read(ref _inProgress);
                if (current >= max)
                {
                    return false;
                }
                if (Interlocked.CompareExchange(ref _inProgress, current + 1, current) == current)
                {
                    return true;
                }
            }
        }

        public void EndRequest(long now)
        {
            Interlocked.Exchange(ref _idleSince, now);
            Interlocked.Decrement(ref _inProgress);
        }

        public bool FirstLimitRefusal() => Interlocked.Exchange(ref _limitLogged, 1) == 0;

        public bool FirstTimeout() => Interlocked.Exchange(ref _timeoutLogged, 1) == 0;
    }

    private readonly Dictionary<Link, ManagementSession> _managementLinks = [];
    /// <summary>Links whose refusal was logged: one line per link, however many streams it opens after.</summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<Link, object> _refusalLogged = [];

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

    internal TimeProvider Time => _time;

    /// <summary>Management requests in progress now, watches included, over all sessions (tests).</summary>
    internal int ManagementRequestsInProgress
    {
        get
        {
            lock (_managementLinks)
            {
                return _managementLinks.Values.Sum(s => s.InProgress);
            }
        }
    }

    /// <summary>
    /// A Management stream arrived on <paramref name="link"/>: admits the link as a session (limits), counts the request
    /// while it runs (at most <see cref="MaxManagementRequestsPerSession"/> at once, watches included) and serves it.
    /// </summary>
    private async Task ServeManagementAsync(Link link, MuxStream stream, CancellationToken cancellationToken)
    {
        var session = AdmitManagementLink(link, out var refusal);
        if (session is null)
        {
            if (_refusalLogged.TryAdd(link, link))
            {
                ManagementLog.SessionRefused(_logger, link.User ?? "?", link.RemoteEndPoint, refusal!.Message);
            }
            await Remote.ManagementService.RefuseAsync(stream, refusal!, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (!session.TryBeginRequest(MaxManagementRequestsPerSession))
        {
            if (session.FirstLimitRefusal())
            {
                ManagementLog.RequestLimit(_logger, session.User, link.RemoteEndPoint, MaxManagementRequestsPerSession);
            }
            await Remote.ManagementService.RefuseAsync(stream, new QmTunnelException(ErrorIds.ManagementRequestLimit, QmErrorKind.ResourceBusy, Options.ServerName,
                $"This session already has {MaxManagementRequestsPerSession} requests in progress on {Options.ServerName} (watches included), the most one session may have. " +
                "Wait for one to finish or stop a watch (-Follow), or open another session with Connect-QmTunnelServer."), cancellationToken).ConfigureAwait(false);
            return;
        }
        try
        {
            await new Remote.ManagementService(this, _logger).ServeAsync(link, stream, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            session.EndRequest(_time.GetTimestamp());
        }
    }

    /// <summary>Called by ManagementService when a request did not arrive within <see cref="ManagementRequestTimeout"/>.</summary>
    internal void OnManagementRequestTimedOut(Link link)
    {
        ManagementSession? session;
        lock (_managementLinks)
        {
            _managementLinks.TryGetValue(link, out session);
        }
        if (session?.FirstTimeout() == true)
        {
            ManagementLog.RequestTimedOut(_logger, session.User, link.RemoteEndPoint, ManagementRequestTimeout);
        }
    }

    /// <summary>
    /// A link becomes a management session with its first management request. A user without ChangeServerConfiguration
    /// is refused over MaxManagementSessionsPerUser sessions of its own or MaxManagementSessions in all; an
    /// administrator always gets in. The session ends when its link closes.
    /// </summary>
    private ManagementSession? AdmitManagementLink(Link link, out QmTunnelException? refusal)
    {
        refusal = null;
        var user = link.Principal?.User.Name ?? link.User ?? "?";
        var administrator = IsAdministrator(user);
        ManagementSession session;
        lock (_managementLinks)
        {
            if (_managementLinks.TryGetValue(link, out var existing))
            {
                return existing;
            }
            if (!administrator)
            {
                var own = _managementLinks.Values.Count(s => SameName(s.User, user));
                if (own >= _maxManagementSessionsPerUser)
                {
                    refusal = new QmTunnelException(ErrorIds.ManagementSessionLimit, QmErrorKind.ResourceBusy, user,
                        $"User '{user}' already has {own} management sessions open on {Options.ServerName}, the most one user may have (MaxManagementSessionsPerUser {_maxManagementSessionsPerUser}). " +
                        $"Close one with Disconnect-QmTunnelServer (idle ones close after {Format(_managementIdleTimeout)}); an administrator can raise the limit with Set-QmTunnelServerConfig -MaxManagementSessionsPerUser.");
                    return null;
                }
                if (_managementLinks.Count >= _maxManagementSessions)
                {
                    refusal = new QmTunnelException(ErrorIds.ManagementSessionLimit, QmErrorKind.ResourceBusy, Options.ServerName,
                        $"{Options.ServerName} already serves {_managementLinks.Count} management sessions (MaxManagementSessions {_maxManagementSessions}), held by {Holders()}. " +
                        $"Close one with Disconnect-QmTunnelServer (idle ones close after {Format(_managementIdleTimeout)}); an administrator always gets in and can raise the limit with Set-QmTunnelServerConfig -MaxManagementSessions.");
                    return null;
                }
            }
            session = new ManagementSession(link, user, administrator, _time.GetTimestamp());
            _managementLinks.Add(link, session);
        }
        _ = link.Completion.ContinueWith(_ =>
        {
            lock (_managementLinks)
            {
                _managementLinks.Remove(link);
            }
        }, TaskScheduler.Default);
        return session;
    }

    /// <summary>Who holds the sessions, most first: "bob 60, carol 40" (at most 10 users named). Call under the lock.</summary>
    private string Holders()
    {
        var byUser = _managementLinks.Values.GroupBy(s => s.User, StringComparer.OrdinalIgnoreCase)
            .Select(g => (User: g.Key, Count: g.Count())).OrderByDescending(h => h.Count).ThenBy(h => h.User, StringComparer.OrdinalIgnoreCase).ToList();
        var named = string.Join(", ", byUser.Take(10).Select(h => $"{h.User} {h.Count}"));
        return byUser.Count > 10 ? $"{named} and {byUser.Count - 10} more users" : named;
    }

    /// <summary>Whether the user's group has ChangeServerConfiguration now (false for a user removed or disabled).</summary>
    private bool IsAdministrator(string user)
    {
        try
        {
            return CurrentAccess(user).Principal?.CanChangeServerConfiguration == true;
        }
        catch (Exception ex) when (ex is ObjectDisposedException or LiteDB.LiteException)
        {
            return false;
        }
    }

    /// <summary>Closes management sessions idle (no request in progress, no watch) for ManagementIdleTimeout.</summary>
    private void CloseIdleManagementSessions()
    {
        var timeout = _managementIdleTimeout;
        List<ManagementSession> idle;
        lock (_managementLinks)
        {
            idle = _managementLinks.Values.Where(s => s.InProgress == 0 && _time.GetElapsedTime(s.IdleSince) >= timeout).ToList();
        }
        foreach (var session in idle)
        {
            ManagementLog.SessionIdleClosed(_logger, session.User, session.Link.RemoteEndPoint, timeout);
            _ = session.Link.CloseAsync(ProtocolErrorCode.Shutdown,
                $"the management session was idle for {Format(timeout)} (ManagementIdleTimeout of {Options.ServerName})");
        }
    }

    private bool IsManagementLink(Link link)
    {
        lock (_managementLinks)
        {
            return _managementLinks.ContainsKey(link);
        }
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

    /// <summary>The links this server dialed (tests).</summary>
    internal IReadOnlyList<Link> OutboundLinks() => _pool?.Links() ?? [];

    /// <summary>The hops of <see cref="OutboundLinks"/>, as this server was asked to dial them (tests).</summary>
    internal IReadOnlyList<Endpoints.EndpointUri> OutboundHops() => _pool?.Hops() ?? [];

    /// <summary>The links this server accepted (tests).</summary>
    internal IReadOnlyList<Link> InboundLinks()
    {
        lock (_inbound)
        {
            return [.. _inbound];
        }
    }
}

internal static partial class ManagementLog
{
    [LoggerMessage(EventId = EventIds.ManagementSessionRefused, Level = LogLevel.Warning, Message = "Management session of {User} from {Peer} refused: {Reason}")]
    public static partial void SessionRefused(ILogger logger, string user, string peer, string reason);

    [LoggerMessage(EventId = EventIds.ManagementSessionIdleClosed, Level = LogLevel.Information, Message = "Management session of {User} from {Peer} closed: idle for {Timeout}")]
    public static partial void SessionIdleClosed(ILogger logger, string user, string peer, TimeSpan timeout);

    [LoggerMessage(EventId = EventIds.ManagementRequestLimit, Level = LogLevel.Warning,
        Message = "Management session of {User} from {Peer}: more than {Max} requests at once; the excess is refused with ManagementRequestLimit")]
    public static partial void RequestLimit(ILogger logger, string user, string peer, int max);

    [LoggerMessage(EventId = EventIds.ManagementRequestTimedOut, Level = LogLevel.Warning,
        Message = "Management session of {User} from {Peer}: a request did not arrive within {Timeout}; answered ManagementRequestTimeout")]
    public static partial void RequestTimedOut(ILogger logger, string user, string peer, TimeSpan timeout);
}

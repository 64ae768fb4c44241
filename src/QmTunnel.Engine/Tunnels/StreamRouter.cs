using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tunnels;
using QmTunnel.Engine.Errors;

using QmTunnel.Engine.Management;
namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// What a server does with each stream a peer opens, installed on every link it has (accepted, and dialed through its
/// pool, so either side of a link may open streams): management requests go to the engine's sessions; every stream
/// of a tunnel (Tcp, Check, AuthQuery, LinkInfo...) is admitted the same way (the link's user, the tunnel as this server
/// can vouch for it, rights and allow-rules) and is then answered here (Check, queries) or carried on to the next
/// server (<see cref="LinkPool"/>) or to the target (<see cref="TargetDialer"/>). It owns no link and no state but a
/// few counters: the engine gives it what it needs (<see cref="StreamRouterContext"/>).
/// </summary>
internal sealed partial class StreamRouter(StreamRouterContext context)
{
    private readonly StreamRouterContext _context = context;

    /// <summary>Routes the streams <paramref name="link"/>'s peer opens, until <paramref name="shutdown"/>.</summary>
    public void Install(Link link, CancellationToken shutdown) => link.StreamOpened = (stream, open) => RouteAsync(link, stream, open, shutdown);

    /// <summary>
    /// A stream arrived on an accepted link: checks that the link's user may build this tunnel (right and allow-rule;
    /// PermissionDenied otherwise), then answers a Check, a login-parameter query, or carries the stream on.
    /// </summary>
    public async Task RouteAsync(Link link, MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (open.Protocol == StreamProtocol.Reverse)
        {
            // Only for a Bind this server opened on this very link (StreamRouter.Reverse.cs); it acts as no user of this server.
            await ReverseAsync(link, stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (link.Principal is null)
        {
            // A link this server dialed: its peer did not log in here, so nothing it opens may act as a user of this
            // server (not even a management request: the link's user is this server's login *there*). Refused, named.
            stream.Reset(ProtocolErrorCode.PermissionDenied,
                $"{_context.ServerName} takes streams only on links a server or client dialed and logged in to it (on a link it dialed, only Reverse streams of a Bind it opened there); {link.Peer.ServerName} was dialed by {_context.ServerName}.");
            return;
        }
        if (open.Protocol is StreamProtocol.Tcp or StreamProtocol.Udp)
        {
            _context.CountTransit();
        }
        if (open.Protocol == StreamProtocol.Management)
        {
            // session and request limits here; rights per operation, as for a local caller of the same user
            await _context.ServeManagement(link, stream, cancellationToken).ConfigureAwait(false);
            return;
        }
        // Every stream of a tunnel (Tcp, Check, AuthQuery, Hold, LinkInfo, Bind) passes the same check: the link's user, the
        // tunnel as this server can vouch for it, its rights and allow-rules.
        if (RefusedAsMisdirected(stream, open) || Admit(link, stream, open) is not { } admitted)
        {
            return;
        }
        open = admitted;
        switch (open.Protocol)
        {
            case StreamProtocol.AuthQuery:
                await AnswerLoginQueryAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            case StreamProtocol.Hold:
                await HoldAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            case StreamProtocol.Bind:
                await BindAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            case StreamProtocol.LinkInfo:
                await AnswerLinkInfoAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            case StreamProtocol.Check when open.Route.Count == 0:
                stream.SendOpenAck();
                stream.SendFin();
                return;
        }
        await OpenTargetAsync(stream, open, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The Open as this server admits it (with the listener as seen from here, <see cref="AccessControl.AsSeenBy"/>), or
    /// null after resetting the stream: PermissionDenied when the link's user (as the database has it now: a change
    /// since its login applies to the next stream) lacks the right, no allow-rule matches, or the route is not the
    /// checked chain; OpenRejected when the Open is malformed; Shutdown when the server is stopping.
    /// </summary>
    private OpenMessage? Admit(Link link, MuxStream stream, OpenMessage open)
    {
        if (link.Principal is not { } loggedIn)
        {
            stream.Reset(ProtocolErrorCode.PermissionDenied, $"{_context.ServerName}: the link is not logged in.");
            return null;
        }
        (SecurityPrincipal? Principal, AllowRuleSet? Rules) access;
        try
        {
            access = _context.CurrentAccess(loggedIn.User.Name);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or LiteDB.LiteException)
        {
            stream.Reset(ProtocolErrorCode.Shutdown, "the server is stopping");
            return null;
        }
        string? denial;
        OpenMessage seen;
        try
        {
            var previous = IPEndPoint.TryParse(link.RemoteEndPoint, out var endpoint) ? endpoint.Address : null;
            (seen, denial) = AccessControl.AsSeenBy(open, previous, _context.ServerName);
            denial ??= access.Principal is null
                ? $"{_context.ServerName}: user '{loggedIn.User.Name}' is disabled or no longer exists on this server."
                : AccessControl.Denial(access.Principal, access.Rules!, AccessControl.RequestFor(seen), _context.ServerName);
        }
        catch (Exception ex) when (ex is QmTunnelException or ProtocolException)
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, $"{_context.ServerName}: {ex.Message}");
            return null;
        }
        if (denial is not null)
        {
            EngineLog.TunnelDenied(_context.Logger, open.Tunnel, loggedIn.User.Name, denial);
            stream.Reset(ProtocolErrorCode.PermissionDenied, denial);
            return null;
        }
        return seen;
    }

    /// <summary>
    /// Connects to the stream's target (last hop) or carries it on to the next server of its route. A target that
    /// cannot be reached resets the stream with TargetConnectFailed, or the finer code for the reason (<see cref="TargetDialer.CodeFor"/>), and the reason.
    /// </summary>
    private async Task OpenTargetAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (open.Route.Count > 0 && open.Target.Length == 0 && open.Protocol != StreamProtocol.Tcp)
        {
            // a Check of a tunnel without a fixed target (socks5): passed on, it dials nothing
            await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        EndpointUri target;
        try
        {
            target = EndpointUri.ParseTarget(open.Target, "Target");
        }
        catch (QmTunnelException ex)
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, ex.Message);
            return;
        }
        if (open.Protocol is StreamProtocol.Tcp or StreamProtocol.Udp && (open.Protocol == StreamProtocol.Udp) != target.IsDatagram)
        {
            // A Udp stream carries framed datagrams, a Tcp one bytes: the other kind of target would get the wrong thing.
            stream.Reset(ProtocolErrorCode.OpenRejected, $"{_context.ServerName}: a {open.Protocol} stream cannot go to {target}: " +
                (target.IsDatagram ? "udp:// targets take Udp streams (a udp:// listener)" : "Udp streams go to udp:// targets only"));
            return;
        }
        if (open.Route.Count > 0)
        {
            await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        var timeout = TimeSpan.FromMilliseconds(open.ConnectTimeoutMs);
        var (connection, why) = target.IsDatagram
            ? await _context.Udp.ConnectAsync(target, open.Options, timeout, cancellationToken).ConfigureAwait(false)
            : await TargetDialer.ConnectAsync(target, open.Options, timeout, cancellationToken).ConfigureAwait(false);
        if (connection is null)
        {
            EngineLog.TargetFailed(_context.Logger, open.Tunnel, target.ToString(), why!);
            stream.Reset(TargetDialer.CodeFor(why), $"cannot connect to {target} from {_context.ServerName}: {why}");
            return;
        }
        stream.SendOpenAck();
        if (connection.IsDatagram)
        {
            // ends at the owner's Fin (its idle timer) or a reset; no idle timer of its own here
            await DatagramRelay.RunAsync(connection, stream, _context.Datagrams, _context.Time, idleTimeout: null, cancellationToken).ConfigureAwait(false);
            return;
        }
        await Relay.RunAsync(connection, stream, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// At a gateway: carries the stream on to the next server of its route. <c>next</c> is that server's address as the
    /// tunnel's owner wrote it, with its options — pin, TLS, user and <see cref="EndpointUri.Timing"/> (the link timing
    /// given for that hop with New-QmTunnelHop) — and is what the link to it is dialed with (<see cref="LinkPool.GetAsync"/>).
    /// </summary>
    private async Task ForwardAsync(MuxStream inbound, OpenMessage open, CancellationToken cancellationToken)
    {
        if (await OnwardLinkAsync(inbound, open, cancellationToken).ConfigureAwait(false) is not var (link, onwardOpen))
        {
            return;
        }
        var onward = link.OpenStream(onwardOpen, _context.Transit, _context.LinkOptions.InitialWindow);
        await Splice.RunAsync(inbound, onward, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// At a gateway: the link to the next server of <paramref name="open"/>'s route (dialed when there is none) and the
    /// Open to send on it; or null after resetting <paramref name="inbound"/> (a malformed route or login, logins that
    /// would cross a plain link, a failed dial: HopAuthenticationFailed, LinkLimit or TargetConnectFailed, named).
    /// </summary>
    private async Task<(Link Link, OpenMessage Onward)?> OnwardLinkAsync(MuxStream inbound, OpenMessage open, CancellationToken cancellationToken)
    {
        if (NextHop(inbound, open) is not var (next, login) || Onward(inbound, open, next) is not { } onwardOpen)
        {
            return null;
        }
        try
        {
            var link = await _context.Pool().GetAsync(next, login, TimeSpan.FromMilliseconds(open.ConnectTimeoutMs), cancellationToken,
                NextSession(inbound, next)).ConfigureAwait(false);
            return (link, onwardOpen);
        }
        catch (QmTunnelException ex)
        {
            inbound.Reset(ex.Kind == QmErrorKind.AuthenticationError ? ProtocolErrorCode.HopAuthenticationFailed
                : ex.ErrorId == ErrorIds.LinkLimit ? ProtocolErrorCode.LinkLimit : ProtocolErrorCode.TargetConnectFailed,
                $"{_context.ServerName}: {ex.Message}");
            return null;
        }
    }

    /// <summary>
    /// The session settings of the link to <paramref name="next"/>: it keeps its session as long as the one
    /// <paramref name="inbound"/> came on (the tunnel's failure tolerance, passed on hop by hop), with the next hop's
    /// own timing. Part of the pool's key, so a query finds the link the tunnel's streams use.
    /// </summary>
    private static LinkSessionSettings NextSession(MuxStream inbound, EndpointUri next) =>
        LinkSessionSettings.For(next.Timing, inbound.Link.Session.FailureTolerance);

    /// <summary>
    /// The next server of the Open's route and the login given for it (null: none), or null after resetting
    /// <paramref name="inbound"/> with OpenRejected (a malformed address or login).
    /// </summary>
    private (EndpointUri Next, LinkLogin? Login)? NextHop(MuxStream inbound, OpenMessage open)
    {
        EndpointUri next;
        try
        {
            next = EndpointUri.ParseServer(open.Route[0], "Route");
        }
        catch (QmTunnelException ex)
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, ex.Message);
            return null;
        }
        try
        {
            var login = open.RouteCredentials.Count > 0 && open.RouteCredentials[0] is { } credential
                ? HopCredential.FromRouteCredential(credential).ToLogin()
                : null;
            return (next, login);
        }
        catch (ArgumentException ex)
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{_context.ServerName}: the login given for {next.Address} is malformed ({ex.Message})");
            return null;
        }
    }

    /// <summary>
    /// The Open this gateway sends to <paramref name="next"/>: the route and logins after it, a query's depth one less;
    /// or null after resetting <paramref name="inbound"/> when later servers' logins would cross an unencrypted link.
    /// </summary>
    private OpenMessage? Onward(MuxStream inbound, OpenMessage open, EndpointUri next)
    {
        var onwardCredentials = open.RouteCredentials.Skip(1).ToList();
        if (next.Scheme == EndpointScheme.QmtPlain && onwardCredentials.Any(c => c is not null))
        {
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{_context.ServerName} will not send the logins of later servers over the unencrypted link to {next}: write that hop as qmt://{next.HostPort}.");
            return null;
        }
        return open with
        {
            Route = open.Route.Skip(1).ToList(),
            RouteCredentials = onwardCredentials.Any(c => c is not null) ? onwardCredentials : [],
            QueryDepth = open.Protocol is StreamProtocol.AuthQuery or StreamProtocol.LinkInfo ? (byte)(open.QueryDepth - 1) : (byte)0,
        };
    }

    /// <summary>
    /// AuthQuery (admitted like any stream of the tunnel): passed on while <see cref="OpenMessage.QueryDepth"/> says so;
    /// here, the next server of the route (<c>qmt://user@host:port</c>) is asked for that user's login parameters (a
    /// login query: no login, no pin recorded) and they are sent back (u16 salt length, salt, i32 iterations), so the
    /// tunnel's owner can derive keys for a server it cannot reach itself.
    /// </summary>
    private async Task AnswerLoginQueryAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        if (open.QueryDepth > 0)
        {
            await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
            return;
        }
        try
        {
            var server = EndpointUri.ParseServer(open.Route[0], "Route");
            if (server.User is null)
            {
                stream.Reset(ProtocolErrorCode.OpenRejected, $"a login query names a user: qmt://user@{server.HostPort}");
                return;
            }
            var (salt, iterations) = await _context.Pool().QueryLoginAsync(server, server.User, TimeSpan.FromMilliseconds(open.ConnectTimeoutMs), cancellationToken).ConfigureAwait(false);
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
            stream.Reset(ex.Kind == QmErrorKind.AuthenticationError ? ProtocolErrorCode.HopAuthenticationFailed : ProtocolErrorCode.TargetConnectFailed, $"{_context.ServerName}: {ex.Message}");
        }
    }
}

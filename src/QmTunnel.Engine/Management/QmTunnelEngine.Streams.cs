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

namespace QmTunnel.Engine.Management;

/// <summary>Streams opened on accepted links: access checks, targets, onward hops, login queries (link queries: QmTunnelEngine.LinkInfo.cs).</summary>
public sealed partial class QmTunnelEngine
{
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
            // session and request limits here; rights per operation, as for a local caller of the same user
            await ServeManagementAsync(link, stream, cancellationToken).ConfigureAwait(false);
            return;
        }
        // Every stream of a tunnel (Tcp, Check, AuthQuery, Hold, LinkInfo) passes the same check: the link's user, the
        // tunnel as this server can vouch for it, its rights and allow-rules.
        if (Admit(link, stream, open) is not { } admitted)
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
            stream.Reset(ProtocolErrorCode.PermissionDenied, $"{Options.ServerName}: the link is not logged in.");
            return null;
        }
        (SecurityPrincipal? Principal, AllowRuleSet? Rules) access;
        try
        {
            access = CurrentAccess(loggedIn.User.Name);
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
            (seen, denial) = AccessControl.AsSeenBy(open, previous, Options.ServerName);
            denial ??= access.Principal is null
                ? $"{Options.ServerName}: user '{loggedIn.User.Name}' is disabled or no longer exists on this server."
                : AccessControl.Denial(access.Principal, access.Rules!, AccessControl.RequestFor(seen), Options.ServerName);
        }
        catch (Exception ex) when (ex is QmTunnelException or ProtocolException)
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, $"{Options.ServerName}: {ex.Message}");
            return null;
        }
        if (denial is not null)
        {
            EngineLog.TunnelDenied(_logger, open.Tunnel, loggedIn.User.Name, denial);
            stream.Reset(ProtocolErrorCode.PermissionDenied, denial);
            return null;
        }
        return seen;
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

    /// <summary>
    /// At a gateway: carries the stream on to the next server of its route. <c>next</c> is that server's address as the
    /// tunnel's owner wrote it, with its options — pin, TLS, user and <see cref="EndpointUri.Timing"/> (the link timing
    /// given for that hop with New-QmTunnelHop) — and is what the link to it is dialed with (<see cref="LinkPool.GetAsync"/>).
    /// </summary>
    private async Task ForwardAsync(MuxStream inbound, OpenMessage open, CancellationToken cancellationToken)
    {
        if (NextHop(inbound, open) is not var (next, login) || Onward(inbound, open, next) is not { } onwardOpen)
        {
            return;
        }
        Link link;
        try
        {
            link = await _pool!.GetAsync(next, login, TimeSpan.FromMilliseconds(open.ConnectTimeoutMs), cancellationToken,
                NextSession(inbound, next)).ConfigureAwait(false);
        }
        catch (QmTunnelException ex)
        {
            inbound.Reset(ex.Kind == QmErrorKind.AuthenticationError ? ProtocolErrorCode.HopAuthenticationFailed : ProtocolErrorCode.TargetConnectFailed,
                $"{Options.ServerName}: {ex.Message}");
            return;
        }
        var onward = link.OpenStream(onwardOpen, _transit, _linkOptions.InitialWindow);
        await Splice.RunAsync(inbound, onward, _linkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
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
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{Options.ServerName}: the login given for {next.Address} is malformed ({ex.Message})");
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
            inbound.Reset(ProtocolErrorCode.OpenRejected, $"{Options.ServerName} will not send the logins of later servers over the unencrypted link to {next}: write that hop as qmt://{next.HostPort}.");
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
}

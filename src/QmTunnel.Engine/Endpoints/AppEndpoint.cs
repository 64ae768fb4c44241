using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Endpoints;

/// <summary>An open application listener: hands out each client connection (or datagram association) as it comes.</summary>
public interface IAppListener : IDisposable
{
    /// <summary>What it is bound to, as an endpoint (the real port when 0 was asked for).</summary>
    EndpointUri Bound { get; }

    /// <summary>
    /// The next connection. Throws OperationCanceledException or ObjectDisposedException once stopped; an
    /// <see cref="AppAcceptException"/> for one failed accept that leaves the listener usable.
    /// </summary>
    ValueTask<AppConnection> AcceptAsync(CancellationToken cancellationToken);
}

/// <summary>One accept failed (the client went away, a resource ran out) but the listener goes on.</summary>
public sealed class AppAcceptException(string message, bool transient, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>True when nothing is wrong with the listener (a client reset before it was accepted): no error to record.</summary>
    public bool Transient { get; } = transient;
}

/// <summary>How a listener is opened and how its bind errors read: who listens, and the fix for a port in use or else.</summary>
public sealed record AppListenOptions(string Subject, string InUseFix, string OtherFix, int Backlog = 1024);

/// <summary>
/// The application side of one URI scheme: its listener and its dialer. <see cref="For"/> picks the one for a scheme;
/// the tunnel runtime listens through it and the last server (or a reverse tunnel's owner) dials through it, so a
/// tunnel's two ends may be any two schemes that carry the same kind of traffic (bytes or datagrams). Bind errors are
/// PortInUse (the address is taken) or BindFailed (any other reason), each naming the endpoint and the fix.
/// </summary>
public abstract class AppEndpoint
{
    /// <summary>Opens the listener for <paramref name="listen"/>.</summary>
    public abstract Task<IAppListener> ListenAsync(EndpointUri listen, AppListenOptions options, CancellationToken cancellationToken);

    /// <summary>
    /// Connects to <paramref name="target"/> within <paramref name="timeout"/>: the connection, or null and why not
    /// (refused, unreachable, timed out, name not resolved, or "the server is stopping" when <paramref name="cancellationToken"/> fires).
    /// </summary>
    public abstract Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>The endpoint type of <paramref name="scheme"/>; NotSupported (EndpointUriInvalid) for a scheme with none.</summary>
    public static AppEndpoint For(EndpointScheme scheme) => scheme switch
    {
        EndpointScheme.Tcp => TcpAppEndpoint.Instance,
        EndpointScheme.Socks5 => TcpAppEndpoint.Socks5,
        EndpointScheme.Unix => UnixAppEndpoint.Instance,
        EndpointScheme.Pipe => PipeAppEndpoint.Instance,
        EndpointScheme.Udp => UdpAppEndpoint.Instance,
        _ => throw new QmTunnelException(ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, scheme,
            $"{EndpointUri.SchemeText(scheme)}:// is not an application endpoint this server can listen on or connect to."),
    };

    /// <summary>How the reason of a dial that got no answer in time starts (TargetDialer.CodeFor reads it).</summary>
    public const string NoAnswerText = "no answer within ";

    /// <summary>The reason of a failed dial, from the exception and whether the server was stopping: a socket error starts with its name.</summary>
    protected static string Failure(Exception ex, TimeSpan timeout, CancellationToken cancellationToken) => ex switch
    {
        System.Net.Sockets.SocketException se => $"{se.SocketErrorCode}: {se.Message}",
        OperationCanceledException or TimeoutException when cancellationToken.IsCancellationRequested => "the server is stopping",
        OperationCanceledException or TimeoutException => $"{NoAnswerText}{timeout.TotalMilliseconds:0} ms",
        _ => ex.Message,
    };

    protected static QmTunnelException InUse(object target, AppListenOptions options, string what, Exception? inner) =>
        new(ErrorIds.PortInUse, QmErrorKind.ResourceBusy, target, $"{options.Subject} cannot listen on {target}: {what}. {options.InUseFix}", inner);

    protected static QmTunnelException BindFailed(object target, AppListenOptions options, string why, Exception? inner) =>
        new(ErrorIds.BindFailed, QmErrorKind.ResourceUnavailable, target, $"{options.Subject} cannot listen on {target} ({why}). {options.OtherFix}", inner);
}

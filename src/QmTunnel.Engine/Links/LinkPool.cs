using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Outgoing links of a server, one per next-hop server, login and failure tolerance, shared by every tunnel that passes
/// that hop. A link whose connection is lost resumes by itself (<see cref="DialAsync"/>); one that ended is replaced on
/// the next request. It does not carry streams: callers open them on the returned <see cref="Link"/>.
/// </summary>
public sealed class LinkPool(LinkOptions options, ILogger logger, Security.PeerCertificatePolicy? certificates = null, Action<Link>? prepare = null) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task<Link>> _links = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, EndpointUri> _hops = new(StringComparer.OrdinalIgnoreCase);
    private readonly CancellationTokenSource _disposed = new();

    /// <summary>Number of links that are up.</summary>
    public int Count => _links.Values.Count(t => t.IsCompletedSuccessfully && !t.Result.IsClosed);

    /// <summary>Streams open now on the links that are up.</summary>
    /// <summary>The links that are up (tests).</summary>
    internal IReadOnlyList<Link> Links() => _links.Values.Where(t => t.IsCompletedSuccessfully && !t.Result.IsClosed).Select(t => t.Result).ToList();

    /// <summary>
    /// The hops of the links that are up, as they were asked for: with the options of their address, such as the
    /// <see cref="EndpointUri.Timing"/> a gateway read from the route (tests).
    /// </summary>
    internal IReadOnlyList<EndpointUri> Hops() =>
        _links.Where(e => e.Value.IsCompletedSuccessfully && !e.Value.Result.IsClosed && _hops.ContainsKey(e.Key)).Select(e => _hops[e.Key]).ToList();

    public int StreamCount => _links.Values.Where(t => t.IsCompletedSuccessfully && !t.Result.IsClosed).Sum(t => t.Result.StreamCount);

    /// <summary>The live link to <paramref name="hop"/> logged in as <paramref name="login"/>, if there is one (no dialing).</summary>
    public Link? TryGet(EndpointUri hop, LinkLogin? login, LinkSessionSettings? session = null) =>
        _links.TryGetValue(Key(hop, login, session), out var task) && task.IsCompletedSuccessfully && !task.Result.IsClosed ? task.Result : null;

    // The hop's text carries its own settings (TLS, timing); a failure tolerance of its own makes another session.
    // The user an address names is the login's, which is part of the key already: with it or without, one link.
    private static string Key(EndpointUri hop, LinkLogin? login, LinkSessionSettings? session) =>
        (hop with { User = null }) + "|" + login?.Key + "|" + (session?.FailureTolerance ?? LinkSessionSettings.DefaultFailureTolerance).TotalMilliseconds;

    /// <summary>
    /// The link to <paramref name="hop"/> logged in as <paramref name="login"/>: one per server and login, dialed on
    /// first use. Errors: HopConnectFailed, HopHandshakeFailed, AuthenticationFailed, HopCredentialMissing,
    /// CertificateMismatch, PlainLinkRefused, LinkLimit (the last link dialed was refused over the hop's MaxLinks).
    /// </summary>
    public async Task<Link> GetAsync(EndpointUri hop, LinkLogin? login, TimeSpan connectTimeout, CancellationToken cancellationToken, LinkSessionSettings? session = null)
    {
        if (login is null)
        {
            throw new QmTunnelException(ErrorIds.HopCredentialMissing, QmErrorKind.AuthenticationError, hop.ToString(),
                $"No login is given for the tunnel server {hop}: every server of a chain authenticates the link from the one before. " +
                $"Give one with -Via (New-QmTunnelHop {hop.Address} -Credential <user>).");
        }
        var key = Key(hop, login, session);
        _hops[key] = hop;
        var refused = 0;
        while (true)
        {
            var task = _links.GetOrAdd(key, _ => DialAsync(hop, login, connectTimeout, session));
            Link link;
            try
            {
                link = await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (QmTunnelException)
            {
                _links.TryRemove(new KeyValuePair<string, Task<Link>>(key, task));
                throw;
            }
            if (!link.IsClosed)
            {
                return link;
            }
            _links.TryRemove(new KeyValuePair<string, Task<Link>>(key, task));
            // A link refused earlier is dialed again once; refused again before we could use it: say why.
            if (link.CloseCode == ProtocolErrorCode.LinkLimit && refused++ > 0)
            {
                throw LinkLimitError(hop, link.CloseReason);
            }
        }
    }

    /// <summary>
    /// The error for a link <paramref name="hop"/> refused right after the login because it holds its MaxLinks (the
    /// refusal reaches the dialer on the new link, as its first frame: the dial itself succeeded).
    /// </summary>
    internal static QmTunnelException LinkLimitError(EndpointUri hop, string? reason) => new(ErrorIds.LinkLimit, QmErrorKind.ResourceBusy, hop.ToString(),
        $"{hop.Address} refused the link: {LinkLimitReason(reason)}");

    /// <summary>The refusing server's own words, after "... (LinkLimit): " when they came through a closed link or a reset stream.</summary>
    internal static string LinkLimitReason(string? reason)
    {
        const string marker = "(LinkLimit): ";
        var at = reason?.IndexOf(marker, StringComparison.Ordinal) ?? -1;
        return reason is null ? "it holds its MaxLinks links: raise the limit there with Set-QmTunnelServerConfig -MaxLinks."
            : at >= 0 ? reason[(at + marker.Length)..] : reason;
    }

    /// <summary>
    /// Asks <paramref name="hop"/> for the salt and PBKDF2 iterations it gives <paramref name="user"/> (see
    /// <see cref="LinkDialer.QueryLoginAsync"/>). Errors as <see cref="GetAsync"/>.
    /// </summary>
    public async Task<(byte[] Salt, int Iterations)> QueryLoginAsync(EndpointUri hop, string user, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token, cancellationToken);
        return await LinkDialer.QueryLoginAsync(hop, user, options, certificates, connectTimeout, linked.Token).ConfigureAwait(false);
    }

    private Task<Link> DialAsync(EndpointUri hop, LinkLogin login, TimeSpan connectTimeout, LinkSessionSettings? session) =>
        LinkDialer.DialAsync(hop, login, options, logger, certificates ?? throw new InvalidOperationException("no certificate policy for TLS links"), connectTimeout, _disposed.Token, session, prepare);

    public async ValueTask DisposeAsync()
    {
        _disposed.Cancel();
        var closing = new List<Task>();
        foreach (var task in _links.Values)
        {
            if (task.IsCompletedSuccessfully)
            {
                closing.Add(task.Result.CloseAsync(ProtocolErrorCode.Shutdown, "the server is stopping"));
            }
        }
        _links.Clear();
        await Task.WhenAll(closing).ConfigureAwait(false);
    }
}

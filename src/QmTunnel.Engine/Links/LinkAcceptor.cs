using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Links;

/// <summary>Limits and timings of a <see cref="LinkAcceptor"/>.</summary>
internal sealed record LinkAcceptorSettings
{
    /// <summary>Connections that have not logged in, in all (see <see cref="PendingLinks"/>).</summary>
    public required int MaxPendingLinks { get; init; }
    /// <summary>Connections that have not logged in, per IPv4 address or IPv6 /64.</summary>
    public required int MaxPendingLinksPerSource { get; init; }
    /// <summary>From accept to a logged-in link (first byte, TLS, Hellos, login), at most this long.</summary>
    public required TimeSpan HandshakeTimeout { get; init; }
    /// <summary>The first wait after a failed accept; doubled per further failure up to <see cref="MaxAcceptRetryDelay"/>.</summary>
    public TimeSpan AcceptRetryDelay { get; init; } = TimeSpan.FromMilliseconds(10);
    public TimeSpan MaxAcceptRetryDelay { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// The accept side of a server: the accept loop (with a back-off when accepting fails, e.g. out of file descriptors),
/// the pending-connection caps (<see cref="PendingLinks"/>), TLS detection by the first byte, the link handshake and the
/// login. A logged-in link is handed to <c>accepted</c>, which owns it from then on. It does not own the listening
/// socket (the caller closes it), route streams or know about tunnels.
/// </summary>
internal sealed partial class LinkAcceptor
{
    private const byte TlsHandshakeRecord = 0x16;

    private readonly Func<CancellationToken, ValueTask<Socket>> _accept;
    private readonly LinkAcceptorSettings _settings;
    private readonly LinkOptions _linkOptions;
    private readonly ILinkAuthenticator _authenticator;
    private readonly SslServerAuthenticationOptions? _tlsOptions;
    private readonly byte[] _channelBinding;
    private readonly Func<string?> _refusePlain;
    private readonly Action<Link> _accepted;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly PendingLinks _pending;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _handOver = new();
    private bool _stopping;
    private Task? _loop;
    private long _protocolErrors, _plainRefused, _acceptFailures;
    /// <summary>Read at the start: out of descriptors, /proc/self/limits cannot be opened any more.</summary>
    private readonly string? _openFilesLimit = OpenFilesLimit();

    /// <param name="accept">Accepts the next connection (the listening socket's AcceptAsync).</param>
    /// <param name="certificate">The server's TLS certificate and its context; null: TLS connections are refused.</param>
    /// <param name="refusePlain">Null when plain links are accepted now, else the reason given to a plain dialer.</param>
    /// <param name="accepted">Takes each logged-in link (wires it and starts it).</param>
    public LinkAcceptor(Func<CancellationToken, ValueTask<Socket>> accept, LinkAcceptorSettings settings, LinkOptions linkOptions,
        ILinkAuthenticator authenticator, (X509Certificate2 Certificate, SslStreamCertificateContext Context)? certificate,
        Func<string?> refusePlain, Action<Link> accepted, ILogger logger, TimeProvider time)
    {
        _accept = accept;
        _settings = settings;
        _linkOptions = linkOptions;
        _authenticator = authenticator;
        _refusePlain = refusePlain;
        _accepted = accepted;
        _logger = logger;
        _time = time;
        _pending = new PendingLinks(settings.MaxPendingLinks, settings.MaxPendingLinksPerSource);
        _channelBinding = certificate is { } c ? PasswordChallenge.TlsServerEndPoint(c.Certificate) : [];
        _tlsOptions = certificate is { } cert ? new SslServerAuthenticationOptions
        {
            ServerCertificateContext = cert.Context,
            EnabledSslProtocols = TlsDefaults.Protocols,
            CipherSuitesPolicy = TlsDefaults.CipherSuites,
            // Asked for, never required: a client certificate is one way to log in (mapped to a user by thumbprint).
            ClientCertificateRequired = true,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        } : null;
    }

    /// <summary>Connections accepted that have not logged in yet.</summary>
    /// <summary>The link sessions accepted here that a dialer may resume.</summary>
    public LinkSessionRegistry Sessions { get; } = new();

    public int PendingCount => _pending.Count;
    public long PendingPeak => _pending.Peak;
    /// <summary>New connections closed at once: their source had MaxPendingLinksPerSource pending.</summary>
    public long PendingRefused => _pending.Refused;
    /// <summary>Pending connections closed to make room (MaxPendingLinks reached): the oldest first.</summary>
    public long PendingEvicted => _pending.Evicted;
    /// <summary>Handshakes that broke the protocol (bad preamble, bad Hello, TLS failure).</summary>
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors);
    /// <summary>Plain links refused because plain links are not allowed.</summary>
    public long PlainLinksRefused => Interlocked.Read(ref _plainRefused);
    /// <summary>Accepts that failed (each one waited before the next try).</summary>
    public long AcceptFailures => Interlocked.Read(ref _acceptFailures);

    /// <summary>The connections waiting for their login now, oldest first (tests, diagnostics).</summary>
    internal PendingLink[] PendingSnapshot() => _pending.Snapshot();

    public void Start() => _loop = Task.Run(() => AcceptLoopAsync(_stop.Token));

    /// <summary>
    /// Stops accepting, closes every pending connection, and returns once no link can be handed over any more.
    /// The listening socket is the caller's to close (before or after).
    /// </summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        lock (_handOver)
        {
            _stopping = true;
        }
        foreach (var pending in _pending.RemoveAll())
        {
            pending.Abort();
        }
    }

    private async Task AcceptLoopAsync(CancellationToken stopping)
    {
        long failures = 0;
        var delay = TimeSpan.Zero;
        var since = DateTimeOffset.MinValue;
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _accept(stopping).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return; // the listening socket was closed under a pending accept
            }
            catch (Exception ex)
            {
                // Never spin: out of descriptors (EMFILE/ENFILE), the socket stays readable and accept fails at once
                // again. Whatever the error, wait, doubling up to the cap, until an accept works; say so once per
                // episode. The loop never ends but with the server.
                var error = ex is SocketException socketError ? socketError.SocketErrorCode : SocketError.SocketError;
                Interlocked.Increment(ref _acceptFailures);
                if (failures++ == 0)
                {
                    since = _time.GetUtcNow();
                    delay = _settings.AcceptRetryDelay;
                    AcceptorLog.AcceptFailing(_logger, error, ex.Message, DescriptorHint(error), _settings.MaxAcceptRetryDelay.TotalMilliseconds);
                }
                else
                {
                    delay = delay * 2 > _settings.MaxAcceptRetryDelay ? _settings.MaxAcceptRetryDelay : delay * 2;
                }
                try
                {
                    await Task.Delay(delay, _time, stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            if (failures > 0)
            {
                AcceptorLog.AcceptRecovered(_logger, failures, Math.Round((_time.GetUtcNow() - since).TotalSeconds, 2));
                failures = 0;
            }
            Admit(socket);
        }
    }

    /// <summary>What to do about a failed accept, when it is for lack of descriptors or memory.</summary>
    private string DescriptorHint(SocketError error)
    {
        if (error is not (SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable))
        {
            return string.Empty;
        }
        var limit = _openFilesLimit;
        return $": the process is out of file descriptors{(limit is null ? "" : $" (open files limit {limit})")}; raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower MaxPendingLinks";
    }

    private static string? OpenFilesLimit()
    {
        try
        {
            return File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal)) is { } line
                ? line.Split(' ', StringSplitOptions.RemoveEmptyEntries).ElementAtOrDefault(3)
                : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Counts the new connection against the caps (closing it, or the oldest pending one) and starts its handshake.</summary>
    private void Admit(Socket socket)
    {
        IPEndPoint? remote;
        try
        {
            remote = socket.RemoteEndPoint as IPEndPoint;
        }
        catch (SocketException)
        {
            remote = null; // reset before we looked
        }
        if (remote is null)
        {
            PendingLink.AbortSocket(socket);
            return;
        }
        var pending = new PendingLink(socket, remote.Address, remote.ToString(), new CancellationTokenSource(_settings.HandshakeTimeout, _time))
        {
            AcceptedAt = _time.GetUtcNow(),
        };
        if (!_pending.TryAdd(pending, out var evicted))
        {
            AcceptorLog.PendingRefused(_logger, pending.Peer, pending.Source.ToString(), _pending.MaxPerSource);
            pending.Abort();
            pending.Handshake.Dispose();
            return;
        }
        if (evicted is not null)
        {
            evicted.Evicted = true;
            AcceptorLog.PendingEvicted(_logger, evicted.Peer, _pending.MaxTotal, (long)(_time.GetUtcNow() - evicted.AcceptedAt).TotalMilliseconds);
            // Off the accept loop: the aborted handshake's continuations run where it is cancelled.
            ThreadPool.UnsafeQueueUserWorkItem(static link => link.Abort(), evicted, preferLocal: false);
        }
        _ = HandshakeAsync(pending);
    }
}

using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// A dialer and an acceptor <see cref="Link"/> joined by a <see cref="MemoryLinkTransport"/> pair, for tests that need
/// no sockets: <see cref="Start"/> makes both as if Hello, login and SessionStart had been exchanged (same session id and
/// secret on both, the acceptor's registered for resumes), and <see cref="ResumeAsync"/> carries the session on on a
/// fresh pair with the real Resume / Resumed exchange (proof, counts, eviction of a connection still attached, resend).
/// It does not redial by itself (the dialer has no <see cref="Link.Reconnect"/>): a lost connection stays lost until the
/// test resumes it or the failure tolerance ends the session.
/// </summary>
internal sealed class MemoryLinkPair : IAsyncDisposable
{
    /// <summary>The user both links are logged in as.</summary>
    public const string User = "memory-test";

    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    private MemoryLinkPair(Link dialer, Link acceptor, MemoryLinkTransport dialerEnd, MemoryLinkTransport acceptorEnd, LinkSessionRegistry sessions, ILogger logger, TimeProvider time)
    {
        Dialer = dialer;
        Acceptor = acceptor;
        DialerEnd = dialerEnd;
        AcceptorEnd = acceptorEnd;
        Sessions = sessions;
        _logger = logger;
        _time = time;
    }

    public Link Dialer { get; }
    public Link Acceptor { get; }

    /// <summary>The dialer's end of the connection now (the last one a resume made).</summary>
    public MemoryLinkTransport DialerEnd { get; private set; }

    /// <summary>The acceptor's end of the connection now.</summary>
    public MemoryLinkTransport AcceptorEnd { get; private set; }

    /// <summary>The acceptor's session registry (the acceptor's link is in it while its session is resumable and alive).</summary>
    public LinkSessionRegistry Sessions { get; }

    /// <summary>
    /// Makes and starts the pair. <paramref name="session"/> gives both sides' failure tolerance and heartbeats (an empty
    /// id and secret get fresh ones); the clock is <paramref name="dialerOptions"/>' <see cref="LinkOptions.Time"/>, which
    /// <paramref name="acceptorOptions"/> (default: the dialer's with another server id) must share. The stream
    /// handlers are set before the loops start.
    /// </summary>
    public static MemoryLinkPair Start(LinkSessionSettings session, LinkOptions dialerOptions, LinkOptions? acceptorOptions = null,
        Func<MuxStream, OpenMessage, Task>? dialerStreams = null, Func<MuxStream, OpenMessage, Task>? acceptorStreams = null, ILogger? logger = null)
    {
        acceptorOptions ??= dialerOptions with { ServerId = Guid.NewGuid().ToString("n") };
        if (!ReferenceEquals(acceptorOptions.Time, dialerOptions.Time))
        {
            throw new ArgumentException("both sides of a memory link pair must share one clock", nameof(acceptorOptions));
        }
        if (session.Resumable && (session.Id.Length == 0 || session.Secret.Length == 0))
        {
            var offer = LinkSessionOffer.Create();
            session = session with { Id = offer.Id, Secret = offer.Secret };
        }
        logger ??= NullLogger.Instance;
        var (dialerEnd, acceptorEnd) = MemoryLinkTransport.CreatePair(dialerOptions.Time);
        var dialer = Link.CreateOver(dialerEnd, dialerOptions, HelloOf(acceptorOptions), isDialer: true, session, logger, User, User);
        var acceptor = Link.CreateOver(acceptorEnd, acceptorOptions, HelloOf(dialerOptions), isDialer: false, session, logger, User, User);
        var sessions = new LinkSessionRegistry();
        if (session.Resumable)
        {
            sessions.Register(acceptor);
        }
        dialer.StreamOpened = dialerStreams;
        acceptor.StreamOpened = acceptorStreams;
        dialer.Start();
        acceptor.Start();
        return new MemoryLinkPair(dialer, acceptor, dialerEnd, acceptorEnd, sessions, logger, dialerOptions.Time);
    }

    /// <summary>
    /// Resumes the session on a fresh memory connection, as a redial would after the login: the dialer gives up the
    /// connection it has (if it still has one), sends Resume with its proof and count; the acceptor evicts its own, answers
    /// Resumed; both resend what the other lacks. Returns when both carry on; refusals throw (a ProtocolException of the
    /// GoAway's code, or of StreamStateError for counts that cannot be right).
    /// </summary>
    public async Task ResumeAsync(CancellationToken cancellationToken = default)
    {
        var (dialerEnd, acceptorEnd) = MemoryLinkTransport.CreatePair(_time);
        var offer = LinkSessionOffer.Create();
        var accepting = Link.AcceptResumeAsync(acceptorEnd, User, offer, Sessions, _logger, cancellationToken);
        var resuming = Dialer.ResumeOnAsync(dialerEnd, offer.Nonce, cancellationToken);
        try
        {
            await Task.WhenAll(accepting, resuming).ConfigureAwait(false);
        }
        catch
        {
            // One side failing must not leave the other waiting for a frame that will not come.
            dialerEnd.Cut();
            await Task.WhenAll(accepting, resuming).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }
        DialerEnd = dialerEnd;
        AcceptorEnd = acceptorEnd;
    }

    /// <summary>Closes both sides (GoAway, then the connection).</summary>
    public async ValueTask DisposeAsync()
    {
        await Dialer.DisposeAsync().ConfigureAwait(false);
        await Acceptor.DisposeAsync().ConfigureAwait(false);
    }

    private static HelloMessage HelloOf(LinkOptions options) =>
        new(LinkOptions.MaxVersion, LinkOptions.MaxVersion, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow);
}

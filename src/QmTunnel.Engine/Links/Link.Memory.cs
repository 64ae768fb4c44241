using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// Entry points for a link whose connection was set up elsewhere, such as a <see cref="MemoryLinkTransport"/> in tests
/// (<see cref="MemoryLinkPair"/>): a link over a transport whose handshake is taken as done, and the acceptor's side of a
/// resume read from a transport. The dialer's side is <see cref="ResumeOverAsync"/>, which the socket path uses too.
/// They do no Hello and no login, and check nothing a handshake would have checked.
/// </summary>
public sealed partial class Link
{
    /// <summary>
    /// A link on <paramref name="transport"/> as if the handshake (Hello from <paramref name="peer"/>, a login as
    /// <paramref name="user"/>, SessionStart with <paramref name="session"/>) had been done on it. Not started.
    /// </summary>
    internal static Link CreateOver(LinkTransport transport, LinkOptions options, HelloMessage peer, bool isDialer, LinkSessionSettings session,
        ILogger logger, string? user, string? group) =>
        new(transport, options, peer, isDialer, TimeSpan.Zero, logger, session) { User = user, Group = group };

    /// <summary>
    /// Dialer, on a fresh connection that is logged in as this session's user (<paramref name="resumeNonce"/> from its
    /// AuthOk): Resume, Resumed, and the session carries on on <paramref name="transport"/>; refusals throw as
    /// <see cref="ResumeOnAsync"/>'s do.
    /// </summary>
    internal async Task ResumeOnAsync(LinkTransport transport, byte[] resumeNonce, CancellationToken cancellationToken)
    {
        await _resumeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await ResumeOverAsync(transport, resumeNonce, LastRoundTrip, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _resumeLock.Release();
        }
    }

    /// <summary>
    /// Acceptor, on a fresh connection logged in as <paramref name="user"/> whose AuthOk carried <paramref name="offer"/>:
    /// reads the dialer's Resume and resumes the session it names (as a socket connection would, through
    /// <see cref="ResumeAsAcceptorAsync"/>). On any failure the transport is aborted and the error thrown.
    /// </summary>
    internal static async Task<Link> AcceptResumeAsync(LinkTransport transport, string user, LinkSessionOffer offer, LinkSessionRegistry sessions,
        ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            var (_, message) = await ReadControlAsync(transport.Input, cancellationToken, FrameType.Resume).ConfigureAwait(false);
            ThrowIfGoAway(message);
            return await ResumeAsAcceptorAsync(transport, (ResumeMessage)message, user, offer, sessions, logger, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            transport.Abort();
            throw;
        }
    }
}

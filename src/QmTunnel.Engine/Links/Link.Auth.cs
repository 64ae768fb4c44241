using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Links;

/// <summary>The login step of the link handshake (docs/protocol.md, "Login"), both sides.</summary>
public sealed partial class Link
{
    /// <summary>Dialer: answers the challenge (passwords) and waits for AuthOk; a GoAway is thrown with its code.</summary>
    private static async Task<AuthOkMessage> LogInAsync(Socket socket, Stream? tls, PipeReader reader, LinkLogin login, byte[] clientNonce,
        byte[] channelBinding, string server, CancellationToken cancellationToken)
    {
        PasswordProof? proof = null;
        if (login.Method == AuthMethod.Password)
        {
            var (_, message) = await ReadControlAsync(reader, cancellationToken, FrameType.AuthChallenge).ConfigureAwait(false);
            ThrowIfGoAway(message);
            var challenge = (AuthChallengeMessage)message;
            var parameters = new PasswordChallengeParameters(challenge.ServerNonce, challenge.Salt, challenge.Iterations);
            proof = login switch
            {
                // PBKDF2 is the slow step (tens to hundreds of ms): off the caller's thread.
                PasswordLogin p => await Task.Run(() => PasswordChallenge.CreateProof(p.Password, p.User, clientNonce, parameters, channelBinding), cancellationToken).ConfigureAwait(false),
                KeysLogin k when k.Keys.Iterations == challenge.Iterations && k.Keys.Salt.Span.SequenceEqual(challenge.Salt) =>
                    PasswordChallenge.CreateProof(k.Keys, k.User, clientNonce, parameters, channelBinding),
                // Keys made for another salt: the password changed there, or the user is gone or disabled (which the
                // server hides behind a fake salt). Finish with a proof that cannot pass, so the server decides.
                KeysLogin => new PasswordProof(System.Security.Cryptography.RandomNumberGenerator.GetBytes(PasswordChallenge.ProofSize), new byte[32]),
                _ => throw new InvalidOperationException($"{login.GetType().Name} is not a password login"),
            };
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, new AuthProofMessage(proof.ClientProof)), cancellationToken).ConfigureAwait(false);
        }
        var (_, answer) = await ReadControlAsync(reader, cancellationToken, FrameType.AuthOk).ConfigureAwait(false);
        if (answer is GoAwayMessage refused && login is KeysLogin stale && proof is not null && proof.ExpectedServerSignature.All(b => b == 0))
        {
            throw new ProtocolException(refused.Code, refused.Reason +
                $" The login kept for '{stale.User}' was made for a password that has changed there, or the user was removed or disabled:" +
                $" if the password changed, give it again with Set-QmTunnel <name> -Via (New-QmTunnelHop {server} -Credential {stale.User}).");
        }
        ThrowIfGoAway(answer);
        var ok = (AuthOkMessage)answer;
        if (proof is not null)
        {
            PasswordChallenge.CheckServerSignature(proof, ok.ServerSignature, server);
        }
        return ok;
    }

    private static void ThrowIfGoAway(ControlMessage message)
    {
        if (message is GoAwayMessage goAway)
        {
            throw new ProtocolException(goAway.Code, goAway.Reason);
        }
    }

    /// <summary>Acceptor: reads AuthStart, lets the authenticator decide (it may challenge), answers AuthOk or GoAway.</summary>
    private static async Task<LoginResult> AcceptLoginAsync(Socket socket, Stream? tls, PipeReader reader, ILinkAuthenticator authenticator,
        X509Certificate2? clientCertificate, byte[] channelBinding, LinkSessionOffer? offer, CancellationToken cancellationToken)
    {
        var (_, message) = await ReadControlAsync(reader, cancellationToken, FrameType.AuthStart).ConfigureAwait(false);
        ThrowIfGoAway(message);
        var start = (AuthStartMessage)message;
        var request = new LoginRequest(start, (socket.RemoteEndPoint as System.Net.IPEndPoint)?.Address.ToString() ?? "?", clientCertificate, channelBinding, tls is not null,
            async (challenge, ct) =>
            {
                await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, challenge), ct).ConfigureAwait(false);
                var (_, reply) = await ReadControlAsync(reader, ct, FrameType.AuthProof).ConfigureAwait(false);
                ThrowIfGoAway(reply);
                return (AuthProofMessage)reply;
            });
        LoginResult result;
        try
        {
            result = await authenticator.AuthenticateAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (LoginFailedException ex)
        {
            await WriteRawAsync(socket, tls, BuildHandshake(preamble: false, new GoAwayMessage(ProtocolErrorCode.AuthenticationFailed, ex.Message)), cancellationToken).ConfigureAwait(false);
            throw new ProtocolException(ProtocolErrorCode.AuthenticationFailed, $"login of '{start.User}' refused: {ex.Detail}");
        }
        await WriteRawAsync(socket, tls, BuildHandshake(preamble: false,
            new AuthOkMessage(result.Principal.User.Name, result.Principal.Group.Name, result.ServerSignature)
            {
                SessionId = offer?.Id ?? [],
                SessionSecret = offer?.Secret ?? [],
                ResumeNonce = offer?.Nonce ?? [],
            }), cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>
    /// Asks a server for the login parameters (salt, PBKDF2 iterations) it gives <paramref name="user"/>: a handshake
    /// up to the challenge, then the connection is dropped without a proof. Needed once to derive the keys a tunnel
    /// keeps for a hop, so that no password is stored. The socket (and TLS stream) are the caller's to dispose.
    /// </summary>
    public static async Task<(byte[] Salt, int Iterations)> QueryLoginParametersAsync(Socket socket, LinkOptions options, string user, CancellationToken cancellationToken, Stream? tls = null)
    {
        var stream = tls ?? new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        var hello = new HelloMessage(LinkOptions.MinVersion, LinkOptions.MaxVersion, options.ServerId, options.ServerName, options.MaxPayload, options.InitialWindow);
        byte[] first = [.. BuildHandshake(preamble: true, hello), .. BuildHandshake(preamble: false, new AuthStartMessage(AuthMethod.Password, user, PasswordChallenge.NewNonce()))];
        await WriteRawAsync(socket, tls, first, timeout.Token).ConfigureAwait(false);
        var (_, peer) = await ReadControlAsync(reader, timeout.Token, FrameType.Hello).ConfigureAwait(false);
        ThrowIfGoAway(peer);
        if (peer is HelloMessage h && (h.MinVersion != h.MaxVersion || h.MinVersion < LinkOptions.MinVersion || h.MinVersion > LinkOptions.MaxVersion))
        {
            throw new ProtocolException(ProtocolErrorCode.UnsupportedVersion, $"the server chose protocol version {h.MinVersion}-{h.MaxVersion}; this side speaks {LinkOptions.MinVersion}-{LinkOptions.MaxVersion}");
        }
        var (_, message) = await ReadControlAsync(reader, timeout.Token, FrameType.AuthChallenge).ConfigureAwait(false);
        ThrowIfGoAway(message);
        var challenge = (AuthChallengeMessage)message;
        await reader.CompleteAsync().ConfigureAwait(false);
        return (challenge.Salt, challenge.Iterations);
    }
}

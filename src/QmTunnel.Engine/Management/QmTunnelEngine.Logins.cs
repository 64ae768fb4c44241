using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>Hop logins of tunnels: deriving the keys a profile keeps, and checking a chain before a tunnel is saved.</summary>
public sealed partial class QmTunnelEngine
{
    /// <summary>
    /// The credentials a tunnel through <paramref name="via"/> keeps: for each hop with a <see cref="HopLogin"/>, keys
    /// derived from the password for that server's salt (asked through the chain for servers behind others) or the
    /// client certificate file; for a hop without one, the <paramref name="existing"/> credential of the same server
    /// and user, if any. Errors: HopConnectFailed, AuthenticationFailed, CredentialOnPlainLink, CertificateInvalid.
    /// </summary>
    private async Task<IReadOnlyList<HopCredential?>> ResolveCredentialsAsync(TunnelProfile profile, IReadOnlyList<HopLogin?> logins,
        IReadOnlyList<(EndpointUri Hop, HopCredential? Credential)> existing, CancellationToken cancellationToken)
    {
        var hops = ParseVia(profile);
        var connectTimeout = profile.ConnectTimeout;
        var result = new HopCredential?[hops.Count];
        for (var i = 0; i < hops.Count; i++)
        {
            var hop = hops[i];
            var login = i < logins.Count ? logins[i] : null;
            if (login is null)
            {
                result[i] = existing.FirstOrDefault(e => e.Credential is not null && string.Equals(e.Hop.Address, hop.Address, StringComparison.OrdinalIgnoreCase)
                    && (hop.User is null || string.Equals(e.Credential.User, hop.User, StringComparison.OrdinalIgnoreCase))).Credential;
                continue;
            }
            if (login.CertificatePath is { } path)
            {
                if (i > 0)
                {
                    throw new QmTunnelException(ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, hop.ToString(),
                        $"A client certificate can log in to the first server of a chain only (its private key stays on this server); {hop.Address} is server {i + 1}. Give -Credential for it instead.");
                }
                if (hop.Scheme != EndpointScheme.Qmt)
                {
                    throw new QmTunnelException(ErrorIds.CredentialOnPlainLink, QmErrorKind.SecurityError, hop.ToString(),
                        $"A client certificate login needs TLS, and {hop.Address} is an unencrypted link: write the hop as qmt://{hop.HostPort}.");
                }
                var full = Path.GetFullPath(path);
                ServerCertificate.LoadFromFiles(full, keyPath: null, password: null).Dispose();
                result[i] = new HopCredential { User = login.User, CertificatePath = full };
                continue;
            }
            if (hops.Take(i).FirstOrDefault(h => h.Scheme == EndpointScheme.QmtPlain) is { } plain)
            {
                throw new QmTunnelException(ErrorIds.CredentialOnPlainLink, QmErrorKind.SecurityError, hop.ToString(),
                    $"The login for {hop.Address} would be carried over the unencrypted link to {plain.Address}. Write that hop as qmt://{plain.HostPort}, or log in to {hop.Address} from a tunnel of its own.");
            }
            var (salt, iterations) = i == 0
                ? await _pool!.QueryLoginAsync(hop, login.User, connectTimeout, cancellationToken).ConfigureAwait(false)
                : await QueryThroughChainAsync(profile, hops, result, i, login.User, cancellationToken).ConfigureAwait(false);
            if (iterations < PasswordChallenge.MinClientIterations || iterations > PasswordHasher.MaxIterations || salt.Length < PasswordHasher.SaltSize)
            {
                throw new QmTunnelException(SecurityErrorIds.AuthenticationChallengeInvalid, QmErrorKind.SecurityError, hop.ToString(),
                    $"{hop.Address} asks for {iterations} PBKDF2 iterations and a {salt.Length}-byte salt, outside what a client accepts ({PasswordChallenge.MinClientIterations}+, {PasswordHasher.SaltSize}+ bytes). The password was not used.");
            }
            var password = login.Password ?? throw new QmTunnelException(ErrorIds.HopCredentialMissing, QmErrorKind.AuthenticationError, hop.ToString(),
                $"The login for {hop.Address} has neither a password nor a certificate.");
            var keys = await Task.Run(() => ScramKeys.Derive(password, salt, iterations), cancellationToken).ConfigureAwait(false);
            result[i] = HopCredential.FromKeys(login.User, keys);
        }
        return result;
    }

    /// <summary>
    /// AuthQuery for hop <paramref name="index"/> through the servers before it, whose logins are already resolved. The
    /// Open describes the whole tunnel, as its connections will, so every server on the way admits it with the same
    /// rights and allow-rules (docs/protocol.md, "Access check").
    /// </summary>
    private async Task<(byte[] Salt, int Iterations)> QueryThroughChainAsync(TunnelProfile profile, IReadOnlyList<EndpointUri> hops, IReadOnlyList<HopCredential?> resolved,
        int index, string user, CancellationToken cancellationToken)
    {
        var connectTimeout = profile.ConnectTimeout;
        var link = await _pool!.GetAsync(hops[0], resolved[0]?.ToLogin(), connectTimeout, cancellationToken).ConfigureAwait(false);
        var route = hops.Skip(1).Select((h, j) => (j == index - 1 ? h with { User = user } : h).ToString()).ToList();
        var open = new OpenMessage(StreamProtocol.AuthQuery, profile.Name, string.IsNullOrEmpty(profile.Target) ? string.Empty : EndpointUri.ParseApplication(profile.Target, "Target").ToString(), route,
            (int)connectTimeout.TotalMilliseconds, OpenOptions.None, string.Empty)
        {
            Listen = EndpointUri.ParseApplication(profile.Listen, "Listen").HostPort,
            Servers = hops.Select(h => h.HostPort).ToList(),
            RouteCredentials = index == 1 ? [] : hops.Skip(1).Select((_, j) => j < index - 1 && resolved[j + 1]?.HasKeys == true ? resolved[j + 1]!.ToRouteCredential() : null).ToList(),
            QueryDepth = (byte)(index - 1),
        };
        var stream = link.OpenStream(open, _transit, _linkOptions.InitialWindow);
        stream.SendFin(); // nothing to send: the stream ends both ways once the answer is in
        byte[] answer;
        try
        {
            answer = await stream.ReadToEndAsync(1024, cancellationToken).ConfigureAwait(false);
        }
        catch (StreamResetException ex)
        {
            throw RouteError(ex.Code, ex.Message, hops[index]);
        }
        if (answer.Length < 6 || System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(answer) is var saltLength && answer.Length != 2 + saltLength + 4)
        {
            throw new QmTunnelException(ErrorIds.HopHandshakeFailed, QmErrorKind.ProtocolError, hops[index].ToString(),
                $"The answer to the login query for {hops[index].Address} is malformed ({answer.Length} bytes). Check the versions of the servers of the chain.");
        }
        return (answer[2..(2 + saltLength)], System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(answer.AsSpan(2 + saltLength)));
    }

    /// <summary>
    /// Runs a Check stream through the whole chain of <paramref name="runtime"/>: every server authenticates the
    /// link from the one before and applies its allow-rules; nothing connects to the target. Errors:
    /// AuthenticationFailed (AuthenticationError), PermissionDenied naming the server and rule set, LinkLimit (a server
    /// of the chain holds its MaxLinks), HopConnectFailed.
    /// </summary>
    private static async Task CheckChainAsync(Tunnels.TunnelRuntime runtime, CancellationToken cancellationToken)
    {
        var link = await runtime.GetFirstLinkAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var stream = link.OpenStream(runtime.NewOpen(StreamProtocol.Check, OpenOptions.None, "check"), new TrafficCounters(), 64 * 1024);
            stream.SendFin(); // nothing to send: the stream ends both ways once the answer is in
            await stream.ReadToEndAsync(0, cancellationToken).ConfigureAwait(false);
        }
        catch (StreamResetException ex)
        {
            throw RouteError(ex.Code, ex.Message, null);
        }
    }

    private static QmTunnelException RouteError(ProtocolErrorCode code, string reason, EndpointUri? hop) => code switch
    {
        ProtocolErrorCode.PermissionDenied => new QmTunnelException(ErrorIds.PermissionDenied, QmErrorKind.PermissionDenied, hop?.ToString(),
            $"The tunnel was refused by {reason}"),
        ProtocolErrorCode.HopAuthenticationFailed => new QmTunnelException(ErrorIds.AuthenticationFailed, QmErrorKind.AuthenticationError, hop?.ToString(), reason),
        ProtocolErrorCode.LinkLimit => new QmTunnelException(ErrorIds.LinkLimit, QmErrorKind.ResourceBusy, hop?.ToString(),
            $"A server of the chain refused the link to it: {LinkPool.LinkLimitReason(reason)}"),
        _ => new QmTunnelException(ErrorIds.HopConnectFailed, QmErrorKind.ConnectionError, hop?.ToString(), $"The chain could not be checked: {reason}"),
    };
}

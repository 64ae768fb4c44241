using QmTunnel.Engine.Diagnostics;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Storage;

namespace QmTunnel.Engine.Security;

/// <summary>
/// The server side of link logins: passwords by challenge-response against the stored verifier, client certificates
/// by their thumbprint. Refusals say the same thing to the peer whatever the cause (unknown user, wrong password,
/// disabled user) and the real cause to the log; an unknown user's challenge looks like a real one (a salt derived
/// from a server secret and the name, and the server's current iteration count). Attempts are throttled per source
/// address and per user (<see cref="LoginThrottle"/>). It decides who a link is, not what it may do (see the engine's
/// access checks).
/// </summary>
/// <param name="passwordIterations">The iteration count the server gives new passwords now: what fake challenges show.</param>
public sealed class LinkAuthenticator(UserStore users, LoginThrottle throttle, ILogger logger, string serverName, Func<int> passwordIterations) : ILinkAuthenticator
{
    private readonly byte[] _fakeSaltSecret = users.GetOrCreateSecret("fake-salt");

    public async Task<LoginResult> AuthenticateAsync(LoginRequest request, CancellationToken cancellationToken)
    {
        var start = request.Start;
        using var attempt = await throttle.BeginAsync(request.Source, start.Method == AuthMethod.Password ? start.User : string.Empty, cancellationToken).ConfigureAwait(false);
        try
        {
            var result = start.Method switch
            {
                AuthMethod.Password => await PasswordAsync(request, cancellationToken).ConfigureAwait(false),
                AuthMethod.Certificate => Certificate(request),
                _ => throw Refuse(start.User, $"unknown login method {start.Method}"),
            };
            attempt.Succeeded();
            AuthLog.LoggedIn(logger, result.Principal.User.Name, result.Principal.Group.Name, request.Source, start.Method);
            return result;
        }
        catch (LoginFailedException ex)
        {
            var failures = attempt.Failed();
            AuthLog.LoginFailed(logger, start.User, request.Source, ex.Detail, failures, throttle.UserFailures(start.User));
            throw;
        }
    }

    private async Task<LoginResult> PasswordAsync(LoginRequest request, CancellationToken cancellationToken)
    {
        var start = request.Start;
        if (!PasswordChallenge.IsValidNonce(start.ClientNonce))
        {
            throw Refuse(start.User, $"client nonce of {start.ClientNonce.Length} bytes");
        }
        var principal = users.FindPrincipal(start.User);
        PasswordVerifier? verifier = null;
        string? problem = null;
        if (principal is null)
        {
            problem = "no such user";
        }
        else if (!principal.User.Enabled)
        {
            problem = "the user is disabled";
        }
        else if (principal.User.PasswordHash is null)
        {
            problem = "the user has no password (certificate only)";
        }
        else if (!PasswordHasher.TryParse(principal.User.PasswordHash, out verifier, out var error))
        {
            problem = "stored password verifier unreadable: " + error;
        }
        // Same flow whatever the problem, so the answer does not tell which users exist.
        var challenge = PasswordChallenge.CreateChallenge(verifier, start.User, _fakeSaltSecret, passwordIterations());
        var proof = await request.Challenge(new AuthChallengeMessage(challenge.ServerNonce, challenge.Salt, challenge.Iterations), cancellationToken).ConfigureAwait(false);
        var valid = PasswordChallenge.VerifyClientProof(verifier, start.User, start.ClientNonce, challenge, request.ChannelBinding, proof.ClientProof, out var signature);
        if (problem is not null)
        {
            throw Refuse(start.User, problem);
        }
        if (!valid || signature is null)
        {
            throw Refuse(start.User, "wrong password");
        }
        return new LoginResult(principal!, signature);
    }

    private LoginResult Certificate(LoginRequest request)
    {
        var start = request.Start;
        if (request.ClientCertificate is null)
        {
            throw Refuse(start.User, "certificate login without a client certificate in TLS");
        }
        var thumbprint = ServerCertificate.Thumbprint(request.ClientCertificate);
        var user = users.FindUserByCertificate(thumbprint);
        if (user is null)
        {
            throw Refuse(start.User, $"no user has the client certificate {thumbprint}");
        }
        if (start.User.Length > 0 && !string.Equals(start.User, user.Name, StringComparison.OrdinalIgnoreCase))
        {
            throw Refuse(start.User, $"the client certificate {thumbprint} belongs to user '{user.Name}'");
        }
        var principal = users.FindPrincipal(user.Name);
        if (principal is null || !principal.User.Enabled)
        {
            throw Refuse(user.Name, principal is null ? "the user's group is missing" : "the user is disabled");
        }
        if (DateTime.Now < request.ClientCertificate.NotBefore || DateTime.Now > request.ClientCertificate.NotAfter)
        {
            throw Refuse(user.Name, $"the client certificate {thumbprint} is expired or not yet valid");
        }
        return new LoginResult(principal, []);
    }

    private LoginFailedException Refuse(string user, string detail) => new(
        $"login failed at {serverName} for user '{user}': wrong user name, password or certificate, or the user is disabled. " +
        "Check the credential; an administrator of that server can list users with Get-QmTunnelUser.", detail);
}

internal static partial class AuthLog
{
    // Event ids: Diagnostics/EventIds.cs (logins, 300-349).
    [LoggerMessage(EventId = EventIds.LoggedIn, Level = LogLevel.Information, Message = "User {User} ({Group}) logged in from {Source} by {Method}")]
    public static partial void LoggedIn(ILogger logger, string user, string group, string source, AuthMethod method);

    [LoggerMessage(EventId = EventIds.LoginFailed, Level = LogLevel.Warning, Message = "Login as {User} from {Source} refused: {Detail} ({Failures} failures from that address, {UserFailures} for that user)")]
    public static partial void LoginFailed(ILogger logger, string user, string source, string detail, int failures, int userFailures);
}

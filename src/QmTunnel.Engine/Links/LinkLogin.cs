using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Links;

/// <summary>
/// How this side logs in to the server it dials: as <see cref="User"/>, with a password (derived once per challenge),
/// with SCRAM keys derived earlier, or with the client certificate presented in TLS. <see cref="Key"/> tells logins
/// apart in the link pool without holding a secret in clear.
/// </summary>
public abstract record LinkLogin(string User)
{
    public abstract AuthMethod Method { get; }

    /// <summary>Stable text identifying this login among others to the same server (no secret in it).</summary>
    public abstract string Key { get; }
}

/// <summary>A password login; PBKDF2 runs on each link (management sessions, the first login of a hop).</summary>
public sealed record PasswordLogin(string User, string Password) : LinkLogin(User)
{
    public override AuthMethod Method => AuthMethod.Password;
    public override string Key => "password:" + User.ToUpperInvariant() + ":" + Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Password)))[..16];
    public override string ToString() => $"{User} (password)";
}

/// <summary>A login with keys derived earlier for the server's salt and iteration count (tunnel hops).</summary>
public sealed record KeysLogin(string User, ScramKeys Keys) : LinkLogin(User)
{
    public override AuthMethod Method => AuthMethod.Password;
    public override string Key => "keys:" + User.ToUpperInvariant() + ":" + Convert.ToHexString(SHA256.HashData(Keys.ClientKey))[..16];
    public override string ToString() => $"{User} (password keys)";
}

/// <summary>A login with the client certificate (and its private key) presented in the TLS handshake.</summary>
public sealed record CertificateLogin(string User, X509Certificate2 Certificate) : LinkLogin(User)
{
    public override AuthMethod Method => AuthMethod.Certificate;
    public override string Key => "certificate:" + ServerCertificate.Thumbprint(Certificate);
    public override string ToString() => $"{User} (certificate {ServerCertificate.Thumbprint(Certificate)[..16]}…)";
}

/// <summary>What an acceptor learned about a login attempt, for its authenticator.</summary>
public sealed record LoginRequest(
    AuthStartMessage Start,
    string Source,
    X509Certificate2? ClientCertificate,
    byte[] ChannelBinding,
    bool IsEncrypted,
    Func<AuthChallengeMessage, CancellationToken, Task<AuthProofMessage>> Challenge);

/// <summary>A successful login: who the link acts as, and the server signature to send (passwords).</summary>
public sealed record LoginResult(SecurityPrincipal Principal, byte[] ServerSignature);

/// <summary>
/// Decides logins on accepted links (the engine's users, rights, throttling). Throws <see cref="LoginFailedException"/>
/// to refuse: its message goes to the peer, its <see cref="LoginFailedException.Detail"/> only to the log.
/// </summary>
public interface ILinkAuthenticator
{
    Task<LoginResult> AuthenticateAsync(LoginRequest request, CancellationToken cancellationToken);
}

/// <summary>A refused login.</summary>
public sealed class LoginFailedException(string message, string detail) : Exception(message)
{
    /// <summary>The real reason (unknown user, wrong password, disabled...): logged, never sent to the peer.</summary>
    public string Detail { get; } = detail;
}

using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management;

/// <summary>
/// How a tunnel logs in to one server of its chain, as the tunnel's profile keeps it: the user and either SCRAM keys
/// derived once from the password for that server's salt and iteration count (no password is kept anywhere), or a
/// client certificate file on the owning server (first hop only: the key never leaves this host). The keys are as
/// secret as the password for that one server; they are stored in the owner-only database and sent on only inside TLS.
/// </summary>
public sealed record HopCredential
{
    public required string User { get; init; }
    public byte[]? Salt { get; init; }
    public int Iterations { get; init; }
    public byte[]? ClientKey { get; init; }
    public byte[]? ServerKey { get; init; }
    /// <summary>A PKCS#12 file without password, or a PEM file with the certificate and its unencrypted key.</summary>
    public string? CertificatePath { get; init; }

    public bool HasKeys => Salt is not null && ClientKey is not null && ServerKey is not null;

    public static HopCredential FromKeys(string user, ScramKeys keys) => new()
    {
        User = user,
        Salt = keys.Salt.ToArray(),
        Iterations = keys.Iterations,
        ClientKey = keys.ClientKey.ToArray(),
        ServerKey = keys.ServerKey.ToArray(),
    };

    /// <summary>The login of a link to this hop (loads the certificate file for certificate logins).</summary>
    public LinkLogin ToLogin()
    {
        if (HasKeys)
        {
            return new KeysLogin(User, ScramKeys.FromKeys(ClientKey, ServerKey, Iterations, Salt));
        }
        if (CertificatePath is not null)
        {
            return new CertificateLogin(User, ServerCertificate.LoadFromFiles(CertificatePath, keyPath: null, password: null));
        }
        throw new InvalidOperationException($"The login of '{User}' has neither keys nor a certificate.");
    }

    /// <summary>As carried in an Open for a later hop (keys only).</summary>
    public RouteCredential ToRouteCredential() =>
        HasKeys ? new RouteCredential(User, Salt!, Iterations, ClientKey!, ServerKey!)
            : throw new InvalidOperationException("Only password keys are carried to later hops.");

    public static HopCredential FromRouteCredential(RouteCredential c) => new()
    {
        User = c.User,
        Salt = c.Salt,
        Iterations = c.Iterations,
        ClientKey = c.ClientKey,
        ServerKey = c.ServerKey,
    };

    public override string ToString() => HasKeys ? $"{User} (password)" : $"{User} (certificate {CertificatePath})";

    // The record's generated ToString would list the key fields: only the user and the kind of login are printed.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("User = ").Append(User).Append(HasKeys ? ", Login = password keys (hidden)" : $", CertificatePath = {CertificatePath}");
        return true;
    }
}

/// <summary>
/// A login given when a tunnel is created or changed (New-QmTunnelHop -Credential / -CertificatePath): the password is
/// used once, to derive the keys a <see cref="HopCredential"/> keeps, and then dropped.
/// </summary>
public sealed record HopLogin(string User, string? Password = null, string? CertificatePath = null)
{
    public override string ToString() => Password is not null ? $"{User} (password)" : $"{User} (certificate {CertificatePath})";
}

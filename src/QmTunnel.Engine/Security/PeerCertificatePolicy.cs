using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>Where a dialing server remembers the certificates of the servers it links to (like ssh's known_hosts).</summary>
public interface IKnownServers
{
    /// <summary>The pinned SHA-256 thumbprint for <paramref name="server"/> (<c>host:port</c>), or null.</summary>
    string? Find(string server);

    /// <summary>Records a first-seen thumbprint (trust on first use).</summary>
    void Add(string server, string thumbprint);
}

/// <summary>A certificate seen on a first connection to <see cref="Server"/>, to pin once a login over it succeeded.</summary>
public sealed record PendingPin(string Server, string Thumbprint);

/// <summary>A server the dialing side has pinned.</summary>
public sealed class KnownServer : QmTunnelObject
{
    public required string Server { get; init; }
    public required string Thumbprint { get; init; }
    public required DateTimeOffset FirstSeen { get; init; }
    public override string ToString() => Server;
}

/// <summary>
/// Decides whether a peer's certificate is accepted: an expected thumbprint when one is given, else the known-servers
/// entry (trust on first use). A mismatch is a <see cref="ErrorIds.CertificateMismatch"/> error that shows both
/// fingerprints and how to accept a legitimate change. It does not check names or chains: pinning replaces both.
/// </summary>
public sealed class PeerCertificatePolicy(IKnownServers knownServers, string forgetCommand = "Remove-QmTunnelKnownServer")
{
    /// <summary>
    /// Accepts <paramref name="actual"/> for <paramref name="server"/> or throws CertificateMismatch. A server seen for
    /// the first time is not pinned here: the result is the pin to <see cref="Record"/> once a login over this TLS
    /// connection has succeeded (so a connection that only asks for login parameters, or whose login fails, plants
    /// no pin). Null when there is nothing to record.
    /// </summary>
    public PendingPin? Check(string server, string hopUri, string actual, string? expected)
    {
        if (expected is not null)
        {
            if (!string.Equals(Normalize(expected), actual, StringComparison.Ordinal))
            {
                throw Mismatch(hopUri, Normalize(expected), actual,
                    "The thumbprint given for this hop does not match. Check it with the server's administrator (Get-QmTunnelServer shows CertificateThumbprint).");
            }
            return null;
        }
        var pinned = knownServers.Find(server);
        if (pinned is null)
        {
            return new PendingPin(server, actual);
        }
        if (!string.Equals(pinned, actual, StringComparison.Ordinal))
        {
            throw Mismatch(hopUri, pinned, actual,
                $"If the server's certificate was replaced on purpose, forget the old one with {forgetCommand} '{server}' and connect again; otherwise someone may be intercepting the link.");
        }
        return null;
    }

    /// <summary>Pins a first-seen certificate after a successful login (trust on first use).</summary>
    public void Record(PendingPin? pin)
    {
        if (pin is not null && knownServers.Find(pin.Server) is null)
        {
            knownServers.Add(pin.Server, pin.Thumbprint);
        }
    }

    /// <summary>Accepts thumbprints with colons, spaces or lower case, as openssl and Windows print them.</summary>
    public static string Normalize(string thumbprint) =>
        new string(thumbprint.Where(Uri.IsHexDigit).ToArray()).ToUpperInvariant();

    private static QmTunnelException Mismatch(string hopUri, string expected, string actual, string advice) =>
        new(ErrorIds.CertificateMismatch, QmErrorKind.SecurityError, hopUri,
            $"The certificate of {hopUri} is not the expected one: expected SHA256 {expected}, got SHA256 {actual}. {advice}");
}

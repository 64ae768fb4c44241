using System.Management.Automation;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell;

/// <summary>
/// A tunnel server of a -Via chain with its settings, as New-QmTunnelHop writes it: the address (with its pin, TLS
/// options and link timing), and how to log in to it — a credential (its password is used once, to derive the keys the tunnel keeps)
/// or a client certificate file. Its text form is the URI (without any secret), so hops and URI strings mix in -Via.
/// </summary>
public sealed class QmTunnelHop
{
    internal QmTunnelHop(EndpointUri uri, PSCredential? credential, string? certificatePath)
    {
        Uri = uri;
        Credential = credential;
        CertificatePath = certificatePath;
    }

    public EndpointUri Uri { get; }
    public string? User => Uri.User;
    public PSCredential? Credential { get; }
    public string? CertificatePath { get; }
    public string? CertificateThumbprint => Uri.CertificateThumbprint;
    public TlsVersion? MinimumTlsVersion => Uri.MinimumTls;
    public IReadOnlyList<TlsCipher>? Cipher => Uri.Ciphers;

    /// <summary>The timing of the link to this hop (all six settings below at once).</summary>
    public Engine.Links.LinkTiming Timing => Uri.Timing;
    /// <summary>Heartbeat after this much quiet; zero: no heartbeats.</summary>
    public TimeSpan HeartbeatInterval => Uri.Timing.HeartbeatInterval;
    /// <summary>Nothing received for this long: the link is dead; zero: off.</summary>
    public TimeSpan ReceiveTimeout => Uri.Timing.ReceiveTimeout;
    public TimeSpan ConnectTimeout => Uri.Timing.ConnectTimeout;
    public TimeSpan ReconnectInterval => Uri.Timing.ReconnectInterval;
    public double ReconnectMultiplier => Uri.Timing.ReconnectMultiplier;
    public TimeSpan MaxReconnectInterval => Uri.Timing.MaxReconnectInterval;

    /// <summary>The compression of the link to this hop (None, Lz4, Zstd).</summary>
    public Engine.Links.CompressionAlgorithm Compression => Uri.Compression.Algorithm;
    /// <summary>Its level (Lz4 0-12, Zstd 1-19; 0 for None).</summary>
    public int CompressionLevel => Uri.Compression.Level;

    /// <summary>"Password", "Certificate" or "None": how this hop logs in.</summary>
    public string Login => Credential is not null ? "Password" : CertificatePath is not null ? "Certificate" : "None";

    public override string ToString() => Uri.ToString();

    internal HopLogin? ToLogin() =>
        Credential is not null ? new HopLogin(Credential.UserName, Credential.GetNetworkCredential().Password)
        : CertificatePath is not null ? new HopLogin(Uri.User ?? string.Empty, CertificatePath: CertificatePath)
        : null;

    /// <summary>
    /// Splits -Via items (hop objects, EndpointUri objects, URI strings) into the URIs a profile keeps and the logins
    /// given (null where an item carries none).
    /// </summary>
    internal static (string[] Via, HopLogin?[] Logins) Split(object[] items)
    {
        var via = new string[items.Length];
        var logins = new HopLogin?[items.Length];
        for (var i = 0; i < items.Length; i++)
        {
            var item = items[i] is PSObject o ? o.BaseObject : items[i];
            switch (item)
            {
                case QmTunnelHop hop:
                    via[i] = hop.ToString();
                    logins[i] = hop.ToLogin();
                    break;
                case null:
                    throw new QmTunnelException(Engine.Errors.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, string.Empty,
                        $"-Via item {i + 1} is empty. Give a hop from New-QmTunnelHop or a URI such as qmt://host:9200.");
                default:
                    via[i] = item.ToString() ?? string.Empty;
                    break;
            }
        }
        return (via, logins);
    }
}

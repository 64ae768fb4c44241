using System.Management.Automation;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnelHop: a tunnel server of a -Via chain with its own settings — the certificate thumbprint it must
/// present (instead of trust on first use) and the lowest TLS version it may use. The object it writes is an
/// EndpointUri whose text form (qmt://host:port?sha256=...&amp;tls=1.3) is what -Via takes, so hops and plain URIs mix.
/// With -Credential or -CertificatePath it also says how to log in to that server; the user name goes in the URI
/// (qmt://user@host:9200) and the password only to New-QmTunnel / Set-QmTunnel, which derive the keys the tunnel keeps.
/// It contacts nothing: the settings are checked when the tunnel is created.
/// </summary>
[Cmdlet(VerbsCommon.New, "QmTunnelHop", HelpUri = HelpLinks.Base + "New-QmTunnelHop.md")]
[OutputType(typeof(QmTunnelHop))]
public sealed class NewQmTunnelHopCommand : QmTunnelCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public string Uri { get; set; } = string.Empty;

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificateThumbprint { get; set; }

    [Parameter]
    public TlsVersion MinimumTlsVersion { get; set; } = TlsVersion.Tls12;

    [Parameter]
    [ValidateNotNullOrEmpty]
    public TlsCipher[]? Cipher { get; set; }

    [Parameter]
    [Credential]
    public PSCredential? Credential { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificatePath { get; set; }

    private TlsVersion? MinimumTlsOption => MyInvocation.BoundParameters.ContainsKey(nameof(MinimumTlsVersion)) ? MinimumTlsVersion : null;

    protected override void ProcessRecord()
    {
        try
        {
            var hop = EndpointUri.ParseServer(Uri, "Uri");
            if (CertificateThumbprint is not null || MinimumTlsOption is not null || Cipher is not null)
            {
                if (hop.Scheme != EndpointScheme.Qmt)
                {
                    throw new QmTunnelException(Engine.Management.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, Uri,
                        $"'{Uri}' is an unencrypted link: -CertificateThumbprint, -MinimumTlsVersion and -Cipher need a TLS hop (qmt://).");
                }
                // Through the parser again, so a thumbprint is checked and written exactly as in a typed URI.
                var options = new List<string>();
                var thumbprint = CertificateThumbprint ?? hop.CertificateThumbprint;
                if (thumbprint is not null)
                {
                    options.Add("sha256=" + thumbprint);
                }
                var tls = MinimumTlsOption ?? hop.MinimumTls;
                if (tls is not null)
                {
                    options.Add(tls == TlsVersion.Tls13 ? "tls=1.3" : "tls=1.2");
                }
                var ciphers = Cipher ?? hop.Ciphers;
                if (ciphers is { Count: > 0 })
                {
                    options.Add("cipher=" + string.Join(',', ciphers.Select(EndpointUri.CipherText)));
                }
                hop = EndpointUri.ParseServer((hop with { CertificateThumbprint = null, MinimumTls = null, Ciphers = null }) + "?" + string.Join('&', options), "Uri");
            }
            if (Credential is not null && CertificatePath is not null)
            {
                throw new QmTunnelException(Engine.Management.ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, Uri,
                    "Give either -Credential or -CertificatePath: a hop logs in one way.");
            }
            string? certificatePath = null;
            if (CertificatePath is not null)
            {
                // A path on the server that owns the tunnel (this host, or a session's server): that server loads and checks
                // it when the tunnel is created (CertificateInvalid). A relative path is resolved here.
                certificatePath = Path.IsPathRooted(CertificatePath) ? CertificatePath : GetUnresolvedProviderPathFromPSPath(CertificatePath);
            }
            if (Credential is not null)
            {
                hop = EndpointUri.ParseServer((hop with { User = null }).ToString().Replace("://", "://" + System.Uri.EscapeDataString(Credential.UserName) + "@", StringComparison.Ordinal), "Credential");
            }
            WriteObject(new QmTunnelHop(hop, Credential, certificatePath));
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}

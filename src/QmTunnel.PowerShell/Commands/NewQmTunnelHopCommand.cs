using System.Management.Automation;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnelHop: a tunnel server of a -Via chain with its own settings — the certificate thumbprint it must
/// present (instead of trust on first use) and the lowest TLS version it may use. The object it writes is an
/// EndpointUri whose text form (qmt://host:port?sha256=...&amp;tls=1.3) is what -Via takes, so hops and plain URIs mix.
/// It contacts nothing: the settings are checked when a link is made.
/// </summary>
[Cmdlet(VerbsCommon.New, "QmTunnelHop")]
[OutputType(typeof(EndpointUri))]
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

    private TlsVersion? MinimumTlsOption => MyInvocation.BoundParameters.ContainsKey(nameof(MinimumTlsVersion)) ? MinimumTlsVersion : null;

    protected override void ProcessRecord()
    {
        try
        {
            var hop = EndpointUri.ParseServer(Uri, "Uri");
            if (CertificateThumbprint is not null || MinimumTlsOption is not null)
            {
                if (hop.Scheme != EndpointScheme.Qmt)
                {
                    throw new QmTunnelException(Engine.Management.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, Uri,
                        $"'{Uri}' is an unencrypted link: -CertificateThumbprint and -MinimumTlsVersion need a TLS hop (qmt://).");
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
                hop = EndpointUri.ParseServer(hop.Address + "?" + string.Join('&', options), "Uri");
            }
            WriteObject(hop);
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}

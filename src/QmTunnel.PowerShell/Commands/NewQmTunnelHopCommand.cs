using System.Management.Automation;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnelHop: a tunnel server of a -Via chain with its own settings — the certificate thumbprint it must
/// present (instead of trust on first use), the lowest TLS version it may use, the ciphers offered, and the timing of the
/// link to it (heartbeats, receive timeout, connect timeout, reconnect backoff; on qmt+plain:// hops too). The object it
/// writes holds an EndpointUri whose text form (qmt://host:port?sha256=...&amp;tls=1.3&amp;heartbeat=5s) is what -Via takes,
/// so hops and plain URIs mix; a gateway reads the settings of its next hop from that text in the route.
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

    /// <summary>Send a heartbeat when nothing else was sent for this long; 0: no heartbeats (default 10 s; a number is seconds).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan HeartbeatInterval { get; set; }

    /// <summary>Nothing received for this long: the link is dead; 0: off (default 15 s).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ReceiveTimeout { get; set; }

    /// <summary>The most a dial of this hop may take (default 10 s).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ConnectTimeout { get; set; }

    /// <summary>The wait before the first reconnect attempt (default 100 ms).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ReconnectInterval { get; set; }

    /// <summary>How many times longer each further reconnect wait is (default 1.5).</summary>
    [Parameter]
    public double ReconnectMultiplier { get; set; }

    /// <summary>The longest wait between reconnect attempts (default 10 s).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan MaxReconnectInterval { get; set; }

    /// <summary>
    /// The compression of the link to this hop: None, Lz4 or Zstd (default: None on a TLS hop, Lz4 on qmt+plain://). Both
    /// servers of the link compress what they send once the far one agrees.
    /// </summary>
    [Parameter]
    public CompressionAlgorithm Compression { get; set; }

    /// <summary>The level of -Compression: Lz4 0-12 (default 0, the fast compressor), Zstd 1-19 (default 3).</summary>
    [Parameter]
    public int CompressionLevel { get; set; }

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
                    throw new QmTunnelException(Engine.Errors.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, Uri,
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
                var rest = (hop with { CertificateThumbprint = null, MinimumTls = null, Ciphers = null }).ToString();
                hop = EndpointUri.ParseServer(rest + (rest.Contains('?', StringComparison.Ordinal) ? "&" : "?") + string.Join('&', options), "Uri");
            }
            hop = hop with { Timing = WithTimingParameters(hop.Timing), Compression = WithCompressionParameters(hop.Compression) };
            if (Credential is not null && CertificatePath is not null)
            {
                throw new QmTunnelException(Engine.Errors.ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, Uri,
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

    /// <summary>
    /// <paramref name="compression"/> (the address's) with -Compression and -CompressionLevel: a new algorithm takes its
    /// default level unless -CompressionLevel is given; TunnelSettingInvalid for a level the algorithm does not take.
    /// </summary>
    private LinkCompression WithCompressionParameters(LinkCompression compression)
    {
        var given = MyInvocation.BoundParameters;
        if (!given.ContainsKey(nameof(Compression)) && !given.ContainsKey(nameof(CompressionLevel)))
        {
            return compression;
        }
        var algorithm = given.ContainsKey(nameof(Compression)) ? Compression : compression.Algorithm;
        var level = given.ContainsKey(nameof(CompressionLevel)) ? CompressionLevel
            : algorithm == compression.Algorithm ? compression.Level : LinkCompression.DefaultFor(algorithm).Level;
        var result = new LinkCompression(algorithm, level);
        if (result.Problem(given.ContainsKey(nameof(CompressionLevel)) ? "-CompressionLevel " : "compress-level=") is { } problem)
        {
            throw new QmTunnelException(Engine.Errors.ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, Uri,
                $"New-QmTunnelHop {Uri}: {problem}");
        }
        return result;
    }

    /// <summary>
    /// <paramref name="timing"/> (the address's) with the timing parameters given; TunnelSettingInvalid listing every
    /// problem, each named as the user wrote it (-ReceiveTimeout, or heartbeat= when it came from the address).
    /// </summary>
    private LinkTiming WithTimingParameters(LinkTiming timing)
    {
        var given = MyInvocation.BoundParameters;
        var before = timing;
        if (given.ContainsKey(nameof(HeartbeatInterval)))
        {
            timing = timing with { HeartbeatInterval = HeartbeatInterval };
        }
        if (given.ContainsKey(nameof(ReceiveTimeout)))
        {
            timing = timing with { ReceiveTimeout = ReceiveTimeout };
        }
        if (given.ContainsKey(nameof(ConnectTimeout)))
        {
            timing = timing with { ConnectTimeout = ConnectTimeout };
        }
        if (given.ContainsKey(nameof(ReconnectInterval)))
        {
            timing = timing with { ReconnectInterval = ReconnectInterval };
        }
        if (given.ContainsKey(nameof(ReconnectMultiplier)))
        {
            timing = timing with { ReconnectMultiplier = ReconnectMultiplier };
        }
        if (given.ContainsKey(nameof(MaxReconnectInterval)))
        {
            timing = timing with { MaxReconnectInterval = MaxReconnectInterval };
        }
        if (timing == before)
        {
            return timing;
        }
        var problems = timing.Validate(property => given.ContainsKey(property) ? "-" + property : EndpointUri.TimingKey(property) + "=");
        if (problems.Count > 0)
        {
            throw new QmTunnelException(Engine.Errors.ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, Uri,
                $"New-QmTunnelHop {Uri}: {string.Join(" ", problems)} A number is seconds (-HeartbeatInterval 0.5 is 500 ms).");
        }
        return timing;
    }
}

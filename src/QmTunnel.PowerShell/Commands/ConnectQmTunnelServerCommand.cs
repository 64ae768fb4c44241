using System.Management.Automation;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Connect-QmTunnelServer: opens a management session with a qmTunnel server elsewhere (its one port, TLS) and logs in
/// as a user of that server, with a password (-Credential) or a client certificate (-CertificatePath). The session
/// object goes to -Session of the tunnel, user, group, pin and configuration cmdlets, which then act on that server
/// with that user's rights. The server's certificate is trusted on first use and pinned (the user's known-servers.txt),
/// or checked against -CertificateThumbprint. A failure is terminating: a script must not go on with no session and so
/// manage the in-process server instead.
/// </summary>
[Cmdlet(VerbsCommunications.Connect, "QmTunnelServer", DefaultParameterSetName = ByCredential, HelpUri = HelpLinks.Base + "Connect-QmTunnelServer.md")]
[OutputType(typeof(QmTunnelSession))]
public sealed class ConnectQmTunnelServerCommand : QmTunnelCmdlet
{
    private const string ByCredential = nameof(ByCredential);
    private const string ByCertificate = nameof(ByCertificate);

    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Uri { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByCredential)]
    [ValidateNotNull]
    [Credential]
    public PSCredential Credential { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByCertificate)]
    [ValidateNotNullOrEmpty]
    public string CertificatePath { get; set; } = null!;

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificateThumbprint { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The range of -ConnectTimeout: as a tunnel's ConnectTimeout.</summary>
    private static readonly TimeSpan MinConnectTimeout = TimeSpan.FromMilliseconds(100), MaxConnectTimeout = TimeSpan.FromMinutes(10);

    protected override void EndProcessing()
    {
        if (TimeSpanRange.Problem(nameof(ConnectTimeout), ConnectTimeout, MinConnectTimeout, MaxConnectTimeout) is { } problem)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ConnectTimeoutInvalid, QmErrorKind.InvalidArgument, ConnectTimeout, problem));
        }
        X509Certificate2? certificate = null;
        try
        {
            var server = ServerAddress();
            LinkLogin login;
            if (ParameterSetName == ByCertificate)
            {
                certificate = ServerCertificate.LoadFromFiles(GetUnresolvedProviderPathFromPSPath(CertificatePath), keyPath: null, password: null);
                // The server maps the certificate to its user; a user in the URI must be that one.
                login = new CertificateLogin(server.User ?? string.Empty, certificate);
            }
            else
            {
                if (server.User is { } named && !string.Equals(named, Credential.UserName, StringComparison.OrdinalIgnoreCase))
                {
                    throw new QmTunnelException(Engine.Management.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, Uri,
                        $"'{Uri}' names the user '{named}', but -Credential is for '{Credential.UserName}'. Give the user once: in -Credential, or the same name in both.");
                }
                login = new PasswordLogin(Credential.UserName, Credential.GetNetworkCredential().Password);
            }
            // A server that does not answer holds this for up to -ConnectTimeout (and the handshake's own limit).
            var session = WaitWithProgress(QmTunnelSession.ConnectAsync(server, login, ConnectTimeout, CancellationToken), "Connect-QmTunnelServer",
                $"Connecting to {server.Address}{(login.User.Length > 0 ? " as " + login.User : " with a client certificate")}", ConnectTimeout);
            certificate = null; // the session's link uses it from now on
            ServerRegistry.AddSession(session);
            WriteObject(session);
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
        finally
        {
            certificate?.Dispose();
        }
    }

    /// <summary>-Uri parsed as a server address, with -CertificateThumbprint as its pin (?sha256=) when given.</summary>
    private EndpointUri ServerAddress()
    {
        var server = EndpointUri.ParseServer(Uri, "Uri");
        if (CertificateThumbprint is null)
        {
            return server;
        }
        if (server.Scheme != EndpointScheme.Qmt)
        {
            throw new QmTunnelException(Engine.Management.ErrorIds.EndpointUriInvalid, QmErrorKind.InvalidArgument, Uri,
                $"'{Uri}' is an unencrypted link: -CertificateThumbprint needs TLS (qmt://{server.HostPort}).");
        }
        // Through the parser again, so the thumbprint is checked and written exactly as in a typed URI.
        var options = new List<string> { "sha256=" + CertificateThumbprint };
        if (server.MinimumTls is { } tls)
        {
            options.Add(tls == TlsVersion.Tls13 ? "tls=1.3" : "tls=1.2");
        }
        // The address's other options (ciphers, link timing) stay in its text: join the new ones to them.
        var rest = (server with { CertificateThumbprint = null, MinimumTls = null }).ToString();
        return EndpointUri.ParseServer(rest + (rest.Contains('?', StringComparison.Ordinal) ? "&" : "?") + string.Join('&', options), "CertificateThumbprint");
    }
}

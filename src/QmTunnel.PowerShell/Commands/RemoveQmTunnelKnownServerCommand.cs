using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnelKnownServer: forgets the pinned certificate of each server given (host:port, literal), so the
/// next TLS link to it trusts and pins the certificate it then presents. For a server whose certificate was replaced
/// on purpose (CertificateMismatch). ConfirmImpact Medium: scripts are not prompted; -Confirm asks.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnelKnownServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByServer, HelpUri = HelpLinks.Base + "Remove-QmTunnelKnownServer.md")]
[OutputType(typeof(void))]
public sealed class RemoveQmTunnelKnownServerCommand : ServerCmdlet
{
    private const string ByServer = nameof(ByServer);

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByServer, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KnownServerCompleter))]
    public string[] Server { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByInputObject, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KnownServer[] InputObject { get; set; } = null!;

    /// <summary>Forget pins of this user's management sessions (Connect-QmTunnelServer) instead of a server's.</summary>
    [Parameter]
    public SwitchParameter Client { get; set; }

    protected override void ProcessRecord() =>
        ProcessEach(ParameterSetName == ByInputObject ? InputObject.Select(k => k.Server) : Server,
            Client ? "session pin of" : "pinned certificate of", "Remove", name =>
            {
                if (!Client)
                {
                    Wait(TargetServer.RemoveKnownServerAsync(name, CancellationToken));
                }
                else if (!ClientPins().Remove(name))
                {
                    throw new QmTunnelException(Engine.Management.ErrorIds.KnownServerNotFound, QmErrorKind.ObjectNotFound, name,
                        $"No session pin is kept for '{name}' in {ClientPins().FilePath}. Get-QmTunnelKnownServer -Client lists them (host:port).");
                }
            });
}

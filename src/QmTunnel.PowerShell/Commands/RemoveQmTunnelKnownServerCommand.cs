using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnelKnownServer: forgets the pinned certificate of each server given (host:port, literal), so the
/// next TLS link to it trusts and pins the certificate it then presents. For a server whose certificate was replaced
/// on purpose (CertificateMismatch). ConfirmImpact Medium: scripts are not prompted; -Confirm asks.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnelKnownServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByServer)]
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

    protected override void ProcessRecord()
    {
        var names = ParameterSetName == ByInputObject ? InputObject.Select(k => k.Server) : Server;
        foreach (var name in names)
        {
            if (!ShouldProcess($"pinned certificate of '{name}'{OnServer}", "Remove"))
            {
                continue;
            }
            try
            {
                Wait(TargetServer.RemoveKnownServerAsync(name, CancellationToken));
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }
}

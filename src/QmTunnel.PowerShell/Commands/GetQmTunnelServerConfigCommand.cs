using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelServerConfig: the configuration of the server (-Session, or the in-process one): how it was started
/// (name, address, port, certificate, data path) and its saved settings (AllowPlainLinks, PasswordIterations).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelServerConfig", HelpUri = HelpLinks.Base + "Get-QmTunnelServerConfig.md")]
[OutputType(typeof(ServerConfig))]
public sealed class GetQmTunnelServerConfigCommand : ServerCmdlet
{
    protected override void EndProcessing()
    {
        try
        {
            WriteObject(Wait(TargetServer.GetServerConfigAsync(CancellationToken)));
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
    }
}

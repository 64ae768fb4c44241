using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelServerConfig: the in-process server's configuration: how it was started (name, address, port,
/// certificate, data path) and its saved settings (AllowPlainLinks, PasswordIterations).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelServerConfig")]
[OutputType(typeof(ServerConfig))]
public sealed class GetQmTunnelServerConfigCommand : QmTunnelCmdlet
{
    protected override void EndProcessing()
    {
        var engine = RequireServer();
        try
        {
            WriteObject(engine.GetServerConfig());
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
    }
}

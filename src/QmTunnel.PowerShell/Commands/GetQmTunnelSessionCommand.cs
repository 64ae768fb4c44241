using System.Management.Automation;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelSession: the open management sessions of this PowerShell process (Connect-QmTunnelServer), oldest
/// first. A session whose connection was lost is no longer listed (and is closed).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelSession", HelpUri = HelpLinks.Base + "Get-QmTunnelSession.md")]
[OutputType(typeof(QmTunnelSession))]
public sealed class GetQmTunnelSessionCommand : QmTunnelCmdlet
{
    protected override void EndProcessing() => WriteObject(ServerRegistry.GetOpenSessions(), enumerateCollection: true);
}

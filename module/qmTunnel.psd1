# Module manifest of qmTunnel for PowerShell (tracked source; the build copies it into out/qmTunnel/).
@{
    RootModule             = 'QmTunnel.PowerShell.dll'
    ModuleVersion          = '0.1.0'
    GUID                   = '849b2698-8651-4f99-87c5-34f90edb6b04'
    Author                 = 'qmTunnel for PowerShell contributors'
    CompanyName            = 'qmTunnel for PowerShell contributors'
    Copyright              = '(c) qmTunnel for PowerShell contributors. Licensed under GPL-3.0-or-later.'
    Description            = 'TCP tunnels carried through a chain of tunnel servers: one multiplexed link per hop, profiles in an embedded LiteDB database, an in-process server or the qmtunnel-server daemon, all driven by cmdlets.'
    CompatiblePSEditions   = @('Core')
    PowerShellVersion      = '7.4'
    FormatsToProcess       = @('qmTunnel.format.ps1xml')
    CmdletsToExport        = @(
        'Start-QmTunnelServer'
        'Get-QmTunnelServer'
        'Stop-QmTunnelServer'
        'New-QmTunnel'
        'New-QmTunnelHop'
        'Start-QmTunnel'
        'Stop-QmTunnel'
        'Get-QmTunnel'
        'Set-QmTunnel'
        'Remove-QmTunnel'
        'Get-QmTunnelStats'
        'Get-QmTunnelConnection'
        'Get-QmTunnelKnownServer'
        'Remove-QmTunnelKnownServer'
        'New-QmTunnelUser'
        'Get-QmTunnelUser'
        'Set-QmTunnelUser'
        'Remove-QmTunnelUser'
        'New-QmTunnelGroup'
        'Get-QmTunnelGroup'
        'Set-QmTunnelGroup'
        'Remove-QmTunnelGroup'
        'Get-QmTunnelServerConfig'
        'Set-QmTunnelServerConfig'
        'Connect-QmTunnelServer'
        'Disconnect-QmTunnelServer'
        'Get-QmTunnelSession'
    )
    FunctionsToExport      = @()
    AliasesToExport        = @()
    VariablesToExport      = @()
    PrivateData            = @{
        PSData = @{
            Tags       = @('tunnel', 'tcp', 'port-forwarding', 'networking', 'proxy', 'multiplexing', 'PSEdition_Core', 'Linux', 'Windows', 'MacOS')
            LicenseUri = 'https://www.gnu.org/licenses/gpl-3.0.html'
        }
    }
}

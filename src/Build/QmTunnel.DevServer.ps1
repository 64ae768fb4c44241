# build.ps1 start: a server in this pwsh and the commands that create a first tunnel through it. Dot-sourced by
# QmTunnel.Build.psm1 (its functions are the module's); tests/Pester/FirstRun.Tests.ps1 runs the banner's commands.

<#
.SYNOPSIS
The lines build.ps1 start prints to create a first tunnel from another pwsh, for the server $Server. They run as
written there (tests/Pester/FirstRun.Tests.ps1 runs them): that pwsh starts a server of its own on a free port with its
own data folder (never this server's), logs in to this server as admin, and creates a tunnel through it whose target
is this server's own port, which every host has, so the first client gets this server's TLS certificate back.
#>
function Get-QmDevBanner {
    param(
        [Parameter(Mandatory)][object]$Server,
        [Parameter(Mandatory)][string]$ManifestPath,
        [int]$TunnelPort = 8080
    )
    $firstData = Join-Path ([IO.Path]::GetTempPath()) 'qmtunnel-first-tunnel'
    $hopAddress = $Server.Address
    $target = "tcp://127.0.0.1:$($Server.Port)"
    "Create your first tunnel from another pwsh: it runs a server of its own (a free port, its own data folder), and the"
    "tunnel goes through this server. Paste these lines there; the admin password is the one this server showed at its"
    "first start (or the one you set since):"
    "  Import-Module '$ManifestPath'"
    "  Start-QmTunnelServer -Port 0 -DataPath '$firstData'"
    "  `$hop = New-QmTunnelHop $hopAddress -Credential admin"
    "  New-QmTunnel first -Listen tcp://127.0.0.1:$TunnelPort -Via `$hop -Target $target -Persistent:`$false | Start-QmTunnel"
    "  `$c = [Net.Sockets.TcpClient]::new('127.0.0.1', $TunnelPort); `$t = [Net.Security.SslStream]::new(`$c.GetStream(), `$false, { `$true }); `$t.AuthenticateAsClient('first'); `$t.RemoteCertificate.GetCertHashString('SHA256'); `$c.Dispose()"
    "  Get-QmTunnelStats first"
    ''
    "The second last line is a TLS client of 127.0.0.1:${TunnelPort}: through the tunnel it reaches this server's port"
    "$($Server.Port) and prints the certificate thumbprint shown above. For a tunnel of your own, give any tcp://host:port"
    "this host can reach as -Target. Remove-QmTunnel first; Stop-QmTunnelServer ends the trial there."
}

<#
.SYNOPSIS
The start task: imports the staged module here, runs an in-process server until Ctrl+C, then stops it cleanly.
-TunnelPort is the port the banner's first tunnel listens on (another pwsh, see Get-QmDevBanner).
#>
function Start-QmDevServer {
    param([int]$Port = 9200, [string]$ListenAddress = '127.0.0.1', [string]$DataPath, [int]$TunnelPort = 8080, [string]$ManifestPath = (Get-QmStagedManifestPath))
    Import-Module $ManifestPath -Force -Global
    $parameters = @{ Port = $Port; ListenAddress = $ListenAddress; PassThru = $true }
    if ($DataPath) { $parameters.DataPath = $DataPath }
    $server = Start-QmTunnelServer @parameters
    try {
        Write-Host ''
        Write-Host "qmTunnel server listening on $($server.Address)  (data: $($server.DataPath))" -ForegroundColor Green
        Write-Host "certificate SHA256 $($server.CertificateThumbprint) (peers pin it on their first link; compare it there with Get-QmTunnelKnownServer)"
        Write-Host ''
        foreach ($line in Get-QmDevBanner -Server $server -ManifestPath $ManifestPath -TunnelPort $TunnelPort) { Write-Host $line }
        Write-Host ''
        Write-Host 'Press Ctrl+C to stop the server.' -ForegroundColor Yellow
        try { [Console]::TreatControlCAsInput = $false } catch { Write-Verbose "No console to configure: $_" }
        while ($true) { Start-Sleep -Milliseconds 500 }
    }
    finally {
        Write-Host ''
        Write-Host 'Stopping the qmTunnel server...'
        Stop-QmTunnelServer -Confirm:$false
        Write-Host 'Stopped.' -ForegroundColor Green
    }
}

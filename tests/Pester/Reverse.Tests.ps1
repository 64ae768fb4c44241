#Requires -Version 7.4
<#
    Reverse (RemoteToLocal) tunnels through the BUILT module: New-QmTunnel -Direction RemoteToLocal on an in-process
    server A (the owner, near the target) with a daemon B (qmtunnel-server) as the last server of -Via, where the
    listener opens: data through B's listener to the echo server reached from A (SHA-256 equal), counted at A; the
    mode that follows from the direction and the one refused; PortInUse at B naming B and the port; the port free at
    B once the tunnel stops. Helpers: TestCommon.ps1, TestTools.cs (echo server and client).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $tmpA = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-$run-revA"
    $tmpB = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-$run-revB"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $serverA = Start-QmTunnelServer -Port 0 -DataPath $tmpA -PassThru
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath $tmpB
    $via = New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"

    function Get-Port([string]$Uri) { [int]($Uri -replace '^.*:', '') }
}

AfterAll {
    if ($echo) { $echo.Dispose() }
    Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $tmpA } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($serverB -and $serverB.ProcessId) {
        $live = Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }
        if ($live) { $live | Stop-QmTunnelServer -ErrorAction SilentlyContinue }
        if (Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }) { Stop-Process -Id $serverB.ProcessId -Force -ErrorAction SilentlyContinue }
    }
    foreach ($path in @($tmpA, $tmpB)) {
        if ($path -and (Test-Path -LiteralPath $path)) { Remove-Item -LiteralPath $path -Recurse -Force -ErrorAction SilentlyContinue }
    }
}

Describe 'New-QmTunnel -Direction RemoteToLocal' {
    It 'creates a permanent reverse tunnel, stopped, and Get-QmTunnel shows its direction' {
        $web = New-QmTunnel web -Direction RemoteToLocal -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri
        "$($web.Direction)" | Should -Be 'RemoteToLocal'
        "$($web.Mode)" | Should -Be 'Permanent' -Because 'a reverse tunnel holds its far listener up'
        "$($web.State)" | Should -Be 'Stopped'
        "$((Get-QmTunnel web).Direction)" | Should -Be 'RemoteToLocal'
    }

    It 'Start-QmTunnel: the last server listens (BoundListen) and its clients reach the target reached from this server' {
        $web = Start-QmTunnel web -PassThru
        "$($web.State)" | Should -Be 'Established'
        $web.BoundListen | Should -Match '^tcp://127\.0\.0\.1:\d+$'
        $result = [QmTunnel.PesterTools.EchoClient]::Run($web.BoundListen, 8MB, 60)
        $result.Intact | Should -BeTrue -Because $result.ToString()
        Wait-Until { (Get-QmTunnelStats web).ConnectionsCurrent -eq 0 } 'the connection is closed'
        $stats = Get-QmTunnelStats web
        $stats.ConnectionsTotal | Should -Be 1
        $stats.BytesFromClients | Should -Be 8MB
        $stats.BytesToClients | Should -Be 8MB
        (Get-QmTunnelConnection web).Client | Should -Match '^127\.0\.0\.1:\d+$' -Because 'the address the far listener saw'
    }

    It 'the default views tell it from a local tunnel: Get-QmTunnel''s Dir column, the group of its connections, the stats' {
        $local = New-QmTunnel forward -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri
        try {
            $table = Get-QmTunnel web, forward | Format-Table | Out-String -Width 80
            $table | Should -Match '(?m)^Name\s+State\s+Dir\s+Listen\s+Via\s+Target'
            $table | Should -Match '(?m)^web\s+Established\s+R->L\s+127\.0\.0\.1:\d+' -Because $table
            $table | Should -Match '(?m)^forward\s+Stopped\s+L->R\s+127\.0\.0\.1:0' -Because $table
        }
        finally {
            Remove-QmTunnel $local.Name
        }
        $connections = Get-QmTunnelConnection web
        "$($connections[0].Direction)" | Should -Be 'RemoteToLocal'
        $grouped = $connections | Format-Table | Out-String -Width 80
        $grouped | Should -Match 'Tunnel: web \(RemoteToLocal\)' -Because $grouped
        ($connections[0] | Format-List | Out-String) | Should -Match 'Direction\s+: RemoteToLocal'
        "$((Get-QmTunnelStats web).Direction)" | Should -Be 'RemoteToLocal'
    }

    It 'Set-QmTunnel -Direction, or a piped object of the other direction, is refused with TunnelSettingInvalid saying to remove and create; the same direction passes' {
        $local = New-QmTunnel forward -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri
        try {
            $captured = Invoke-Capture { Set-QmTunnel web -Direction LocalToRemote -Description 'not this' }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
            "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
            "$($captured.Errors[0].TargetObject)" | Should -Be 'web'
            $captured.Errors[0].Exception.Message | Should -BeLike "Tunnel 'web' is RemoteToLocal, and Set-QmTunnel cannot change the direction*Remove-QmTunnel web; New-QmTunnel web -Listen *"
            "$((Get-QmTunnel web).Direction)" | Should -Be 'RemoteToLocal'
            (Get-QmTunnel web).Description | Should -Not -Be 'not this'

            $changed = Get-QmTunnel forward | Select-Object Name, @{ Name = 'Direction'; Expression = { 'RemoteToLocal' } }
            $piped = Invoke-Capture { $changed | Set-QmTunnel -Description 'not this either' }
            $piped.Errors.Count | Should -Be 1
            $piped.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
            $piped.Errors[0].Exception.Message | Should -BeLike "*Remove-QmTunnel forward; New-QmTunnel forward -Direction RemoteToLocal -Listen <address on the last server of -Via>*"
            (Get-QmTunnel forward).Description | Should -Not -Be 'not this either'

            # A tunnel object piped in carries its own direction: that passes, and so does -Direction naming it.
            Get-QmTunnel web, forward | Set-QmTunnel -Description 'same direction'
            Set-QmTunnel forward -Direction LocalToRemote -MaxConnections 7
            (Get-QmTunnel web).Description | Should -Be 'same direction'
            (Get-QmTunnel forward).MaxConnections | Should -Be 7
        }
        finally {
            Remove-QmTunnel $local.Name
        }
    }

    It 'Stop-QmTunnel closes the far listener: its port on the last server is free' {
        $port = Get-Port (Get-QmTunnel web).BoundListen
        $null = Stop-QmTunnel web
        Wait-Until {
            $probe = [System.Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, $port)
            try { $probe.Start(); $true } catch { $false } finally { $probe.Stop() }
        } 'the port at B is free'
    }

    It 'refuses -OnDemand for a reverse tunnel with TunnelSettingInvalid, -WhatIf or not' {
        $captured = Invoke-Capture { New-QmTunnel lazy -Direction RemoteToLocal -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri -OnDemand -WhatIf }
        $captured.Errors.Count | Should -Be 1
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        $captured.Errors[0].Exception.Message | Should -BeLike '*always Permanent*'
    }

    It 'a port in use on the last server fails Start-QmTunnel with PortInUse naming that server and the port' {
        $taken = [System.Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $taken.Start()
        try {
            $port = $taken.LocalEndpoint.Port
            $null = New-QmTunnel busy -Direction RemoteToLocal -Listen "tcp://127.0.0.1:$port" -Via $via -Target $echo.Uri
            $captured = Invoke-Capture { Start-QmTunnel busy }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PortInUse,*'
            $captured.Errors[0].Exception.Message | Should -BeLike "*127.0.0.1:$port*"
            $captured.Errors[0].Exception.Message | Should -BeLike "*$([Environment]::MachineName) (reverse tunnel 'busy' of user 'admin')*"
            "$((Get-QmTunnel busy).State)" | Should -Be 'Failed'
            (Get-QmTunnel busy).LastError | Should -BeLike "*127.0.0.1:$port*"
        }
        finally {
            $taken.Stop()
        }
    }
}

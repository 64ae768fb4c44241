#Requires -Version 7.4
<#
    Get-QmTunnelStats' hops through the BUILT module, with real sockets: an in-process server A and a daemon server B
    (qmtunnel-server), a tunnel chain A -> B -> A -> echo (A is its own last server): one object per hop of the chain,
    each up with its latency, the end-to-end round trip, the Hops column of the stats table and the table of hops.
    Every server started here is stopped in AfterAll, even when a test fails; the data paths are temp folders.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $tmpA = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-hops-$run-A"
    $tmpB = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-hops-$run-B"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $serverA = Start-QmTunnelServer -Port 0 -DataPath $tmpA -PassThru
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath $tmpB
    $via = (New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"), (New-QmTestHop "qmt://127.0.0.1:$($serverA.Port)")
    $tunnel = New-QmTunnel chain -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri | Start-QmTunnel -PassThru
    $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 64KB, 60)
    Wait-Until { @((Get-QmTunnelStats chain).Hops | Where-Object { "$($_.State)" -eq 'Up' }).Count -eq 2 } 'both hops of chain are up'
    $stats = Get-QmTunnelStats chain
}

AfterAll {
    if ($echo) { $echo.Dispose() }
    Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $tmpA } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($serverB -and $serverB.ProcessId) {
        Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
        if (Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }) {
            Stop-Process -Id $serverB.ProcessId -Force -ErrorAction SilentlyContinue
        }
    }
    foreach ($path in @($tmpA, $tmpB)) {
        if ($path -and (Test-Path -LiteralPath $path)) { Remove-Item -LiteralPath $path -Recurse -Force -ErrorAction SilentlyContinue }
    }
}

Describe 'Get-QmTunnelStats shows the hops of a chain A -> B (daemon) -> A' {
    It 'has one hop per server of the chain, up, with its latency and link bytes, and the end-to-end round trip' {
        $result.Intact | Should -BeTrue -Because $result.ToString()
        $stats.Hops.Count | Should -Be 2
        $stats.Hops[0].Server | Should -Be "qmt://127.0.0.1:$($serverB.Port)"
        $stats.Hops[1].Server | Should -Be "qmt://127.0.0.1:$($serverA.Port)"
        foreach ($hop in $stats.Hops) {
            $hop | Should -BeOfType 'QmTunnel.Engine.Management.TunnelHopStats'
            "$($hop.State)" | Should -Be 'Up'
            $hop.Latency | Should -BeGreaterThan ([TimeSpan]::Zero)
            $hop.LinkBytesSent | Should -BeGreaterThan 0
            $hop.Detail | Should -BeNullOrEmpty
        }
        $stats.EndToEndLatency | Should -BeGreaterThan $stats.Hops[1].Latency
    }

    It 'sums the hops up in the Hops column of the stats table' {
        $table = $stats | Format-Table | Out-String -Width 80
        $table | Should -Match '\bHops\b'
        $table | Should -Match '\b2 up\b'
    }

    It 'shows the hops as a table of their own, one row each' {
        $rows = @(($stats.Hops | Format-Table | Out-String -Width 80) -split "`r?`n" | Where-Object { $_ -match 'qmt://' })
        $rows.Count | Should -Be 2
        $rows[1] | Should -Match '^\s*2 qmt://127\.0\.0\.1:\d+\s+Up\b'
    }

    It 'Format-List shows each hop in the stats' {
        $list = $stats | Format-List | Out-String -Width 200
        $list | Should -Match 'Hops\s*:\s*\{1: qmt://127\.0\.0\.1:\d+ Up [\d.]+ms, 2: qmt://127\.0\.0\.1:\d+ Up'
        $list | Should -Match 'EndToEndLatency'
    }

    It 'reads them through a session to A as well' {
        $session = Connect-QmTunnelServer $serverA.Address -Credential $QmTestAdmin -CertificateThumbprint $serverA.CertificateThumbprint
        try {
            $remote = Get-QmTunnelStats chain -Session $session
            @($remote.Hops | ForEach-Object { "$($_.State)" }) | Should -Be @('Up', 'Up')
            $remote.HopSummary | Should -Be '2 up'
        }
        finally {
            $session | Disconnect-QmTunnelServer
        }
    }
}

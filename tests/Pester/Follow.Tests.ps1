#Requires -Version 7.4
<#
    Live monitoring through the BUILT module: Get-QmTunnelStats -Follow and Get-QmTunnelConnection -Follow write an
    update whenever something changed, at most every 250 ms, until the pipeline is stopped (Select-Object -First, or
    PowerShell.Stop() as Ctrl+C does).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-follow-$run"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $server = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    # The server is its own hop (TLS to itself): A -> A -> echo.
    $tunnel = New-QmTunnel watched -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($server.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
}

AfterAll {
    if ($server) { Stop-QmTunnelServer -ErrorAction SilentlyContinue }
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Get-QmTunnelStats -Follow' {
    It 'writes an update for each change, at most every 250 ms, and stops when the pipeline has enough' {
        $seen = [System.Collections.Generic.List[object]]::new()
        $updates = Get-QmTunnelStats watched -Follow | ForEach-Object {
            $seen.Add([pscustomobject]@{ At = [DateTime]::UtcNow; Total = $_.ConnectionsTotal })
            # each update causes the next: one more connection through the tunnel
            $null = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1000, 30)
            $_
        } | Select-Object -First 4
        $updates.Count | Should -Be 4
        $updates | ForEach-Object { $_ | Should -BeOfType 'QmTunnel.Engine.Management.TunnelStats' }
        # every update differs from the one before (a new connection each time)
        for ($i = 1; $i -lt $seen.Count; $i++) {
            $seen[$i].Total | Should -BeGreaterThan $seen[$i - 1].Total
            ($seen[$i].At - $seen[$i - 1].At).TotalMilliseconds | Should -BeGreaterOrEqual 200
        }
    }

    It 'stops when the pipeline is stopped, as Ctrl+C does, having written the current state first' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$modulePath'; Get-QmTunnelStats -Follow")
            $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
            $async = $ps.BeginInvoke([System.Management.Automation.PSDataCollection[psobject]]::new(), $output)
            $deadline = [DateTime]::UtcNow.AddSeconds(15)
            while ($output.Count -lt 1 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $output.Count | Should -BeGreaterOrEqual 1
            $output[0].Name | Should -Be 'watched'
            $stopped = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $stopped.Elapsed.TotalSeconds | Should -BeLessThan 5
            $async.IsCompleted | Should -BeTrue
        }
        finally {
            $ps.Dispose()
        }
    }

    It 'refuses an interval under the 250 ms update limit with FollowIntervalInvalid' {
        $err = $null
        try { Get-QmTunnelStats watched -Follow -Interval 00:00:00.1 -ErrorAction Stop | Select-Object -First 1 } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -BeLike 'FollowIntervalInvalid*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'Get-QmTunnelConnection -Follow' {
    It 'writes the connection list again when a new connection comes and goes' {
        $maxId = (Get-QmTunnelConnection watched | Measure-Object Id -Maximum).Maximum
        $triggered = $false
        $new = Get-QmTunnelConnection watched -Follow | ForEach-Object {
            if (-not $triggered) {
                $triggered = $true
                # a new connection after the first list: the next update must list it
                $null = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1000, 30)
            }
            $_
        } | Where-Object Id -gt $maxId | Select-Object -First 1
        $new | Should -BeOfType 'QmTunnel.Engine.Management.ConnectionInfo'
        $new.Tunnel | Should -Be 'watched'
    }
}

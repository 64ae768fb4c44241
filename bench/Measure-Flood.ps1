# Dot-sourced by Invoke-QmTunnelBench.ps1: Measure-Flood uses its helpers (Start-BenchProcess, Stop-BenchProcess,
# Get-RssKiB), its $script: state (WorkDir, Commands, ToolDll) and its parameters (FloodConnections, FloodSeconds,
# ModulePath). Not a script to run on its own.

<#
Server F, a qmtunnel-server daemon with the default limits, under connections that never log in: -FloodConnections
split over two qmtunnel-bench flood processes (silent connections from 127.0.0.10-13; TLS ClientHellos, which leave
the server inside the TLS handshake, from 127.0.0.20-55), each reopened as soon as the server closes it, for
-FloodSeconds. Resident memory before, at most during (sampled every 500 ms) and 5 s after; a login from 127.0.0.1
halfway through, timed; the pending-connection counters the server reports at the end; the lines its log grew by.
#>
function Measure-Flood {
    if (-not (Get-Module qmTunnel)) { Import-Module $ModulePath -Force }
    $credential = [pscredential]::new('admin', (ConvertTo-SecureString ([guid]::NewGuid().ToString('n')) -AsPlainText -Force))
    $dataPath = Join-Path $script:WorkDir 'server-flood'
    $previousData = $env:QMTUNNEL_DATA
    $server = $null
    $session = $null
    $floods = [System.Collections.Generic.List[object]]::new()
    try {
        # The session's client pin file goes into the bench's folder, not the user's.
        $env:QMTUNNEL_DATA = $dataPath
        $server = Start-QmTunnelServer -Daemon -Port 0 -DataPath $dataPath -AdminCredential $credential
        $script:Commands.Add("server F (daemon, pid $($server.ProcessId)): Start-QmTunnelServer -Daemon -Port 0 -DataPath <temp>/server-flood  -> $($server.Address) (MaxPendingLinks 1000, MaxPendingLinksPerSource 64: the defaults)")
        $log = Join-Path $dataPath 'qmtunnel-server.log'
        Start-Sleep -Seconds 2
        $before = Get-RssKiB $server.ProcessId
        $linesBefore = @(Get-Content -LiteralPath $log).Count
        $half = [int][math]::Ceiling($FloodConnections / 2)
        # Silent connections from 4 addresses (far over the per-source cap), TLS ClientHellos from 36 (over the total).
        foreach ($flood in @(@{ Name = 'flood-silent'; Sources = '127.0.0.10-127.0.0.13'; Mode = 'silent' }, @{ Name = 'flood-clienthello'; Sources = '127.0.0.20-127.0.0.55'; Mode = 'clienthello' })) {
            $floods.Add((Start-BenchProcess -Name $flood.Name -Command @('dotnet', $script:ToolDll, 'flood', '--port', $server.Port, '--count', $half, '--sources', $flood.Sources,
                        '--mode', $flood.Mode, '--reopen', '1', '--hold-seconds', ($FloodSeconds + 300), '--concurrency', '256', '--watch-stdin', '1')))
        }
        $clock = [System.Diagnostics.Stopwatch]::StartNew()
        $max = $before
        $loginMs = $null
        while ($clock.Elapsed.TotalSeconds -lt $FloodSeconds) {
            $max = [math]::Max($max, (Get-RssKiB $server.ProcessId))
            if (-not $session -and $clock.Elapsed.TotalSeconds -ge $FloodSeconds / 2) {
                $login = [System.Diagnostics.Stopwatch]::StartNew()
                $session = Connect-QmTunnelServer $server.Address -Credential $credential -CertificateThumbprint $server.CertificateThumbprint -ConnectTimeout 00:00:30
                $loginMs = $login.ElapsedMilliseconds
                $script:Commands.Add("login during the flood: Connect-QmTunnelServer $($server.Address) -Credential admin -CertificateThumbprint <F's> -ConnectTimeout 00:00:30")
            }
            foreach ($flood in $floods) {
                if ($flood.Process.HasExited) { throw "$($flood.Name) stopped: $(Get-Content -Raw -LiteralPath $flood.Log)" }
            }
            Start-Sleep -Milliseconds 500
        }
        $info = $session.GetServerInfoAsync([System.Threading.CancellationToken]::None).GetAwaiter().GetResult()
        $attempts = 0
        foreach ($flood in @($floods)) {
            Stop-BenchProcess $flood -GraceSeconds 60
            $summary = Get-Content -LiteralPath $flood.Log | Where-Object { $_ -like '{*' } | Select-Object -Last 1
            if ($summary) { $attempts += ($summary | ConvertFrom-Json).attempts }
        }
        $floods.Clear()
        Start-Sleep -Seconds 5
        [pscustomobject]@{
            RssBeforeMiB = [math]::Round($before / 1024, 1)
            RssMaxMiB    = [math]::Round($max / 1024, 1)
            RssAfterMiB  = [math]::Round((Get-RssKiB $server.ProcessId) / 1024, 1)
            LoginMs      = $loginMs
            PendingPeak  = $info.PendingLinksPeak
            Refused      = $info.PendingLinksRefused
            Evicted      = $info.PendingLinksEvicted
            Attempts     = $attempts
            LogLines     = @(Get-Content -LiteralPath $log).Count - $linesBefore
            Alive        = -not (Get-Process -Id $server.ProcessId -ErrorAction Ignore).HasExited
        }
    }
    finally {
        foreach ($flood in @($floods)) { Stop-BenchProcess $flood -GraceSeconds 10 }
        if ($session) { try { $session | Disconnect-QmTunnelServer } catch { Write-Verbose "Disconnecting from server F: $_" } }
        if ($server) { try { $server | Stop-QmTunnelServer -Confirm:$false } catch { Write-Warning "Stopping server F: $_" } }
        $env:QMTUNNEL_DATA = $previousData
    }
}

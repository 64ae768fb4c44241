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

<#
What one connection that has not logged in costs a daemon: a qmtunnel-server started with pending-connection caps
above -Count (so none is closed), -Count connections opened by qmtunnel-bench flood in one -Mode and held, and
(VmRSS 1 s after they are all open - VmRSS before) / connections open. Well within the 10 s handshake time.
Modes: silent (the server waits for the first byte), plain (a plain link's Hello, waiting for the login),
clienthello (inside the TLS handshake), tls (TLS up and a Hello, waiting for the login).
#>
function Measure-PendingCost([string]$Mode, [int]$Count = 1000) {
    $dataPath = Join-Path $script:WorkDir "server-pending-$Mode"
    $null = New-Item -ItemType Directory -Path $dataPath -Force
    $log = Join-Path $dataPath 'qmtunnel-server.log'
    $daemonDll = Join-Path (Split-Path -Parent $ModulePath) 'daemon' 'qmtunnel-server.dll'
    $server = Start-BenchProcess -Name "server-pending-$Mode" -StopWithSigterm -Command @('dotnet', $daemonDll, '--port', '0', '--data-path', $dataPath,
        '--log-file', $log, '--allow-plain-links', 'true', '--max-pending-links', (2 * $Count), '--max-pending-links-per-source', (2 * $Count))
    $flood = $null
    try {
        Wait-Until { (Test-Path -LiteralPath $log) -and ((Get-Content -Raw -LiteralPath $log) -match 'listening on qmt://\S+:\d+') -or $server.Process.HasExited } 30 "the daemon for $Mode to listen"
        $port = [int][regex]::Match((Get-Content -Raw -LiteralPath $log), 'listening on qmt://\S+:(\d+)').Groups[1].Value
        Start-Sleep -Seconds 2
        $before = Get-RssKiB $server.Process.Id
        $flood = Start-BenchProcess -Name "pending-$Mode" -Command @('dotnet', $script:ToolDll, 'flood', '--port', $port, '--count', $Count,
            '--sources', '127.0.0.10-127.0.0.49', '--mode', $Mode, '--hold-seconds', '60', '--concurrency', '64', '--watch-stdin', '1')
        Wait-Until { ((Get-Content -Raw -LiteralPath $flood.Log -ErrorAction Ignore) -match 'READY') -or $flood.Process.HasExited } 60 "$Count $Mode connections"
        Start-Sleep -Seconds 1
        $during = Get-RssKiB $server.Process.Id
        $open = [int][regex]::Match((Get-Content -Raw -LiteralPath $flood.Log), 'READY .*open=(\d+)').Groups[1].Value
        if ($open -lt 1) { throw "no $Mode connection stayed open: $(Get-Content -Raw -LiteralPath $flood.Log)" }
        [pscustomobject]@{ Mode = $Mode; Open = $open; KiBPer = [math]::Round(($during - $before) / $open, 1) }
    }
    finally {
        Stop-BenchProcess $flood -GraceSeconds 10
        Stop-BenchProcess $server -GraceSeconds 20
    }
}

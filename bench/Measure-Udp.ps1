# The udp group of bench/Invoke-QmTunnelBench.ps1 (dot-sourced: it uses the helpers there: Get-FreePort,
# Start-BenchProcess, Stop-BenchProcess, Wait-Until, Measure-Step, Invoke-BenchTool, $script:ToolDll, $script:Commands).
# A UDP echo server (qmtunnel-bench udp-echo-server), a socat UDP relay to it (socat UDP-LISTEN:...,fork UDP:...) and a
# udp:// tunnel A -> B to it; qmtunnel-bench udp-echo-load keeps 64 datagrams in flight for -Seconds and counts the
# answers: datagrams/s and Mbit/s each way, for 64-byte and 1,400-byte datagrams, -Rounds times each path in turn.
# Results: udp<size>.<path> (the round of median datagrams/s), udp<size>.<path>.<round>.

# Whether something is bound to UDP port $Port on loopback (/proc/net/udp: a socket has no listening state).
function Test-UdpBound([int]$Port) {
    $hex = ':{0:X4} ' -f $Port
    foreach ($line in [System.IO.File]::ReadAllLines('/proc/net/udp')) {
        $fields = $line.Trim() -split '\s+'
        if ($fields.Count -gt 2 -and ($fields[1] + ' ').EndsWith($hex)) { return $true }
    }
    $false
}

# -EchoPort/-DaemonPort: the echo server's port and the listen port of the same tunnel on server A2 (a daemon), set up
# with A2 ('daemons' rows); without them only A's tunnel is measured.
function Invoke-UdpBench($Via, [int]$Seconds, [int]$EchoPort, [int]$DaemonPort, [int]$Rounds = 3) {
    $echoPort = if ($EchoPort) { $EchoPort } else { Get-FreePort }
    $socatPort = Get-FreePort
    $tunnelPort = Get-FreePort
    $echo = Start-BenchProcess -Name 'udp-echo-server' -Command @('dotnet', $script:ToolDll, 'udp-echo-server', '--port', $echoPort, '--watch-stdin', '1')
    $socat = Start-BenchProcess -Name 'socat-udp' -Command @('socat', "UDP-LISTEN:$socatPort,bind=127.0.0.1,reuseaddr,fork", "UDP:127.0.0.1:$echoPort") -StopWithSigterm
    try {
        Wait-Until { (Test-UdpBound $echoPort) -and (Test-UdpBound $socatPort) } 20 'the UDP echo server and the socat UDP relay'
        $null = New-QmTunnel bench-udp -Listen "udp://127.0.0.1:$tunnelPort" -Via $Via -Target "udp://127.0.0.1:$echoPort" | Start-QmTunnel
        $script:Commands.Add("tunnel: New-QmTunnel bench-udp -Listen udp://127.0.0.1:$tunnelPort -Via $Via -Target udp://127.0.0.1:$echoPort | Start-QmTunnel")
        Wait-Until { Test-UdpBound $tunnelPort } 20 'the udp:// tunnel'
        $paths = [ordered]@{ direct = $echoPort; socat = $socatPort; tunnel = $tunnelPort }
        if ($DaemonPort) {
            Wait-Until { Test-UdpBound $DaemonPort } 20 'the udp:// tunnel of server A2'
            $paths.daemons = $DaemonPort
        }
        # Rounds of every path in turn, the figure their median: one 5 s run of this echo swings by half with the
        # machine's load (a wake-up more or less per datagram), so a single run cannot tell two paths apart.
        foreach ($size in 64, 1400) {
            $runs = @{}
            foreach ($path in $paths.Keys) { $runs[$path] = [System.Collections.Generic.List[object]]::new() }
            foreach ($round in 1..$Rounds) {
                foreach ($path in $paths.Keys) {
                    Measure-Step "udp$size.$path.$round" "UDP echo $size B, 64 in flight, $path, round $round (datagrams/s)" {
                        $result = Invoke-BenchTool "udp-echo-load $size B $path $round" @('udp-echo-load', '--port', $paths[$path], '--seconds', $Seconds, '--size', $size, '--window', '64')
                        [pscustomobject]@{ DatagramsPerS = [double]$result.datagrams_per_s; MbitPerS = [double]$result.mbit_per_s; LostPct = [double]$result.lost_pct }
                    }
                    $value = $results["udp$size.$path.$round"]
                    if ($value -isnot [string]) { $runs[$path].Add($value) }
                }
            }
            foreach ($path in $paths.Keys) {
                $sorted = @($runs[$path] | Sort-Object DatagramsPerS)
                $results["udp$size.$path"] = if ($sorted.Count -gt 0) { $sorted[[int][math]::Floor(($sorted.Count - 1) / 2)] } else { 'error: no run succeeded' }
            }
        }
        $stats = Get-QmTunnelStats bench-udp
        $script:Commands.Add("udp tunnel after the runs: $($stats.DatagramsFromClients) datagrams in, $($stats.DatagramsToClients) out, $($stats.DatagramsDropped) dropped")
    }
    finally {
        try { Remove-QmTunnel bench-udp -Confirm:$false } catch { Write-Verbose $_ }
        Stop-BenchProcess $socat -GraceSeconds 3
        Stop-BenchProcess $echo -GraceSeconds 3
    }
}

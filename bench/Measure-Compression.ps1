# Dot-sourced by Invoke-QmTunnelBench.ps1: Measure-Compression uses its helpers (Invoke-BenchTool, Test-Listening,
# Wait-Until, Get-FreePort), its $script: state (Commands, ToolDll, BenchAdmin) and its parameters (Seconds). Not a
# script to run on its own.

<#
Compression per hop (docs/protocol.md, "Compression"): three tunnels from server A through server B to the echo target,
over one qmt+plain link each, asking for -Compression None, Lz4 and Zstd (default levels). Through each, one stream of
log-like text (qmtunnel-bench stream --data text) and one of random bytes (--data random), echoed, for -Seconds each.
Per row (after 1 s of each kind of data not counted): the echoed throughput (Gbit/s of application bytes) and the wire ratio of the hop (what the data frames took
on the wire, both ways, per application byte, from Get-QmTunnelStats' hop 1 before and after the run).
#>
function Measure-Compression([int]$EchoPort, [int]$ServerBPort) {
    $rows = [System.Collections.Generic.List[object]]::new()
    foreach ($compression in 'None', 'Lz4', 'Zstd') {
        $name = "bench-comp-$($compression.ToLowerInvariant())"
        $port = Get-FreePort
        $hop = New-QmTunnelHop "qmt+plain://127.0.0.1:$ServerBPort" -Compression $compression -Credential $script:BenchAdmin
        $null = New-QmTunnel $name -Listen "tcp://127.0.0.1:$port" -Via $hop -Target "tcp://127.0.0.1:$EchoPort" | Start-QmTunnel
        $script:Commands.Add("tunnel: New-QmTunnel $name -Listen tcp://127.0.0.1:$port -Via (New-QmTunnelHop qmt+plain://127.0.0.1:$ServerBPort -Compression $compression -Credential admin) -Target tcp://127.0.0.1:$EchoPort | Start-QmTunnel")
        try {
            Wait-Until { Test-Listening $port } 20 "the $name tunnel to listen"
            # Not counted: 1 s of each kind of data first (JIT, the link's first buffers), as iperf3 -O does for the other rows.
            foreach ($data in 'text', 'random') {
                $null = Invoke-BenchTool -Label "stream $name $data (warm-up)" -Arguments @('stream', '--port', $port, '--seconds', 1, '--mode', 'echo', '--data', $data)
            }
            foreach ($data in 'text', 'random') {
                $before = (Get-QmTunnelStats $name).Hops[0]
                $result = Invoke-BenchTool -Label "stream $name $data" -Arguments @('stream', '--port', $port, '--seconds', $Seconds, '--mode', 'echo', '--data', $data)
                $after = (Get-QmTunnelStats $name).Hops[0]
                $app = ($after.DataBytesSent - $before.DataBytesSent) + ($after.DataBytesReceived - $before.DataBytesReceived)
                $wire = ($after.DataWireBytesSent - $before.DataWireBytesSent) + ($after.DataWireBytesReceived - $before.DataWireBytesReceived)
                $rows.Add([pscustomobject]@{
                        Compression = $compression
                        Data = $data
                        Gbps = [math]::Round($result.bits_per_second / 1e9, 3)
                        AppMiB = [math]::Round($app / 1MB, 1)
                        WireMiB = [math]::Round($wire / 1MB, 1)
                        WireRatio = if ($app -gt 0) { [math]::Round($wire / $app, 3) } else { $null }
                        Agreed = "$($after.Compression)"
                    })
            }
        }
        finally {
            try { Remove-QmTunnel $name -Confirm:$false } catch { Write-Verbose $_ }
        }
    }
    $rows
}

# The markdown table of Measure-Compression's rows (or the error text it failed with).
function Format-CompressionTable($Rows) {
    if ($Rows -is [string]) { return "Compression measurement failed: $Rows" }
    $lines = [System.Collections.Generic.List[string]]::new()
    $lines.Add('| Hop compression | data | throughput, echoed (Gbit/s) | vs None | wire bytes per application byte | agreed |')
    $lines.Add('|---|---|---:|---:|---:|---|')
    foreach ($row in $Rows) {
        $none = $Rows | Where-Object { $_.Compression -eq 'None' -and $_.Data -eq $row.Data } | Select-Object -First 1
        $versus = if ($none -and $none.Gbps -gt 0) { ($row.Gbps / $none.Gbps).ToString('0.00', [cultureinfo]::InvariantCulture) + '×' } else { 'n/a' }
        $ratio = if ($null -ne $row.WireRatio) { $row.WireRatio.ToString('0.000', [cultureinfo]::InvariantCulture) } else { 'n/a' }
        $lines.Add("| $($row.Compression) | $($row.Data) | $($row.Gbps.ToString('0.###', [cultureinfo]::InvariantCulture)) | $versus | $ratio ($($row.WireMiB) of $($row.AppMiB) MiB) | $($row.Agreed) |")
    }
    $lines -join "`n"
}

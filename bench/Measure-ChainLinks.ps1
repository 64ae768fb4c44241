# The chain group's per-host part (bench/Invoke-QmTunnelBench.ps1 dot-sources it and uses its helpers: Wait-Until,
# Start-BenchProcess, Stop-BenchProcess, Invoke-Captured, Measure-Step, Get-CpuTicks, $script:Commands, $Seconds,
# $script:WarmUpSeconds).
#
# On loopback the four servers of a 3-hop chain share this machine's cores, so a chain measures the machine (three TLS
# encryptions and decryptions of every byte on the same CPUs), not the chain. Here each server is a host of its own:
# a network namespace, joined to its neighbours by veth pairs in 198.51.100.0/24 with no forwarding (A - X1 - X2 - X3,
# and A - X3 for the 1-hop path), and either
#   - 'links': every veth limited to -LinkMbit in each direction (tc tbf), as on a real network where the link, not a
#     server's CPU, is the limit: does the chain keep the rate of one hop?
#   - 'cpu': links unlimited, every server in a CPU cgroup of its own capped at -CpuQuota of a core (cgroup v1
#     cpu.cfs_quota_us), as hosts of equal power: what does a gateway's extra work (decrypt and encrypt again) cost?
# Server A owns both tunnels; the bench manages it through one more veth (203.0.113.0/30, not limited). iperf3 runs in
# A's namespace (client) and X3's (server). Results: hostsP1.<mode>.chain1 / .chain3 (Gbit/s) and cpuP1.<mode>.<path>
# (cores of all servers per Gbit/s).
# The reference, same hosts, same run: socat TLS relays (OpenSSL both sides in one process, like a qmTunnel gateway):
# A: TCP-LISTEN -> OPENSSL to the next host; X1, X2: OPENSSL-LISTEN -> OPENSSL to the next; X3: OPENSSL-LISTEN -> TCP
# to iperf3. Each host's socat in that host's cgroup in the 'cpu' mode. Results: socatP1.<mode>.chain1 / .chain3.

function Test-NetnsUsable {
    if ((& id -u) -ne '0') { return 'not root: network namespaces need root' }
    if (-not (Get-Command ip -ErrorAction Ignore) -or -not (Get-Command tc -ErrorAction Ignore)) { return 'ip or tc (iproute2) not installed' }
    & ip netns add qmtb-probe 2>$null
    if ($LASTEXITCODE -ne 0) { return "'ip netns add' is not permitted here" }
    & ip netns del qmtb-probe 2>$null
    $null
}

function Invoke-Ip([string[]]$Arguments) {
    $run = Invoke-Captured -Label 'ip' -Command (@('ip') + $Arguments) -TimeoutSeconds 30 -NoInput
    if ($run.ExitCode -ne 0) { throw "ip $($Arguments -join ' ') failed: $($run.Stderr.Trim())" }
}

function Remove-ChainHosts {
    foreach ($name in 'qmtb-a', 'qmtb-x1', 'qmtb-x2', 'qmtb-x3') { & ip netns del $name 2>$null }
    & ip link del qmtb-mgmt 2>$null
    foreach ($name in 'qmtb-a', 'qmtb-x1', 'qmtb-x2', 'qmtb-x3') {
        $group = "/sys/fs/cgroup/cpu/$name"
        if (Test-Path $group) { try { [System.IO.Directory]::Delete($group) } catch { Write-Verbose "cgroup $group`: $_" } }
    }
}

# -LinkMbit 0: links unlimited.
function New-ChainHosts([int]$LinkMbit) {
    Remove-ChainHosts
    foreach ($name in 'qmtb-a', 'qmtb-x1', 'qmtb-x2', 'qmtb-x3') {
        Invoke-Ip @('netns', 'add', $name)
        Invoke-Ip @('-n', $name, 'link', 'set', 'lo', 'up')
    }
    $pairs = @(
        @('qmtb-a', 'a-x1', '198.51.100.1', 'qmtb-x1', 'x1-a', '198.51.100.2'),
        @('qmtb-x1', 'x1-x2', '198.51.100.5', 'qmtb-x2', 'x2-x1', '198.51.100.6'),
        @('qmtb-x2', 'x2-x3', '198.51.100.9', 'qmtb-x3', 'x3-x2', '198.51.100.10'),
        @('qmtb-a', 'a-x3', '198.51.100.13', 'qmtb-x3', 'x3-a', '198.51.100.14'))
    foreach ($p in $pairs) {
        Invoke-Ip @('link', 'add', $p[1], 'netns', $p[0], 'type', 'veth', 'peer', 'name', $p[4], 'netns', $p[3])
        foreach ($end in @(@($p[0], $p[1], $p[2]), @($p[3], $p[4], $p[5]))) {
            Invoke-Ip @('-n', $end[0], 'addr', 'add', "$($end[2])/30", 'dev', $end[1])
            Invoke-Ip @('-n', $end[0], 'link', 'set', $end[1], 'up')
            if ($LinkMbit -gt 0) {
                # A token bucket on each end's egress: the link carries -LinkMbit each way (tc netem is not in every
                # kernel; a rate is all this measurement needs).
                Invoke-Ip @('netns', 'exec', $end[0], 'tc', 'qdisc', 'replace', 'dev', $end[1], 'root', 'tbf', 'rate', "$($LinkMbit)mbit", 'burst', '512kb', 'latency', '50ms')
            }
        }
    }
    Invoke-Ip @('link', 'add', 'qmtb-mgmt', 'type', 'veth', 'peer', 'name', 'mgmt', 'netns', 'qmtb-a')
    Invoke-Ip @('addr', 'add', '203.0.113.1/30', 'dev', 'qmtb-mgmt')
    Invoke-Ip @('link', 'set', 'qmtb-mgmt', 'up')
    Invoke-Ip @('-n', 'qmtb-a', 'addr', 'add', '203.0.113.2/30', 'dev', 'mgmt')
    Invoke-Ip @('-n', 'qmtb-a', 'link', 'set', 'mgmt', 'up')
}

# Starts a qmtunnel-server daemon inside namespace $Name (port 9200 on every address of that host) and returns its
# process id and certificate thumbprint. The admin password goes through the environment, never a command line.
function Start-HostServer([string]$Name, [string]$DataPath) {
    $script:Commands.Add("server $Name (daemon): ip netns exec $Name pwsh -c 'Start-QmTunnelServer -Daemon -Port 9200 -ListenAddress 0.0.0.0 -DataPath <temp>/$Name -AdminCredential admin'")
    $start = [System.Diagnostics.ProcessStartInfo]::new('ip')
    foreach ($arg in @('netns', 'exec', $Name, 'dotnet', 'pwsh', '-NoProfile', '-Command',
            "Import-Module '$ModulePath'; `$c = [pscredential]::new('admin', (ConvertTo-SecureString `$env:QMTB_PASSWORD -AsPlainText -Force)); " +
            "Start-QmTunnelServer -Daemon -Port 9200 -ListenAddress 0.0.0.0 -DataPath '$DataPath' -AdminCredential `$c | ForEach-Object { `"`$(`$_.ProcessId) `$(`$_.CertificateThumbprint)`" }")) {
        $start.ArgumentList.Add($arg)
    }
    $start.UseShellExecute = $false
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $start.Environment['QMTB_PASSWORD'] = $script:BenchAdmin.GetNetworkCredential().Password
    $process = [System.Diagnostics.Process]::Start($start)
    try {
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit(90000)) { $process.Kill($true); throw "starting the server in $Name timed out" }
        $process.WaitForExit()
        $line = ($stdout.Result -split "`n" | Where-Object { $_ -match '^\d+ [0-9A-Fa-f]+\s*$' } | Select-Object -Last 1)
        if ($process.ExitCode -ne 0 -or -not $line) { throw "starting the server in $Name failed (exit $($process.ExitCode)): $($stderr.Result.Trim()) $($stdout.Result.Trim())" }
        $id, $thumbprint = $line.Trim() -split ' '
        [pscustomobject]@{ Name = $Name; ProcessId = [int]$id; CertificateThumbprint = $thumbprint }
    }
    finally {
        $process.Dispose()
    }
}

function Set-HostCpuQuota([string]$Name, [int]$ProcessId, [double]$Cores) {
    $group = "/sys/fs/cgroup/cpu/$Name"
    $null = New-Item -ItemType Directory -Force $group
    # A quota of 1 ms (the shortest CFS allows) per period of 1 ms / cores (2.5 ms at 0.4), not the default period of
    # 100 ms: a server that used its share early in a long period would stand still for the rest of it (60 ms of 100
    # at 0.4 of a core), and every hop behind it once the windows fill; short periods make the cap act like a slower
    # CPU, which is what is meant.
    $quota = if ($Cores -ge 1) { [int](100000 * $Cores) } else { 1000 }
    $period = if ($Cores -ge 1) { 100000 } else { [int](1000 / $Cores) }
    Set-Content "$group/cpu.cfs_period_us" $period
    Set-Content "$group/cpu.cfs_quota_us" $quota
    # cgroup v1: a process id written to cgroup.procs moves all its threads; threads made later stay in the group
    Set-Content "$group/cgroup.procs" $ProcessId
    $script:Commands.Add("server $Name in cgroup $group (cpu.cfs_quota_us $quota per cpu.cfs_period_us $period)")
}

# socat TLS relays on the hosts (see the top); returns what to stop.
function Start-HostSocat([string]$Mode, [double]$CpuQuota) {
    $dir = Join-Path $script:WorkDir "socat-$Mode"
    $null = New-Item -ItemType Directory -Path $dir -Force
    $cert = Join-Path $dir 'cert.pem'
    $key = Join-Path $dir 'key.pem'
    $null = Invoke-Checked 'socat certificate' @('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', $key, '-out', $cert, '-days', '2', '-subj', '/CN=bench')
    $listen = "OPENSSL-LISTEN:9300,reuseaddr,fork,cert=$cert,key=$key,verify=0,nodelay"
    $relays = @(
        @('qmtb-a', 'TCP-LISTEN:22001,bind=127.0.0.1,reuseaddr,fork,nodelay', 'OPENSSL:198.51.100.14:9300,verify=0,nodelay'),
        @('qmtb-a', 'TCP-LISTEN:22003,bind=127.0.0.1,reuseaddr,fork,nodelay', 'OPENSSL:198.51.100.2:9300,verify=0,nodelay'),
        @('qmtb-x1', $listen, 'OPENSSL:198.51.100.6:9300,verify=0,nodelay'),
        @('qmtb-x2', $listen, 'OPENSSL:198.51.100.10:9300,verify=0,nodelay'),
        @('qmtb-x3', $listen, 'TCP:127.0.0.1:5201,nodelay'))
    $started = @()
    $i = 0
    foreach ($r in $relays) {
        $entry = Start-BenchProcess -Name "socat-$Mode-$($r[0])-$i" -Command @('ip', 'netns', 'exec', $r[0], 'socat', $r[1], $r[2]) -StopWithSigterm
        $started += $entry
        # ip netns exec execs socat: the process id is socat's; its forks stay in its cgroup
        if ($Mode -eq 'cpu') { Set-Content "/sys/fs/cgroup/cpu/$($r[0])/cgroup.procs" $entry.Process.Id }
        $i++
    }
    Wait-Until { (& ip netns exec qmtb-a ss -Hltn 'sport = :22003') -and (& ip netns exec qmtb-x3 ss -Hltn 'sport = :9300') } 20 'the socat relays to listen'
    $started
}

function Invoke-HostIperf([string]$Label, [int]$Port) {
    $server = Start-BenchProcess -Name "iperf3-server-$Label" -Command @('ip', 'netns', 'exec', 'qmtb-x3', 'iperf3', '-s', '-1', '-p', '5201')
    try {
        Wait-Until { (& ip netns exec qmtb-x3 ss -Hltn 'sport = :5201') -or $server.Process.HasExited } 20 'iperf3 in X3 to listen'
        $command = @('ip', 'netns', 'exec', 'qmtb-a', 'iperf3', '-c', $(if ($Port) { '127.0.0.1' } else { '198.51.100.14' }), '-p', $(if ($Port) { $Port } else { 5201 }),
            '-t', $Seconds, '-O', $script:WarmUpSeconds, '-J', '--connect-timeout', '5000')
        $run = Invoke-Captured -Label "iperf3 $Label" -Command $command -TimeoutSeconds ($Seconds + $script:WarmUpSeconds + 30)
        $json = $null
        try { $json = $run.Stdout | ConvertFrom-Json } catch { Write-Verbose "iperf3 output is not JSON: $_" }
        if ($null -eq $json) { throw "iperf3 $Label printed no JSON (exit $($run.ExitCode)): $($run.Stderr)" }
        if ($json.PSObject.Properties['error']) { throw "iperf3 $Label`: $($json.error)" }
        [double]$json.end.sum_received.bits_per_second / 1e9
    }
    finally {
        Stop-BenchProcess $server -GraceSeconds 3
    }
}

# One mode ('links' or 'cpu'): hosts up, four daemons, both tunnels on A, $Rounds alternated iperf3 runs per path.
function Invoke-ChainHostsBench([string]$Mode, [int]$LinkMbit, [double]$CpuQuota, [int]$Rounds) {
    $servers = @{}
    $session = $null
    try {
        New-ChainHosts -LinkMbit $(if ($Mode -eq 'links') { $LinkMbit } else { 0 })
        $script:Commands.Add("hosts ($Mode): namespaces qmtb-a, qmtb-x1, qmtb-x2, qmtb-x3; veth A-X1 198.51.100.0/30, X1-X2 .4/30, X2-X3 .8/30, A-X3 .12/30$(if ($Mode -eq 'links') { ", each end: tc qdisc replace dev <veth> root tbf rate $($LinkMbit)mbit burst 512kb latency 50ms" }); management veth 203.0.113.0/30 to A")
        foreach ($name in 'qmtb-a', 'qmtb-x1', 'qmtb-x2', 'qmtb-x3') {
            $servers[$name] = Start-HostServer -Name $name -DataPath (Join-Path $script:WorkDir "$Mode-$name")
            if ($Mode -eq 'cpu') { Set-HostCpuQuota -Name $name -ProcessId $servers[$name].ProcessId -Cores $CpuQuota }
        }
        $session = Connect-QmTunnelServer 'qmt://203.0.113.2:9200' -Credential $script:BenchAdmin -CertificateThumbprint $servers['qmtb-a'].CertificateThumbprint
        $hop = { param($address) New-QmTunnelHop "qmt://$($address):9200" -Credential $script:BenchAdmin }
        $null = New-QmTunnel bench-hosts1 -Listen 'tcp://127.0.0.1:21001' -Via (& $hop '198.51.100.14') -Target 'tcp://127.0.0.1:5201' -Session $session | Start-QmTunnel
        $null = New-QmTunnel bench-hosts3 -Listen 'tcp://127.0.0.1:21003' -Via @((& $hop '198.51.100.2'), (& $hop '198.51.100.6'), (& $hop '198.51.100.10')) -Target 'tcp://127.0.0.1:5201' -Session $session | Start-QmTunnel
        $script:Commands.Add("tunnels on A: New-QmTunnel bench-hosts1 -Listen tcp://127.0.0.1:21001 -Via qmt://198.51.100.14:9200 -Target tcp://127.0.0.1:5201; New-QmTunnel bench-hosts3 -Listen tcp://127.0.0.1:21003 -Via qmt://198.51.100.2:9200,qmt://198.51.100.6:9200,qmt://198.51.100.10:9200 -Target tcp://127.0.0.1:5201")
        Wait-Until { (& ip netns exec qmtb-a ss -Hltn 'sport = :21001') -and (& ip netns exec qmtb-a ss -Hltn 'sport = :21003') } 20 'the tunnels on A to listen'
        if ($Mode -eq 'links') {
            Measure-Step "hostsP1.$Mode.link" "hosts, $Mode`: one link, no tunnel (Gbit/s)" { Invoke-HostIperf -Label "hosts-$Mode-link" -Port 0 }
        }
        $samples = @{ chain1 = [System.Collections.Generic.List[double]]::new(); chain3 = [System.Collections.Generic.List[double]]::new() }
        $cpu = @{ chain1 = [System.Collections.Generic.List[double]]::new(); chain3 = [System.Collections.Generic.List[double]]::new() }
        foreach ($round in 1..$Rounds) {
            foreach ($path in 'chain1', 'chain3') {
                $ids = if ($path -eq 'chain1') { @($servers['qmtb-a'].ProcessId, $servers['qmtb-x3'].ProcessId) } else { @($servers.Values | ForEach-Object ProcessId) }
                $ticksBefore = @(Get-CpuTicks $ids)
                $clock = [System.Diagnostics.Stopwatch]::StartNew()
                Measure-Step "hostsrun.$Mode.$path.$round" "hosts, $Mode`: $(if ($path -eq 'chain1') { '1 hop ' } else { '3 hops' }), round $round (Gbit/s)" {
                    Invoke-HostIperf -Label "hosts-$Mode-$path-$round" -Port $(if ($path -eq 'chain1') { 21001 } else { 21003 })
                }
                $ticksAfter = @(Get-CpuTicks $ids)
                $value = $results["hostsrun.$Mode.$path.$round"]
                if ($value -isnot [string]) {
                    $samples[$path].Add([double]$value)
                    $total = 0.0
                    for ($i = 0; $i -lt $ids.Count; $i++) { $total += ($ticksAfter[$i] - $ticksBefore[$i]) / 100.0 }
                    $cpu[$path].Add($total / $clock.Elapsed.TotalSeconds / [double]$value)
                }
            }
        }
        foreach ($path in 'chain1', 'chain3') {
            $results["hostsP1.$Mode.$path"] = if ($samples[$path].Count -gt 0) { ($samples[$path] | Measure-Object -Average).Average } else { 'error: no run succeeded' }
            if ($cpu[$path].Count -gt 0) { $results["cpuP1.$Mode.$path"] = ($cpu[$path] | Measure-Object -Average).Average }
        }
        $socat = Start-HostSocat -Mode $Mode -CpuQuota $CpuQuota
        try {
            $socatSamples = @{ chain1 = [System.Collections.Generic.List[double]]::new(); chain3 = [System.Collections.Generic.List[double]]::new() }
            foreach ($round in 1..$Rounds) {
                foreach ($path in 'chain1', 'chain3') {
                    Measure-Step "socatrun.$Mode.$path.$round" "hosts, $Mode`: socat TLS relays, $(if ($path -eq 'chain1') { '1 hop ' } else { '3 hops' }), round $round (Gbit/s)" {
                        Invoke-HostIperf -Label "hosts-$Mode-socat-$path-$round" -Port $(if ($path -eq 'chain1') { 22001 } else { 22003 })
                    }
                    $value = $results["socatrun.$Mode.$path.$round"]
                    if ($value -isnot [string]) { $socatSamples[$path].Add([double]$value) }
                }
            }
            foreach ($path in 'chain1', 'chain3') {
                $results["socatP1.$Mode.$path"] = if ($socatSamples[$path].Count -gt 0) { ($socatSamples[$path] | Measure-Object -Average).Average } else { 'error: no run succeeded' }
            }
        }
        finally {
            foreach ($entry in $socat) { Stop-BenchProcess $entry -GraceSeconds 3 }
        }
    }
    catch {
        $results["hostsP1.$Mode.chain3"] = "error: $($_.Exception.Message)"
        $script:Errors.Add("chain on hosts ($Mode): $($_.Exception.Message)")
        Write-Host "   chain on hosts ($Mode) failed: $($_.Exception.Message)" -ForegroundColor Red
    }
    finally {
        if ($session) { try { Disconnect-QmTunnelServer $session } catch { Write-Verbose $_ } }
        foreach ($server in $servers.Values) { & kill -TERM $server.ProcessId 2>$null }
        foreach ($server in $servers.Values) {
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            while ((Test-Path "/proc/$($server.ProcessId)") -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            if (Test-Path "/proc/$($server.ProcessId)") { & kill -KILL $server.ProcessId 2>$null }
        }
        Remove-ChainHosts
    }
}

<#
.SYNOPSIS
Benchmarks a 1-hop qmTunnel tunnel against a direct connection and a socat relay, and a 1-hop TLS qmTunnel tunnel
against a stunnel client/server pair and ssh -L, all on loopback, in one run.

.DESCRIPTION
Starts an in-process qmTunnel server A (in this pwsh process) and a daemon server B, an iperf3 server, an echo server
(bench/QmTunnel.BenchTool) and two socat relays, then measures:
  - single-stream and 8-stream iperf3 throughput: direct, through socat, through the tunnel A -> B -> iperf3;
  - 64-byte ping-pong round trips (median, p99): direct, socat, tunnel;
  - connect + first byte echoed (median, p99): direct, socat, tunnel;
  - UDP (bench/Measure-Udp.ps1): a windowed datagram echo (64 in flight, 64 B and 1,400 B): datagrams/s and Mbit/s
    direct, through a socat UDP relay (UDP-LISTEN,fork) and through a udp:// tunnel A -> B;
  - 1,000 then 10,000 idle connections through the tunnel: resident memory (VmRSS) per connection of A's process
    and of B's daemon process;
  - chain: iperf3 through a 3-hop chain (three more daemons X1 -> X2 -> X3) against 1 hop (-> X3) in the same run,
    both owned by the daemon A2, TLS links (a chain carries the later hops' logins, which never cross a plain link);
    then the same with each server a host of its own (bench/Measure-ChainLinks.ps1: network namespaces joined by veth
    pairs), once with every link limited to -ChainLinkMbit and once with every server capped at -ChainCpuQuota of a
    core (root only; skipped with the reason otherwise);
  - a connection flood (connections that never log in) against a daemon F with the default limits: its resident
    memory before, during and after, a login timed during the flood, its pending-connection counters, its log growth;
  - compression per hop (bench/Measure-Compression.ps1): one stream of log-like text and one of random bytes, echoed
    through hops asking for None, Lz4 and Zstd: throughput and the wire bytes per application byte.
Encrypted (unless -SkipTls): the same tunnels over a TLS link (qmt://) from A, and from A2 (a daemon), compared with
a stunnel client/server pair (TLS, a certificate made with openssl) and with ssh -L -c aes128-gcm@openssh.com to a
private sshd the bench starts (its own config, host key and client key in a temp folder): single-stream throughput,
ping-pong and connect + first byte.
Prints markdown tables (figure, ratio, goal) and writes them to bench/results/latest.md with the date, the machine
and the exact commands. Loopback only. Needs socat, iperf3, stunnel4, openssh-server, openssh-client and openssl
(installed with apt-get when missing and root).
Run it through `dotnet pwsh ./build.ps1 bench`, which builds first and raises the open-files limit.

.PARAMETER Include
Which groups of measurements to run (all by default).

.PARAMETER SkipTunnel
Measure only direct and socat (when the engine cannot run tunnels yet), and stunnel and ssh -L unless -SkipTls.

.PARAMETER SkipTls
Leave out the encrypted comparison (TLS tunnels, stunnel, ssh -L).
#>
[CmdletBinding()]
param(
    [ValidateSet('Release', 'Debug')]
    [string]$Configuration = 'Release',
    [string]$ModulePath,
    [ValidateRange(1, 60)]
    [int]$Seconds = 5,
    [ValidateRange(100, 1000000)]
    [int]$PingCount = 20000,
    [ValidateRange(10, 100000)]
    [int]$ConnectCount = 1000,
    [int[]]$IdleCounts = @(1000, 10000),
    [string]$OutFile,
    [ValidateSet('throughput', 'latency', 'idle', 'flood', 'resume', 'churn', 'recovery', 'chain', 'compression', 'socks5', 'udp')]
    [string[]]$Include = @('throughput', 'latency', 'idle', 'flood', 'resume', 'churn', 'recovery', 'chain', 'compression', 'socks5', 'udp'),
    [ValidateRange(2, 40000)]
    [int]$FloodConnections = 20000,
    [ValidateRange(10, 600)]
    [int]$FloodSeconds = 30,

    # churn: seconds during which 1,000 connections at a time are opened and closed through a link reset every 5 s.
    [int]$ChurnSeconds = 180,

    # chain: iperf3 runs of each path (1 hop, 3 hops), alternated; the figure is their mean.
    [ValidateRange(1, 10)]
    [int]$ChainRounds = 2,
    # chain on hosts (network namespaces): the rate of every link in the 'links' measurement, and every server's
    # share of a core in the 'cpu' one (bench/Measure-ChainLinks.ps1).
    [ValidateRange(10, 100000)]
    [int]$ChainLinkMbit = 1000,
    [ValidateRange(0.05, 4)]
    [double]$ChainCpuQuota = 0.4,
    [switch]$SkipTunnel,
    [switch]$SkipTls
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$script:WarmUpSeconds = 2

$repo = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path
Import-Module (Join-Path $repo 'src' 'Build' 'QmTunnel.Build.psm1') -Force
if (-not $ModulePath) { $ModulePath = Join-Path $repo 'out' 'qmTunnel' 'qmTunnel.psd1' }
if (-not $OutFile) { $OutFile = Join-Path $repo 'bench' 'results' 'latest.md' }
if (-not $IsLinux) { throw 'The benchmark reads /proc and runs socat, iperf3, stunnel and sshd: it runs on Linux only.' }

$script:Commands = [System.Collections.Generic.List[string]]::new()
$script:Background = [System.Collections.Generic.List[object]]::new()
$script:Errors = [System.Collections.Generic.List[string]]::new()
$results = @{}

#region helpers
function Get-FreePort {
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $listener.Start()
    try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
}

function Test-Listening([int]$Port) {
    $hex = ':{0:X4} ' -f $Port
    foreach ($table in '/proc/net/tcp', '/proc/net/tcp6') {
        if (-not (Test-Path $table)) { continue }
        foreach ($line in [System.IO.File]::ReadAllLines($table)) {
            $fields = $line.Trim() -split '\s+'
            if ($fields.Count -gt 3 -and $fields[3] -eq '0A' -and ($fields[1] + ' ').EndsWith($hex)) { return $true }
        }
    }
    $false
}

function Wait-Until([scriptblock]$Condition, [int]$TimeoutSeconds, [string]$What) {
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    while (-not (& $Condition)) {
        if ($clock.Elapsed.TotalSeconds -ge $TimeoutSeconds) { throw "Timed out after $TimeoutSeconds s waiting for $What." }
        Start-Sleep -Milliseconds 50
    }
}

# Paths in the repository become ./..., paths in the bench's temporary folder <temp>/...
function Format-BenchPath([string]$Text) {
    if ($script:WorkDir) { $Text = $Text.Replace($script:WorkDir, '<temp>') }
    if ($Text.StartsWith($repo + '/')) { $Text = '.' + $Text.Substring($repo.Length) }
    $Text
}

function Format-Command([string[]]$Command) {
    ($Command | ForEach-Object {
            $text = Format-BenchPath $_
            if ($text -eq '') { return "''" }
            if ($text -match '[\s;$"'']') { "'$text'" } else { $text }
        }) -join ' '
}

# Starts a long-running process with its output in a log file and its standard input kept open (closed to stop it;
# -StopWithSigterm: sent SIGTERM instead, for programs that do not read their standard input).
function Start-BenchProcess([string]$Name, [string[]]$Command, [int]$ListenPort, [switch]$StopWithSigterm) {
    $log = Join-Path $script:WorkDir "$Name.log"
    $start = [System.Diagnostics.ProcessStartInfo]::new('bash')
    $start.UseShellExecute = $false
    $start.RedirectStandardInput = $true
    foreach ($arg in @('-c', 'exec "$@" >"$QMB_LOG" 2>&1', 'bash') + $Command) { $start.ArgumentList.Add($arg) }
    $start.Environment['QMB_LOG'] = $log
    $script:Commands.Add("$Name`: $(Format-Command $Command)")
    $process = [System.Diagnostics.Process]::Start($start)
    $entry = [pscustomobject]@{ Name = $Name; Process = $process; Log = $log; Sigterm = [bool]$StopWithSigterm }
    $script:Background.Add($entry)
    if ($ListenPort) {
        Wait-Until { (Test-Listening $ListenPort) -or $process.HasExited } 20 "$Name to listen on port $ListenPort"
        if ($process.HasExited) { throw "$Name exited with $($process.ExitCode): $(Get-Content -Raw $log)" }
    }
    $entry
}

function Stop-BenchProcess($Entry, [int]$GraceSeconds = 5) {
    if (-not $Entry) { return }
    $process = $Entry.Process
    try {
        if (-not $process.HasExited) {
            if ($Entry.Sigterm) {
                # bash exec'd the program: this id is the program's own. Its forked children first: socat's
                # UDP-LISTEN,fork children wait for datagrams for ever and outlived every run before.
                & pkill -TERM -P $process.Id 2>$null
                & kill -TERM $process.Id 2>$null
            }
            else {
                try { $process.StandardInput.Close() } catch { Write-Verbose "stdin of $($Entry.Name): $_" }
            }
            if (-not $process.WaitForExit($GraceSeconds * 1000)) {
                $process.Kill($true)
                $null = $process.WaitForExit(5000)
            }
        }
    }
    catch {
        Write-Verbose "Stopping $($Entry.Name): $_"
    }
    $null = $script:Background.Remove($Entry)
    $process.Dispose()
}

# Runs a command to completion and returns its exit code and output; kills it after the timeout. -NoInput: its
# standard input is at its end from the start (for tools that read it, like openssl s_client).
function Invoke-Captured([string]$Label, [string[]]$Command, [int]$TimeoutSeconds, [switch]$NoInput) {
    $script:Commands.Add("$Label`: $(Format-Command $Command)$(if ($NoInput) { ' </dev/null' })")
    $start = [System.Diagnostics.ProcessStartInfo]::new($Command[0])
    $start.UseShellExecute = $false
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $start.RedirectStandardInput = [bool]$NoInput
    foreach ($arg in $Command | Select-Object -Skip 1) { $start.ArgumentList.Add($arg) }
    $process = [System.Diagnostics.Process]::Start($start)
    try {
        if ($NoInput) { $process.StandardInput.Close() }
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            $process.Kill($true)
            $null = $process.WaitForExit(5000)
            throw "$Label did not finish within $TimeoutSeconds s."
        }
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Stdout = $stdout.Result; Stderr = $stderr.Result }
    }
    finally {
        $process.Dispose()
    }
}

function Invoke-Iperf([string]$Label, [int]$Port, [int]$Parallel) {
    # A one-off iperf3 server per measurement: a failed test can never leave it stuck for the next one.
    $server = Start-BenchProcess -Name "iperf3-server-$Label" -Command @('iperf3', '-s', '-1', '-B', '127.0.0.1', '-p', $script:IperfPort) -ListenPort $script:IperfPort
    try {
        # -O: the first seconds of every path (TCP slow start, and the JIT warming up the .NET relays) are not counted.
        $command = @('iperf3', '-c', '127.0.0.1', '-p', $Port, '-t', $Seconds, '-O', $script:WarmUpSeconds, '-P', $Parallel, '-J', '--connect-timeout', '5000')
        $run = Invoke-Captured -Label "iperf3 $Label" -Command $command -TimeoutSeconds ($Seconds + $script:WarmUpSeconds + 30)
        $json = $null
        try { $json = $run.Stdout | ConvertFrom-Json } catch { Write-Verbose "iperf3 output is not JSON: $_" }
        if ($null -eq $json) { throw "iperf3 $Label printed no JSON (exit $($run.ExitCode)): $($run.Stderr)" }
        if ($json.PSObject.Properties['error']) { throw "iperf3 $Label`: $($json.error)" }
        if ($run.ExitCode -ne 0) { throw "iperf3 $Label exited with $($run.ExitCode): $($run.Stderr)" }
        [double]$json.end.sum_received.bits_per_second / 1e9
    }
    finally {
        Stop-BenchProcess $server -GraceSeconds 3
    }
}

function Invoke-BenchTool([string]$Label, [string[]]$Arguments, [int]$TimeoutSeconds = 120) {
    $run = Invoke-Captured -Label $Label -Command (@('dotnet', $script:ToolDll) + $Arguments) -TimeoutSeconds $TimeoutSeconds
    if ($run.ExitCode -ne 0) { throw "$Label exited with $($run.ExitCode): $($run.Stderr.Trim())" }
    $run.Stdout.Trim() | ConvertFrom-Json
}

# CPU time (utime + stime, in clock ticks of 1/100 s) of each process so far, from /proc/<pid>/stat.
function Get-CpuTicks([int[]]$ProcessIds) {
    foreach ($id in $ProcessIds) {
        $fields = ([System.IO.File]::ReadAllText("/proc/$id/stat") -split '\) ', 2)[1] -split ' '
        [long]$fields[11] + [long]$fields[12]
    }
}

function Get-RssKiB([int]$ProcessId) {
    $line = [System.IO.File]::ReadAllLines("/proc/$ProcessId/status") | Where-Object { $_ -like 'VmRSS:*' }
    if (-not $line) { throw "No VmRSS in /proc/$ProcessId/status." }
    [long](($line -split '\s+')[1])
}

function Get-OpenFileLimit([int]$ProcessId) {
    $line = [System.IO.File]::ReadAllLines("/proc/$ProcessId/limits") | Where-Object { $_ -like 'Max open files*' }
    [long](($line -split '\s{2,}')[1])
}

# Runs one measurement; a failure is recorded and the run goes on.
function Measure-Step([string]$Key, [string]$Title, [scriptblock]$Body) {
    Write-Host ("   {0,-52}" -f $Title) -NoNewline
    try {
        $value = & $Body
        $results[$Key] = $value
        Write-Host (Format-Value $value) -ForegroundColor Green
    }
    catch {
        $results[$Key] = "error: $($_.Exception.Message)"
        $script:Errors.Add("$Title`: $($_.Exception.Message)")
        Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    }
}

function Format-Value($Value) {
    if ($null -eq $Value) { return 'n/a' }
    if ($Value -is [string]) { return $Value }
    if ($Value -is [pscustomobject] -and $Value.PSObject.Properties['median_us']) {
        return "median $($Value.median_us) us, p99 $($Value.p99_us) us"
    }
    if ($Value -is [System.Collections.IDictionary] -or $Value -is [pscustomobject]) {
        return (($Value.PSObject.Properties | Where-Object MemberType -EQ NoteProperty | ForEach-Object { "$($_.Name)=$($_.Value)" }) -join ' ')
    }
    '{0:0.##}' -f $Value
}
#endregion

#region connection flood: Measure-Flood (bench/Measure-Flood.ps1, dot-sourced: it uses the helpers above)
. (Join-Path $PSScriptRoot 'Measure-Flood.ps1')
# compression per hop: Measure-Compression, Format-CompressionTable (bench/Measure-Compression.ps1, dot-sourced likewise)
. (Join-Path $PSScriptRoot 'Measure-Compression.ps1')
#endregion

#region udp: Invoke-UdpBench (bench/Measure-Udp.ps1, dot-sourced)
. (Join-Path $PSScriptRoot 'Measure-Udp.ps1')
#endregion

#region chain on hosts of their own: Invoke-ChainHostsBench (bench/Measure-ChainLinks.ps1, dot-sourced)
. (Join-Path $PSScriptRoot 'Measure-ChainLinks.ps1')
#endregion

#region encrypted comparisons: stunnel, ssh -L
function Find-Tool([string[]]$Names, [string[]]$Paths = @()) {
    $found = Get-Command $Names -CommandType Application -ErrorAction Ignore | Select-Object -First 1
    if ($found) { return $found.Source }
    $Paths | Where-Object { Test-Path -LiteralPath $_ } | Select-Object -First 1
}

# Writes a configuration file and records its text with the commands run.
function Write-BenchConfig([string]$Label, [string]$Path, [string[]]$Lines) {
    Set-Content -LiteralPath $Path -Value $Lines -Encoding utf8NoBOM
    $script:Commands.Add("$Label ($(Format-BenchPath $Path)):`n" + (($Lines | ForEach-Object { if ($_) { "    $(Format-BenchPath $_)" } else { '' } }) -join "`n"))
}

function Invoke-Checked([string]$Label, [string[]]$Command, [int]$TimeoutSeconds = 60) {
    $run = Invoke-Captured -Label $Label -Command $Command -TimeoutSeconds $TimeoutSeconds
    if ($run.ExitCode -ne 0) { throw "$Label exited with $($run.ExitCode): $(($run.Stderr + $run.Stdout).Trim())" }
    $run
}

<#
A stunnel client/server pair on loopback, one service per target: client (plain in, TLS out) -> server (TLS in, plain
out) -> target. The server's certificate is an ECDSA P-256 one made with openssl (the kind qmTunnel servers make);
TLS settings are stunnel's defaults (TLS 1.3 with OpenSSL 3). Returns the client's listening port per target name.
#>
function Start-StunnelPair([System.Collections.Specialized.OrderedDictionary]$Targets) {
    $stunnel = Find-Tool 'stunnel4', 'stunnel'
    if (-not $stunnel) { throw 'stunnel is not installed: apt-get install -y stunnel4' }
    $dir = Join-Path $script:WorkDir 'stunnel'
    $null = New-Item -ItemType Directory -Path $dir -Force
    $cert = Join-Path $dir 'server-cert.pem'
    $key = Join-Path $dir 'server-key.pem'
    $null = Invoke-Checked 'stunnel certificate' @('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', $key, '-out', $cert, '-days', '2', '-subj', '/CN=127.0.0.1')
    $server = @('foreground = yes', "pid = $(Join-Path $dir 'server.pid')", 'debug = 4')
    $client = @('foreground = yes', "pid = $(Join-Path $dir 'client.pid')", 'debug = 4', 'client = yes')
    $serverPorts = @()
    $clientPorts = [ordered]@{}
    foreach ($name in $Targets.Keys) {
        $serverPort = Get-FreePort
        $clientPort = Get-FreePort
        $server += @('', "[$name]", "accept = 127.0.0.1:$serverPort", "connect = 127.0.0.1:$($Targets[$name])", "cert = $cert", "key = $key",
            'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1')
        $client += @('', "[$name]", "accept = 127.0.0.1:$clientPort", "connect = 127.0.0.1:$serverPort",
            'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1')
        $serverPorts += $serverPort
        $clientPorts[$name] = $clientPort
    }
    $serverConf = Join-Path $dir 'server.conf'
    $clientConf = Join-Path $dir 'client.conf'
    Write-BenchConfig 'stunnel server config' $serverConf $server
    Write-BenchConfig 'stunnel client config' $clientConf $client
    $serverEntry = Start-BenchProcess -Name 'stunnel-server' -Command @($stunnel, $serverConf) -ListenPort $serverPorts[0] -StopWithSigterm
    Wait-Until { @($serverPorts | Where-Object { -not (Test-Listening $_) }).Count -eq 0 -or $serverEntry.Process.HasExited } 20 'the stunnel server to listen'
    $clientEntry = Start-BenchProcess -Name 'stunnel-client' -Command @($stunnel, $clientConf) -ListenPort @($clientPorts.Values)[0] -StopWithSigterm
    Wait-Until { @($clientPorts.Values | Where-Object { -not (Test-Listening $_) }).Count -eq 0 -or $clientEntry.Process.HasExited } 20 'the stunnel client to listen'
    foreach ($entry in $serverEntry, $clientEntry) {
        if ($entry.Process.HasExited) { throw "$($entry.Name) exited: $(Get-Content -Raw -LiteralPath $entry.Log)" }
    }
    [pscustomobject]@{ ClientPorts = $clientPorts; ServerPort = $serverPorts[0]; Tool = $stunnel }
}

<#
A private sshd on a free loopback port (its own config, an ed25519 host key and an authorized client key, all in the
temporary folder) and one ssh -N -L client with a forward per target, cipher aes128-gcm@openssh.com. Returns the
forwarded ports per target name.
#>
function Start-SshForward([System.Collections.Specialized.OrderedDictionary]$Targets) {
    $sshd = Find-Tool 'sshd' '/usr/sbin/sshd'
    $ssh = Find-Tool 'ssh'
    $keygen = Find-Tool 'ssh-keygen'
    if (-not $sshd) { throw 'sshd is not installed: apt-get install -y openssh-server' }
    if (-not $ssh -or -not $keygen) { throw 'ssh is not installed: apt-get install -y openssh-client' }
    $dir = Join-Path $script:WorkDir 'ssh'
    $null = New-Item -ItemType Directory -Path $dir -Force
    if (-not (Test-Path -LiteralPath '/run/sshd')) {
        # Debian's sshd refuses to start without its privilege separation directory (systemd creates it at boot).
        $null = New-Item -ItemType Directory -Path '/run/sshd'
        $script:Commands.Add('mkdir /run/sshd   (the privilege separation directory Debian''s sshd needs; it was missing)')
    }
    $hostKey = Join-Path $dir 'host_ed25519'
    $clientKey = Join-Path $dir 'client_ed25519'
    foreach ($keyFile in $hostKey, $clientKey) {
        $null = Invoke-Checked "ssh-keygen $(Split-Path -Leaf $keyFile)" @($keygen, '-q', '-t', 'ed25519', '-N', '', '-C', 'qmtunnel-bench', '-f', $keyFile)
    }
    $authorized = Join-Path $dir 'authorized_keys'
    Copy-Item -LiteralPath "$clientKey.pub" -Destination $authorized
    $user = (& id -un).Trim()
    $sshdPort = Get-FreePort
    $config = Join-Path $dir 'sshd_config'
    Write-BenchConfig 'sshd config' $config @(
        'ListenAddress 127.0.0.1', "Port $sshdPort", "HostKey $hostKey", "AuthorizedKeysFile $authorized", "PidFile $(Join-Path $dir 'sshd.pid')",
        'PermitRootLogin prohibit-password', 'PubkeyAuthentication yes', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
        'UsePAM no', 'StrictModes no', 'AllowTcpForwarding yes', 'X11Forwarding no', 'PermitTTY no', 'PrintMotd no', 'LogLevel INFO')
    $null = Invoke-Checked 'sshd config check' @($sshd, '-t', '-f', $config)
    $null = Start-BenchProcess -Name 'sshd' -Command @($sshd, '-D', '-e', '-f', $config) -ListenPort $sshdPort -StopWithSigterm
    $forwardPorts = [ordered]@{}
    $command = @($ssh, '-N', '-F', 'none', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
        '-o', 'IdentitiesOnly=yes', '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR', '-i', $clientKey, '-c', 'aes128-gcm@openssh.com', '-p', $sshdPort)
    foreach ($name in $Targets.Keys) {
        $port = Get-FreePort
        $forwardPorts[$name] = $port
        $command += @('-L', "127.0.0.1:$($port):127.0.0.1:$($Targets[$name])")
    }
    $command += "$user@127.0.0.1"
    $client = Start-BenchProcess -Name 'ssh-forward' -Command $command -ListenPort @($forwardPorts.Values)[0] -StopWithSigterm
    Wait-Until { @($forwardPorts.Values | Where-Object { -not (Test-Listening $_) }).Count -eq 0 -or $client.Process.HasExited } 20 'the ssh forwards to listen'
    if ($client.Process.HasExited) { throw "ssh exited: $(Get-Content -Raw -LiteralPath $client.Log)" }
    [pscustomobject]@{ ForwardPorts = $forwardPorts; Tool = $ssh }
}

# The TLS version, cipher suite and key exchange openssl s_client negotiates with a server (for the notes), or why not.
function Get-TlsSummary([string]$Label, [int]$Port) {
    try {
        $run = Invoke-Captured -Label "TLS probe, $Label" -Command @('openssl', 's_client', '-connect', "127.0.0.1:$Port", '-brief') -TimeoutSeconds 15 -NoInput
        $text = $run.Stderr + "`n" + $run.Stdout
        $protocol = [regex]::Match($text, 'Protocol version:\s*(\S+)').Groups[1].Value
        $suite = [regex]::Match($text, 'Ciphersuite:\s*(\S+)').Groups[1].Value
        $kex = [regex]::Match($text, 'Server Temp Key:\s*([^\r\n]+)').Groups[1].Value.Trim()
        if (-not $protocol) { return "unknown (openssl s_client: $(($text.Trim() -split "`n" | Select-Object -Last 1)))" }
        "$protocol $suite$(if ($kex) { ", key exchange $kex" })"
    }
    catch {
        "unknown ($($_.Exception.Message))"
    }
}

function Get-ToolVersion([string]$Command, [string]$Pattern) {
    try {
        $lines = & bash -c "{ $Command; } 2>&1" | ForEach-Object { "$_" }
        $lines | Where-Object { $_ -match $Pattern } | Select-Object -First 1
    }
    catch {
        "$Command`: $($_.Exception.Message)"
    }
}
#endregion

$script:WorkDir = Join-Path ([System.IO.Path]::GetTempPath()) ("qmtunnel-bench-" + [System.IO.Path]::GetRandomFileName().Replace('.', ''))
$null = New-Item -ItemType Directory -Path $script:WorkDir -Force
$tunnelReady = $false
$fileLimit = $null
$serverB = $null
$serverA2 = $null
$serverAStarted = $false
$idle = $null
$stunnelPair = $null
$sshForward = $null
$tlsSummary = [ordered]@{}
try {
    Write-QmStep 'Benchmark prerequisites'
    $aptNeeds = @{ socat = 'socat'; iperf3 = 'iperf3' }
    if (-not $SkipTls) {
        $aptNeeds += @{ stunnel4 = 'stunnel4'; ssh = 'openssh-client'; 'ssh-keygen' = 'openssh-client'; openssl = 'openssl' }
        # sshd lives in /usr/sbin, which may not be on PATH.
        if (-not (Find-Tool 'sshd' '/usr/sbin/sshd')) { $aptNeeds.sshd = 'openssh-server' }
    }
    Install-QmAptPackage -CommandToPackage $aptNeeds
    foreach ($tool in 'socat', 'iperf3') {
        if (-not (Get-Command $tool -CommandType Application -ErrorAction Ignore)) { throw "$tool is not installed: apt-get install -y $tool" }
    }
    if (-not (Test-Path -LiteralPath $ModulePath)) { throw "The module is not staged at ${ModulePath}: run dotnet pwsh ./build.ps1 build first." }
    $toolProject = Join-Path $repo 'bench' 'QmTunnel.BenchTool' 'QmTunnel.BenchTool.csproj'
    Invoke-QmNative -What 'dotnet build (bench tool)' -FilePath dotnet -ArgumentList @('build', $toolProject, '-c', $Configuration, '--nologo', '-v', 'q')
    $script:ToolDll = Join-Path $repo 'bench' 'QmTunnel.BenchTool' 'bin' $Configuration 'net10.0' 'qmtunnel-bench.dll'

    $fileLimit = Get-OpenFileLimit $PID
    $maxIdle = ($IdleCounts | Measure-Object -Maximum).Maximum
    Write-Host "   open files limit of this process: $fileLimit"
    if ($maxIdle -and $fileLimit -lt $maxIdle + 500) {
        Write-Warning "The open files limit ($fileLimit) is too low for $maxIdle idle connections: run through build.ps1 bench (it raises it) or ulimit -n."
    }

    Write-QmStep 'Starting the targets, relays and servers (loopback)'
    $script:IperfPort = Get-FreePort
    $echoPort = Get-FreePort
    $socatIperfPort = Get-FreePort
    $socatEchoPort = Get-FreePort
    $null = Start-BenchProcess -Name 'echo-server' -Command @('dotnet', $script:ToolDll, 'echo-server', '--port', $echoPort, '--watch-stdin', '1') -ListenPort $echoPort
    $null = Start-BenchProcess -Name 'socat-iperf' -Command @('socat', "TCP-LISTEN:$socatIperfPort,bind=127.0.0.1,reuseaddr,fork", "TCP:127.0.0.1:$($script:IperfPort)") -ListenPort $socatIperfPort
    $null = Start-BenchProcess -Name 'socat-echo' -Command @('socat', "TCP-LISTEN:$socatEchoPort,bind=127.0.0.1,reuseaddr,fork", "TCP:127.0.0.1:$echoPort") -ListenPort $socatEchoPort
    Write-Host "   iperf3 :$($script:IperfPort)  echo :$echoPort  socat :$socatIperfPort -> iperf3, :$socatEchoPort -> echo"
    $comparisonTargets = [ordered]@{ iperf = $script:IperfPort; echo = $echoPort }
    if (-not $SkipTls) {
        try {
            $stunnelPair = Start-StunnelPair $comparisonTargets
            Write-Host "   stunnel client :$($stunnelPair.ClientPorts.iperf) -> iperf3, :$($stunnelPair.ClientPorts.echo) -> echo (TLS to the stunnel server :$($stunnelPair.ServerPort)...)"
            $tlsSummary.stunnel = Get-TlsSummary 'stunnel server' $stunnelPair.ServerPort
        }
        catch {
            $stunnelPair = $null
            $script:Errors.Add("stunnel set-up: $($_.Exception.Message)")
            Write-Host "   stunnel set-up failed: $($_.Exception.Message)" -ForegroundColor Red
        }
        try {
            $sshForward = Start-SshForward $comparisonTargets
            Write-Host "   ssh -L :$($sshForward.ForwardPorts.iperf) -> iperf3, :$($sshForward.ForwardPorts.echo) -> echo (through a private sshd)"
        }
        catch {
            $sshForward = $null
            $script:Errors.Add("ssh -L set-up: $($_.Exception.Message)")
            Write-Host "   ssh -L set-up failed: $($_.Exception.Message)" -ForegroundColor Red
        }
    }

    $tunnelIperfPort = $null
    $tunnelEchoPort = $null
    $tunnelSocksPort = $null
    $tlsPorts = @{}
    if (-not $SkipTunnel) {
        try {
            Import-Module $ModulePath -Force
            $script:BenchAdmin = [pscredential]::new('admin', (ConvertTo-SecureString ([guid]::NewGuid().ToString('n')) -AsPlainText -Force))
            $global:PSDefaultParameterValues['Start-QmTunnelServer:AdminCredential'] = $script:BenchAdmin
            $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $script:WorkDir 'server-b') -AllowPlainLinks
            $script:Commands.Add("server B (daemon, pid $($serverB.ProcessId)): Start-QmTunnelServer -Daemon -Port 0 -DataPath <temp>/server-b -AllowPlainLinks  -> $($serverB.PlainAddress)")
            # Every link logs in: the bench's servers all get one generated admin password (set on their first start).
            $via = New-QmTunnelHop "qmt+plain://127.0.0.1:$($serverB.Port)" -Credential $script:BenchAdmin
            $tlsVia = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Credential $script:BenchAdmin
            # The idle measurement holds 10,000 connections on one link: above B's default MaxStreamsPerLink (1024),
            # as -MaxConnections 20000 is above a tunnel's default.
            $sessionB = Connect-QmTunnelServer "qmt+plain://127.0.0.1:$($serverB.Port)" -Credential $script:BenchAdmin
            Set-QmTunnelServerConfig -MaxStreamsPerLink 20000 -Session $sessionB
            Disconnect-QmTunnelServer $sessionB
            $script:Commands.Add("server B: Set-QmTunnelServerConfig -MaxStreamsPerLink 20000 -Session (Connect-QmTunnelServer qmt+plain://127.0.0.1:$($serverB.Port) -Credential admin)")
            if (-not $SkipTls) { $tlsSummary['qmTunnel server B'] = Get-TlsSummary 'qmTunnel server B' $serverB.Port }

            # Server A2: the same tunnels with the first server as a daemon too (inline socket completions, no pwsh):
            # configured in-process on its data path, then that data path is handed to a daemon, which restores them.
            $daemonIperfPort = Get-FreePort
            $daemonEchoPort = Get-FreePort
            $a2Path = Join-Path $script:WorkDir 'server-a2'
            $null = Start-QmTunnelServer -Port 0 -DataPath $a2Path
            $null = New-QmTunnel bench-iperf -Listen "tcp://127.0.0.1:$daemonIperfPort" -Via $via -Target "tcp://127.0.0.1:$($script:IperfPort)" | Start-QmTunnel
            $null = New-QmTunnel bench-echo -Listen "tcp://127.0.0.1:$daemonEchoPort" -Via $via -Target "tcp://127.0.0.1:$echoPort" -MaxConnections 20000 | Start-QmTunnel
            $a2Tunnels = "bench-iperf (listen :$daemonIperfPort) and bench-echo (:$daemonEchoPort) -Via $via"
            if ('udp' -in $Include) {
                # The udp group's tunnel on A2 too (its echo server starts with the group, on this port).
                $script:UdpEchoPort = Get-FreePort
                $script:DaemonUdpPort = Get-FreePort
                $null = New-QmTunnel bench-udp -Listen "udp://127.0.0.1:$($script:DaemonUdpPort)" -Via $via -Target "udp://127.0.0.1:$($script:UdpEchoPort)" | Start-QmTunnel
                $a2Tunnels += ", bench-udp (udp :$($script:DaemonUdpPort) -> udp :$($script:UdpEchoPort))"
            }
            if (-not $SkipTls) {
                # And the same two over a TLS link (tls-daemons).
                try {
                    $ports = @{ Iperf = Get-FreePort; Echo = Get-FreePort }
                    $null = New-QmTunnel bench-tls-iperf -Listen "tcp://127.0.0.1:$($ports.Iperf)" -Via $tlsVia -Target "tcp://127.0.0.1:$($script:IperfPort)" | Start-QmTunnel
                    $null = New-QmTunnel bench-tls-echo -Listen "tcp://127.0.0.1:$($ports.Echo)" -Via $tlsVia -Target "tcp://127.0.0.1:$echoPort" -MaxConnections 20000 | Start-QmTunnel
                    $tlsPorts['tls-daemons'] = $ports
                    $a2Tunnels += ", bench-tls-iperf (:$($ports.Iperf)) and bench-tls-echo (:$($ports.Echo)) -Via $tlsVia"
                }
                catch {
                    $script:Errors.Add("TLS tunnel set-up on server A2: $($_.Exception.Message)")
                    Write-Host "   TLS tunnel set-up on server A2 failed: $($_.Exception.Message)" -ForegroundColor Red
                }
            }
            Stop-QmTunnelServer
            $serverA2 = Start-QmTunnelServer -Daemon -Port 0 -DataPath $a2Path
            $script:Commands.Add("server A2 (daemon, pid $($serverA2.ProcessId)): the tunnels $a2Tunnels, created in-process (Start-QmTunnelServer -Port 0 -DataPath <temp>/server-a2; New-QmTunnel ... | Start-QmTunnel; Stop-QmTunnelServer), then Start-QmTunnelServer -Daemon -Port 0 -DataPath <temp>/server-a2")

            $serverA = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $script:WorkDir 'server-a') -PassThru
            $serverAStarted = $true
            $script:Commands.Add("server A (in this pwsh, pid $PID): Start-QmTunnelServer -Port 0 -DataPath <temp>/server-a -PassThru  -> $($serverA.Address)")
            $tunnelIperfPort = Get-FreePort
            $tunnelEchoPort = Get-FreePort
            $null = New-QmTunnel bench-iperf -Listen "tcp://127.0.0.1:$tunnelIperfPort" -Via $via -Target "tcp://127.0.0.1:$($script:IperfPort)" | Start-QmTunnel
            $script:Commands.Add("tunnel: New-QmTunnel bench-iperf -Listen tcp://127.0.0.1:$tunnelIperfPort -Via $via -Target tcp://127.0.0.1:$($script:IperfPort) | Start-QmTunnel")
            $null = New-QmTunnel bench-echo -Listen "tcp://127.0.0.1:$tunnelEchoPort" -Via $via -Target "tcp://127.0.0.1:$echoPort" -MaxConnections 20000 | Start-QmTunnel
            $script:Commands.Add("tunnel: New-QmTunnel bench-echo -Listen tcp://127.0.0.1:$tunnelEchoPort -Via $via -Target tcp://127.0.0.1:$echoPort -MaxConnections 20000 | Start-QmTunnel")
            if ('socks5' -in $Include) {
                $tunnelSocksPort = Get-FreePort
                $null = New-QmTunnel bench-socks -Listen "socks5://127.0.0.1:$tunnelSocksPort" -Via $via -MaxConnections 20000 | Start-QmTunnel
                $script:Commands.Add("tunnel: New-QmTunnel bench-socks -Listen socks5://127.0.0.1:$tunnelSocksPort -Via $via -MaxConnections 20000 | Start-QmTunnel")
            }
            Wait-Until { (Test-Listening $tunnelIperfPort) -and (Test-Listening $tunnelEchoPort) -and (Test-Listening $daemonIperfPort) -and (Test-Listening $daemonEchoPort) } 20 'the tunnels to listen'
            Write-Host "   A: $($serverA.Address) (pid $PID)  B: $($serverB.Address) (pid $($serverB.ProcessId))  tunnels :$tunnelIperfPort -> iperf3, :$tunnelEchoPort -> echo"
            $tunnelReady = $true
            if (-not $SkipTls) {
                try {
                    $ports = @{ Iperf = Get-FreePort; Echo = Get-FreePort }
                    $null = New-QmTunnel bench-tls-iperf -Listen "tcp://127.0.0.1:$($ports.Iperf)" -Via $tlsVia -Target "tcp://127.0.0.1:$($script:IperfPort)" | Start-QmTunnel
                    $script:Commands.Add("tunnel: New-QmTunnel bench-tls-iperf -Listen tcp://127.0.0.1:$($ports.Iperf) -Via $tlsVia -Target tcp://127.0.0.1:$($script:IperfPort) | Start-QmTunnel")
                    $null = New-QmTunnel bench-tls-echo -Listen "tcp://127.0.0.1:$($ports.Echo)" -Via $tlsVia -Target "tcp://127.0.0.1:$echoPort" -MaxConnections 20000 | Start-QmTunnel
                    $script:Commands.Add("tunnel: New-QmTunnel bench-tls-echo -Listen tcp://127.0.0.1:$($ports.Echo) -Via $tlsVia -Target tcp://127.0.0.1:$echoPort -MaxConnections 20000 | Start-QmTunnel")
                    $tlsPorts.tls = $ports
                }
                catch {
                    $script:Errors.Add("TLS tunnel set-up on server A: $($_.Exception.Message)")
                    Write-Host "   TLS tunnel set-up on server A failed: $($_.Exception.Message)" -ForegroundColor Red
                }
                foreach ($name in @($tlsPorts.Keys)) {
                    try {
                        Wait-Until { (Test-Listening $tlsPorts[$name].Iperf) -and (Test-Listening $tlsPorts[$name].Echo) } 20 "the $name tunnels to listen"
                        Write-Host "   $name`: tunnels :$($tlsPorts[$name].Iperf) -> iperf3, :$($tlsPorts[$name].Echo) -> echo over $tlsVia"
                    }
                    catch {
                        $tlsPorts.Remove($name)
                        $script:Errors.Add("TLS tunnel set-up ($name): $($_.Exception.Message)")
                    }
                }
            }
        }
        catch {
            $script:Errors.Add("tunnel set-up: $($_.Exception.Message)")
            Write-Host "   tunnel set-up failed: $($_.Exception.Message)" -ForegroundColor Red
        }
    }
    $paths = [ordered]@{ direct = @{ Iperf = $script:IperfPort; Echo = $echoPort }; socat = @{ Iperf = $socatIperfPort; Echo = $socatEchoPort } }
    if ($tunnelReady) {
        $paths.tunnel = @{ Iperf = $tunnelIperfPort; Echo = $tunnelEchoPort }
        $paths.daemons = @{ Iperf = $daemonIperfPort; Echo = $daemonEchoPort }
    }
    # The encrypted paths: measured with 1 stream only (the goals are for one stream).
    $encrypted = [System.Collections.Generic.List[string]]::new()
    if ($stunnelPair) { $paths.stunnel = @{ Iperf = $stunnelPair.ClientPorts.iperf; Echo = $stunnelPair.ClientPorts.echo }; $encrypted.Add('stunnel') }
    if ($sshForward) { $paths.ssh = @{ Iperf = $sshForward.ForwardPorts.iperf; Echo = $sshForward.ForwardPorts.echo }; $encrypted.Add('ssh') }
    foreach ($name in 'tls', 'tls-daemons' | Where-Object { $tlsPorts.ContainsKey($_) }) { $paths[$name] = $tlsPorts[$name]; $encrypted.Add($name) }

    if ('throughput' -in $Include) { Write-QmStep "Throughput (iperf3 -t $Seconds)" }
    foreach ($parallel in @(1, 8) | Where-Object { 'throughput' -in $Include }) {
        foreach ($path in $paths.Keys | Where-Object { $parallel -eq 1 -or $_ -notin $encrypted }) {
            Measure-Step "stream$parallel.$path" "$parallel stream(s), $path (Gbit/s)" { Invoke-Iperf -Label "$path-P$parallel" -Port $paths[$path].Iperf -Parallel $parallel }
        }
    }

    $latencyPaths = if ('latency' -in $Include) { @($paths.Keys) } else { @() }
    if ($latencyPaths) { Write-QmStep "Latency (64-byte ping-pong x $PingCount, connect + first byte x $ConnectCount)" }
    foreach ($path in $latencyPaths) {
        Measure-Step "ping.$path" "ping-pong 64 B, $path (us)" {
            Invoke-BenchTool -Label "pingpong $path" -Arguments @('pingpong', '--port', $paths[$path].Echo, '--count', $PingCount, '--size', '64', '--warmup', '1000')
        }
    }
    foreach ($path in $latencyPaths) {
        Measure-Step "connect.$path" "connect + first byte, $path (us)" {
            Invoke-BenchTool -Label "connect-first-byte $path" -Arguments @('connect-first-byte', '--port', $paths[$path].Echo, '--count', $ConnectCount, '--warmup', '50')
        }
    }

    if ($tunnelReady -and 'compression' -in $Include) {
        Write-QmStep "Compression per hop (qmtunnel-bench stream --data text|random, $Seconds s each, through hops asking for None, Lz4, Zstd)"
        Measure-Step 'compression' 'compression per hop (rows in the report)' { Measure-Compression -EchoPort $echoPort -ServerBPort $serverB.Port }
    }

    if ($tunnelReady -and 'socks5' -in $Include) {
        Write-QmStep "SOCKS5: connect + first byte x $ConnectCount, fixed-target tunnel vs socks5:// tunnel (same run)"
        Measure-Step 'socks5.fixed' 'connect + first byte, fixed-target tunnel (us)' {
            Invoke-BenchTool -Label 'connect-first-byte fixed' -Arguments @('connect-first-byte', '--port', $tunnelEchoPort, '--count', $ConnectCount, '--warmup', '50')
        }
        foreach ($target in @(@{ Key = 'address'; Text = "127.0.0.1:$echoPort" }, @{ Key = 'name'; Text = "localhost:$echoPort" })) {
            Measure-Step "socks5.$($target.Key)" "connect + first byte, socks5, $($target.Key) (us)" {
                Invoke-BenchTool -Label "connect-first-byte socks5 $($target.Key)" -Arguments @('connect-first-byte', '--port', $tunnelSocksPort, '--count', $ConnectCount, '--warmup', '50', '--socks5-target', $target.Text)
            }
        }
        # the fixed-target tunnel once more, last: the first run also warms the path (JIT, pools) for the ones after it
        Measure-Step 'socks5.fixed2' 'connect + first byte, fixed-target, again (us)' {
            Invoke-BenchTool -Label 'connect-first-byte fixed again' -Arguments @('connect-first-byte', '--port', $tunnelEchoPort, '--count', $ConnectCount, '--warmup', '50')
        }
    }

    if ($tunnelReady -and 'idle' -in $Include) {
        Write-QmStep 'Idle connections through the tunnel (resident memory per connection)'
        foreach ($count in $IdleCounts) {
            Measure-Step "idle.$count" "$count idle connections (KiB per connection)" {
                [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [GC]::Collect()
                Start-Sleep -Seconds 1
                $a0 = Get-RssKiB $PID
                $b0 = Get-RssKiB $serverB.ProcessId
                $idle = Start-BenchProcess -Name "idle-$count" -Command @('dotnet', $script:ToolDll, 'idle', '--port', $tunnelEchoPort, '--count', $count,
                    '--hold-seconds', '900', '--concurrency', '64', '--watch-stdin', '1')
                try {
                    Wait-Until { ((Get-Content -Raw -LiteralPath $idle.Log -ErrorAction Ignore) -match 'READY') -or $idle.Process.HasExited } 300 "$count idle connections"
                    $ready = [regex]::Match((Get-Content -Raw -LiteralPath $idle.Log), 'READY (\d+) (\d+)')
                    if (-not $ready.Success) { throw "the idle client stopped: $(Get-Content -Raw -LiteralPath $idle.Log)" }
                    $opened = [int]$ready.Groups[1].Value
                    $failed = [int]$ready.Groups[2].Value
                    if ($failed -gt 0) {
                        $firstError = ([regex]::Match((Get-Content -Raw -LiteralPath $idle.Log), 'first error: (.*)')).Groups[1].Value.Trim()
                        $script:Errors.Add("$count idle connections: $failed of $count failed to open or echo through the tunnel (first error: $firstError); the figures are per connection that opened")
                    }
                    if ($opened -eq 0) { throw "no connection opened: $(Get-Content -Raw -LiteralPath $idle.Log)" }
                    $current = { try { (Get-QmTunnelStats bench-echo).ConnectionsCurrent } catch { -1 } }
                    try { Wait-Until { (& $current) -ge $opened } 30 "the tunnel to count $opened connections" } catch { Write-Verbose $_ }
                    $inTunnel = & $current
                    if ($inTunnel -lt $opened) {
                        $script:Errors.Add("$count idle connections: the tunnel counted only $inTunnel of the $opened open connections when memory was read (last error: $((Get-QmTunnelStats bench-echo).LastError))")
                    }
                    Start-Sleep -Seconds 2
                    [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [GC]::Collect()
                    Start-Sleep -Seconds 1
                    $a1 = Get-RssKiB $PID
                    $b1 = Get-RssKiB $serverB.ProcessId
                    [pscustomobject]@{
                        Opened     = $opened
                        Failed     = $failed
                        InTunnel   = $inTunnel
                        AKiBPer    = [math]::Round(($a1 - $a0) / $opened, 2)
                        BKiBPer    = [math]::Round(($b1 - $b0) / $opened, 2)
                        ARssMiB    = [math]::Round($a1 / 1024, 1)
                        BRssMiB    = [math]::Round($b1 / 1024, 1)
                    }
                }
                finally {
                    Stop-BenchProcess $idle -GraceSeconds 60
                    try { Wait-Until { (Get-QmTunnelStats bench-echo).ConnectionsCurrent -eq 0 } 60 'the idle connections to close' } catch { Write-Verbose $_ }
                }
            }
        }
    }

    if ($tunnelReady -and 'resume' -in $Include) {
        Write-QmStep 'Resume: from a reset of the link to the first byte through again (20 cuts)'
        Measure-Step 'resume' 'cut to the next echo, 20 resets (ms)' {
            $proxyPort = Get-FreePort
            $resumePort = Get-FreePort
            # The probe's proxy is the hop: the link A -> B passes it, and the probe resets it.
            $probe = Start-BenchProcess -Name 'resume-probe' -Command @('dotnet', $script:ToolDll, 'resume-probe', '--port', $resumePort, '--proxy-port', $proxyPort,
                '--target-port', $serverB.Port, '--cuts', '20', '--watch-stdin', '1') -ListenPort $proxyPort
            try {
                $resumeVia = New-QmTunnelHop "qmt+plain://127.0.0.1:$proxyPort" -Credential $script:BenchAdmin
                $null = New-QmTunnel bench-resume -Listen "tcp://127.0.0.1:$resumePort" -Via $resumeVia -Target "tcp://127.0.0.1:$echoPort" | Start-QmTunnel
                $script:Commands.Add("tunnel: New-QmTunnel bench-resume -Listen tcp://127.0.0.1:$resumePort -Via $resumeVia -Target tcp://127.0.0.1:$echoPort | Start-QmTunnel")
                Wait-Until { $probe.Process.HasExited } 300 'the resume probe'
                $text = Get-Content -Raw -LiteralPath $probe.Log
                $json = ($text -split "`n" | Where-Object { $_.TrimStart().StartsWith('{') } | Select-Object -Last 1)
                if ($probe.Process.ExitCode -ne 0 -or -not $json) { throw "the resume probe failed (exit $($probe.Process.ExitCode)): $text" }
                $json | ConvertFrom-Json
            }
            finally {
                Stop-BenchProcess $probe -GraceSeconds 3
                try { Remove-QmTunnel bench-resume -Confirm:$false } catch { Write-Verbose $_ }
            }
        }
    }

    if ($tunnelReady -and 'udp' -in $Include) {
        Write-QmStep 'UDP: datagram echo, 64 in flight (64 B and 1,400 B): direct, socat UDP relay, udp:// tunnel'
        Invoke-UdpBench -Via $via -Seconds $Seconds -EchoPort $script:UdpEchoPort -DaemonPort $script:DaemonUdpPort
    }

    if ($tunnelReady -and 'recovery' -in $Include) {
        Write-QmStep 'Recovery: a permanent tunnel after kill -9 of its far server and a start 2 s later (5 times)'
        Measure-Step 'recovery' 'far server killed and started again (ms to Established)' {
            $farPort = Get-FreePort
            $farPath = Join-Path $script:WorkDir 'server-r'
            $far = Start-QmTunnelServer -Daemon -Port $farPort -DataPath $farPath -AllowPlainLinks
            $script:Commands.Add("server R (daemon): Start-QmTunnelServer -Daemon -Port $farPort -DataPath <temp>/server-r -AllowPlainLinks; killed with kill -9 and started again the same way, 5 times")
            $recoveryPort = Get-FreePort
            $recoveryVia = New-QmTunnelHop "qmt+plain://127.0.0.1:$farPort" -Credential $script:BenchAdmin
            $null = New-QmTunnel bench-recovery -Listen "tcp://127.0.0.1:$recoveryPort" -Via $recoveryVia -Target "tcp://127.0.0.1:$echoPort" -Permanent | Start-QmTunnel
            $script:Commands.Add("tunnel: New-QmTunnel bench-recovery -Listen tcp://127.0.0.1:$recoveryPort -Via $recoveryVia -Target tcp://127.0.0.1:$echoPort -Permanent | Start-QmTunnel")
            try {
                Wait-Until { (Get-QmTunnel bench-recovery).State -eq 'Established' } 30 'the permanent tunnel to be established'
                $samples = foreach ($round in 1..5) {
                    & kill -KILL $far.ProcessId
                    Wait-Until { -not (Test-Path "/proc/$($far.ProcessId)") } 10 'server R to die'
                    Start-Sleep -Seconds 2
                    $far = Start-QmTunnelServer -Daemon -Port $farPort -DataPath $farPath -AllowPlainLinks
                    $clock = [System.Diagnostics.Stopwatch]::StartNew()
                    Wait-Until { (Get-QmTunnel bench-recovery).State -eq 'Established' } 60 'the permanent tunnel to be established again'
                    $clock.Elapsed.TotalMilliseconds
                }
                $sorted = @($samples | Sort-Object)
                [pscustomobject]@{ MedianMs = [math]::Round($sorted[2], 0); MaxMs = [math]::Round($sorted[-1], 0); MinMs = [math]::Round($sorted[0], 0); Rounds = $sorted.Count }
            }
            finally {
                try { Remove-QmTunnel bench-recovery -Confirm:$false } catch { Write-Verbose $_ }
                try { $far | Stop-QmTunnelServer -Confirm:$false } catch { Write-Verbose $_ }
            }
        }
    }

    if ($tunnelReady -and 'churn' -in $Include) {
        Write-QmStep "Churn: 1,000 connections at a time opened and closed for $ChurnSeconds s, the link reset every 5 s"
        Measure-Step 'churn' "churn, $ChurnSeconds s (connections, memory, descriptors)" {
            $proxyPort = Get-FreePort
            $churnPort = Get-FreePort
            $sessionB = Connect-QmTunnelServer "qmt+plain://127.0.0.1:$($serverB.Port)" -Credential $script:BenchAdmin
            try {
                [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [GC]::Collect()
                $before = [pscustomobject]@{ A = Get-RssKiB $PID; B = Get-RssKiB $serverB.ProcessId; BFds = (Get-ChildItem "/proc/$($serverB.ProcessId)/fd").Count; AFds = (Get-ChildItem "/proc/$PID/fd").Count }
                $churn = Start-BenchProcess -Name 'churn' -Command @('dotnet', $script:ToolDll, 'churn', '--port', $churnPort, '--proxy-port', $proxyPort,
                    '--target-port', $serverB.Port, '--slots', '1000', '--seconds', $ChurnSeconds, '--cut-every', '5', '--watch-stdin', '1') -ListenPort $proxyPort
                try {
                    $churnVia = New-QmTunnelHop "qmt+plain://127.0.0.1:$proxyPort" -Credential $script:BenchAdmin
                    $null = New-QmTunnel bench-churn -Listen "tcp://127.0.0.1:$churnPort" -Via $churnVia -Target "tcp://127.0.0.1:$echoPort" -MaxConnections 20000 | Start-QmTunnel
                    $script:Commands.Add("tunnel: New-QmTunnel bench-churn -Listen tcp://127.0.0.1:$churnPort -Via $churnVia -Target tcp://127.0.0.1:$echoPort -MaxConnections 20000 | Start-QmTunnel")
                    $samples = [System.Collections.Generic.List[long]]::new()
                    while (-not $churn.Process.HasExited) {
                        $samples.Add((Get-RssKiB $serverB.ProcessId))
                        Start-Sleep -Seconds 5
                    }
                    $text = Get-Content -Raw -LiteralPath $churn.Log
                    $json = ($text -split "`n" | Where-Object { $_.TrimStart().StartsWith('{') } | Select-Object -Last 1)
                    if ($churn.Process.ExitCode -ne 0 -or -not $json) { throw "the churn client failed (exit $($churn.Process.ExitCode)): $text" }
                    $result = $json | ConvertFrom-Json
                    try { Wait-Until { (Get-QmTunnelStats bench-churn).ConnectionsCurrent -eq 0 } 120 'the churned connections to close' } catch { Write-Verbose $_ }
                    Start-Sleep -Seconds 2
                    [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [GC]::Collect()
                    $serverInfoB = Get-QmTunnelServer -Session $sessionB
                    $thirds = [math]::Max(1, [int]($samples.Count / 3))
                    [pscustomobject]@{
                        Done = $result.done; Failed = $result.failed; Cuts = $result.cuts; Seconds = $result.seconds; FirstError = $result.first_error
                        BRssStartMiB = [math]::Round($before.B / 1024, 1)
                        BRssFirstThirdMiB = [math]::Round(($samples | Select-Object -First $thirds | Measure-Object -Average).Average / 1024, 1)
                        BRssLastThirdMiB = [math]::Round(($samples | Select-Object -Last $thirds | Measure-Object -Average).Average / 1024, 1)
                        BRssEndMiB = [math]::Round((Get-RssKiB $serverB.ProcessId) / 1024, 1)
                        ARssStartMiB = [math]::Round($before.A / 1024, 1)
                        ARssEndMiB = [math]::Round((Get-RssKiB $PID) / 1024, 1)
                        BFdsStart = $before.BFds; BFdsEnd = (Get-ChildItem "/proc/$($serverB.ProcessId)/fd").Count
                        AFdsStart = $before.AFds; AFdsEnd = (Get-ChildItem "/proc/$PID/fd").Count
                        AOpenStreams = (Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }).OpenStreams; BOpenStreams = $serverInfoB.OpenStreams - 1
                    }
                }
                finally {
                    Stop-BenchProcess $churn -GraceSeconds 5
                    try { Remove-QmTunnel bench-churn -Confirm:$false } catch { Write-Verbose $_ }
                }
            }
            finally {
                Disconnect-QmTunnelServer $sessionB
            }
        }
    }

    if ($tunnelReady -and 'chain' -in $Include) {
        Write-QmStep "Chain: 3 hops (A2 -> X1 -> X2 -> X3) vs 1 hop (A2 -> X3), TLS links, iperf3 -t $Seconds x $ChainRounds each"
        $chainServers = [System.Collections.Generic.List[object]]::new()
        $chainSession = $null
        try {
            foreach ($n in 1..3) {
                $x = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $script:WorkDir "server-x$n")
                $chainServers.Add($x)
                $script:Commands.Add("server X$n (daemon, pid $($x.ProcessId)): Start-QmTunnelServer -Daemon -Port 0 -DataPath <temp>/server-x$n  -> $($x.Address)")
            }
            $chainHops = @($chainServers | ForEach-Object { New-QmTunnelHop "qmt://127.0.0.1:$($_.Port)" -Credential $script:BenchAdmin })
            # The tunnels belong to server A2 (a daemon, like the 'A as daemon too' rows): made through a TLS session to it.
            $chainSession = Connect-QmTunnelServer "qmt://127.0.0.1:$($serverA2.Port)" -Credential $script:BenchAdmin -CertificateThumbprint $serverA2.CertificateThumbprint
            $chainPorts = [ordered]@{ 'chain1' = Get-FreePort; 'chain3' = Get-FreePort }
            $null = New-QmTunnel bench-chain1 -Listen "tcp://127.0.0.1:$($chainPorts.chain1)" -Via $chainHops[2] -Target "tcp://127.0.0.1:$($script:IperfPort)" -Session $chainSession | Start-QmTunnel
            $null = New-QmTunnel bench-chain3 -Listen "tcp://127.0.0.1:$($chainPorts.chain3)" -Via $chainHops -Target "tcp://127.0.0.1:$($script:IperfPort)" -Session $chainSession | Start-QmTunnel
            $script:Commands.Add("tunnels on server A2 (-Session (Connect-QmTunnelServer qmt://127.0.0.1:$($serverA2.Port) -Credential admin -CertificateThumbprint ...)): New-QmTunnel bench-chain1 -Listen tcp://127.0.0.1:$($chainPorts.chain1) -Via $($chainHops[2]) -Target tcp://127.0.0.1:$($script:IperfPort) | Start-QmTunnel; New-QmTunnel bench-chain3 -Listen tcp://127.0.0.1:$($chainPorts.chain3) -Via $($chainHops -join ',') -Target tcp://127.0.0.1:$($script:IperfPort) | Start-QmTunnel")
            Wait-Until { (Test-Listening $chainPorts.chain1) -and (Test-Listening $chainPorts.chain3) } 20 'the chain tunnels to listen'
            foreach ($parallel in 1, 8) {
                $samples = @{ chain1 = [System.Collections.Generic.List[double]]::new(); chain3 = [System.Collections.Generic.List[double]]::new() }
                $cpu = @{ chain1 = [System.Collections.Generic.List[object]]::new(); chain3 = [System.Collections.Generic.List[object]]::new() }
                foreach ($round in 1..$ChainRounds) {
                    foreach ($path in 'chain1', 'chain3') {
                        # The servers' CPU time over the run (utime + stime, clock ticks of 1/100 s): what each byte costs.
                        $ids = if ($path -eq 'chain1') { @($serverA2.ProcessId, $chainServers[2].ProcessId) } else { @($serverA2.ProcessId) + @($chainServers | ForEach-Object ProcessId) }
                        $ticksBefore = @(Get-CpuTicks $ids)
                        $clock = [System.Diagnostics.Stopwatch]::StartNew()
                        Measure-Step "chainrun$parallel.$path.$round" "$parallel stream(s), $(if ($path -eq 'chain1') { '1 hop ' } else { '3 hops' }), round $round (Gbit/s)" {
                            Invoke-Iperf -Label "$path-P$parallel-$round" -Port $chainPorts[$path] -Parallel $parallel
                        }
                        $ticksAfter = @(Get-CpuTicks $ids)
                        $value = $results["chainrun$parallel.$path.$round"]
                        if ($value -isnot [string]) {
                            $samples[$path].Add([double]$value)
                            $shares = @(for ($i = 0; $i -lt $ids.Count; $i++) { ($ticksAfter[$i] - $ticksBefore[$i]) / 100.0 / $clock.Elapsed.TotalSeconds })
                            $cpu[$path].Add([pscustomobject]@{ Gbps = [double]$value; Total = ($shares | Measure-Object -Sum).Sum; Busiest = ($shares | Measure-Object -Maximum).Maximum })
                        }
                    }
                }
                foreach ($path in 'chain1', 'chain3') {
                    $results["stream$parallel.$path"] = if ($samples[$path].Count -gt 0) { ($samples[$path] | Measure-Object -Average).Average } else { 'error: no run succeeded' }
                    if ($cpu[$path].Count -gt 0) {
                        # Cores the servers used per Gbit/s carried, and the rate if the busiest server had a core of its own.
                        $results["cpu$parallel.$path"] = ($cpu[$path] | ForEach-Object { $_.Total / $_.Gbps } | Measure-Object -Average).Average
                        $results["owncore$parallel.$path"] = ($cpu[$path] | ForEach-Object { $_.Gbps / $_.Busiest } | Measure-Object -Average).Average
                    }
                }
            }
        }
        catch {
            $results['stream1.chain3'] = "error: $($_.Exception.Message)"
            $script:Errors.Add("chain set-up: $($_.Exception.Message)")
            Write-Host "   chain set-up failed: $($_.Exception.Message)" -ForegroundColor Red
        }
        finally {
            if ($chainSession) {
                foreach ($name in 'bench-chain1', 'bench-chain3') { try { Remove-QmTunnel $name -Session $chainSession -Confirm:$false } catch { Write-Verbose $_ } }
                try { Disconnect-QmTunnelServer $chainSession } catch { Write-Verbose $_ }
            }
            foreach ($x in $chainServers) { try { $x | Stop-QmTunnelServer -Confirm:$false } catch { Write-Warning "Stopping a chain server: $_" } }
        }
        $netnsProblem = Test-NetnsUsable
        if ($netnsProblem) {
            $results['hostsP1.skipped'] = $netnsProblem
            Write-Host "   chain on hosts skipped: $netnsProblem" -ForegroundColor Yellow
        }
        else {
            Write-QmStep "Chain on hosts of their own (namespaces): links of $ChainLinkMbit Mbit/s, then every server capped at $ChainCpuQuota of a core"
            Invoke-ChainHostsBench -Mode links -LinkMbit $ChainLinkMbit -Rounds $ChainRounds
            if (Test-Path '/sys/fs/cgroup/cpu/cpu.cfs_quota_us') {
                Invoke-ChainHostsBench -Mode cpu -CpuQuota $ChainCpuQuota -Rounds $ChainRounds
            }
            else {
                $results['hostsP1.cpu.skipped'] = 'no cgroup v1 cpu controller at /sys/fs/cgroup/cpu'
            }
        }
    }

    if ('flood' -in $Include) {
        Write-QmStep "Connection flood: $FloodConnections connections that never log in, for $FloodSeconds s, against a daemon"
        Measure-Step 'flood' 'flood against server F (memory, login, caps)' { Measure-Flood }
        foreach ($mode in 'silent', 'plain', 'clienthello', 'tls') {
            Measure-Step "pending.$mode" "1,000 waiting connections, $mode (KiB each)" { Measure-PendingCost $mode }
        }
    }
}
catch {
    $script:Errors.Add($_.Exception.Message)
    Write-Host "Benchmark set-up failed: $($_.Exception.Message)" -ForegroundColor Red
}
finally {
    Write-QmStep 'Stopping everything the benchmark started'
    if ($serverAStarted) {
        try { Stop-QmTunnelServer -Confirm:$false } catch { Write-Warning "Stopping server A: $_" }
    }
    if ($serverA2) {
        try { $serverA2 | Stop-QmTunnelServer -Confirm:$false } catch { Write-Warning "Stopping server A2: $_" }
    }
    if ($serverB) {
        try { $serverB | Stop-QmTunnelServer -Confirm:$false } catch { Write-Warning "Stopping server B: $_" }
    }
    # Last started, first stopped: clients (ssh, stunnel client) before their servers.
    $running = @($script:Background)
    [array]::Reverse($running)
    foreach ($entry in $running) { Stop-BenchProcess $entry -GraceSeconds 3 }
    Remove-Item -LiteralPath $script:WorkDir -Recurse -Force -ErrorAction Ignore
}

#region report
function Get-Figure([string]$Key, [string]$Property) {
    if (-not $results.ContainsKey($Key)) { return $null }
    $value = $results[$Key]
    if ($value -is [string]) { return $value }
    if ($Property) { return $value.$Property }
    $value
}

function Format-Cell($Value, [string]$Format = '0.##') {
    if ($null -eq $Value) { return 'n/a' }
    if ($Value -is [string]) { return 'error' }
    $Value.ToString($Format, [cultureinfo]::InvariantCulture)
}

function Get-Ratio($Tunnel, $Reference) {
    if ($Tunnel -isnot [double] -and $Tunnel -isnot [decimal] -and $Tunnel -isnot [int] -and $Tunnel -isnot [long]) { return $null }
    if ($Reference -isnot [double] -and $Reference -isnot [decimal] -and $Reference -isnot [int] -and $Reference -isnot [long]) { return $null }
    if ([double]$Reference -eq 0) { return $null }
    [double]$Tunnel / [double]$Reference
}

$rows = [System.Collections.Generic.List[string]]::new()
$rows.Add('| Measurement | direct | socat | qmTunnel | qmTunnel / socat | goal | met |')
$rows.Add('|---|---:|---:|---:|---:|---|---|')
function Add-Row([string]$Name, $Direct, $Socat, $Tunnel, [string]$Goal, [scriptblock]$Met, [string]$Format = '0.##') {
    if ($null -eq $Direct -and $null -eq $Socat -and $null -eq $Tunnel) { return }
    $ratio = Get-Ratio $Tunnel $Socat
    $ratioText = if ($null -eq $ratio) { 'n/a' } else { $ratio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }
    $metText = if ($Met -and $null -ne $ratio) { if (& $Met $ratio $Tunnel) { 'yes' } else { '**no**' } } elseif ($Met) { 'n/a' } else { '' }
    $rows.Add("| $Name | $(Format-Cell $Direct $Format) | $(Format-Cell $Socat $Format) | $(Format-Cell $Tunnel $Format) | $ratioText | $Goal | $metText |")
}
Add-Row 'Throughput, 1 stream (Gbit/s)' (Get-Figure 'stream1.direct') (Get-Figure 'stream1.socat') (Get-Figure 'stream1.tunnel') '≥ 1.8 × socat' { param($r) $r -ge 1.8 }
Add-Row 'Throughput, 8 streams (Gbit/s)' (Get-Figure 'stream8.direct') (Get-Figure 'stream8.socat') (Get-Figure 'stream8.tunnel') 'reported' $null
Add-Row 'Ping-pong 64 B, median (µs)' (Get-Figure 'ping.direct' 'median_us') (Get-Figure 'ping.socat' 'median_us') (Get-Figure 'ping.tunnel' 'median_us') 'reported (lower is better)' $null '0.0'
Add-Row 'Ping-pong 64 B, p99 (µs)' (Get-Figure 'ping.direct' 'p99_us') (Get-Figure 'ping.socat' 'p99_us') (Get-Figure 'ping.tunnel' 'p99_us') 'reported (lower is better)' $null '0.0'
Add-Row 'Connect + first byte, median (µs)' (Get-Figure 'connect.direct' 'median_us') (Get-Figure 'connect.socat' 'median_us') (Get-Figure 'connect.tunnel' 'median_us') 'reported (lower is better)' $null '0.0'
Add-Row 'Connect + first byte, p99 (µs)' (Get-Figure 'connect.direct' 'p99_us') (Get-Figure 'connect.socat' 'p99_us') (Get-Figure 'connect.tunnel' 'p99_us') 'reported (lower is better)' $null '0.0'
Add-Row 'Throughput, 1 stream, A as daemon too (Gbit/s)' (Get-Figure 'stream1.direct') (Get-Figure 'stream1.socat') (Get-Figure 'stream1.daemons') '≥ 1.8 × socat' { param($r) $r -ge 1.8 }
Add-Row 'Throughput, 8 streams, A as daemon too (Gbit/s)' (Get-Figure 'stream8.direct') (Get-Figure 'stream8.socat') (Get-Figure 'stream8.daemons') 'reported' $null
Add-Row 'Ping-pong 64 B, median, A as daemon too (µs)' (Get-Figure 'ping.direct' 'median_us') (Get-Figure 'ping.socat' 'median_us') (Get-Figure 'ping.daemons' 'median_us') 'reported (lower is better)' $null '0.0'
Add-Row 'Connect + first byte, median, A as daemon too (µs)' (Get-Figure 'connect.direct' 'median_us') (Get-Figure 'connect.socat' 'median_us') (Get-Figure 'connect.daemons' 'median_us') 'reported (lower is better)' $null '0.0'
Add-Row 'UDP echo 64 B, 64 in flight (datagrams/s)' (Get-Figure 'udp64.direct' 'DatagramsPerS') (Get-Figure 'udp64.socat' 'DatagramsPerS') (Get-Figure 'udp64.tunnel' 'DatagramsPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
Add-Row 'UDP echo 1,400 B, 64 in flight (datagrams/s)' (Get-Figure 'udp1400.direct' 'DatagramsPerS') (Get-Figure 'udp1400.socat' 'DatagramsPerS') (Get-Figure 'udp1400.tunnel' 'DatagramsPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
Add-Row 'UDP echo 1,400 B, 64 in flight (Mbit/s each way)' (Get-Figure 'udp1400.direct' 'MbitPerS') (Get-Figure 'udp1400.socat' 'MbitPerS') (Get-Figure 'udp1400.tunnel' 'MbitPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
Add-Row 'UDP echo 64 B, 64 in flight, A as daemon too (datagrams/s)' (Get-Figure 'udp64.direct' 'DatagramsPerS') (Get-Figure 'udp64.socat' 'DatagramsPerS') (Get-Figure 'udp64.daemons' 'DatagramsPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
Add-Row 'UDP echo 1,400 B, 64 in flight, A as daemon too (datagrams/s)' (Get-Figure 'udp1400.direct' 'DatagramsPerS') (Get-Figure 'udp1400.socat' 'DatagramsPerS') (Get-Figure 'udp1400.daemons' 'DatagramsPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
Add-Row 'UDP echo 1,400 B, 64 in flight, A as daemon too (Mbit/s each way)' (Get-Figure 'udp1400.direct' 'MbitPerS') (Get-Figure 'udp1400.socat' 'MbitPerS') (Get-Figure 'udp1400.daemons' 'MbitPerS') '≥ 1 × socat' { param($r) $r -ge 1 } '0'
foreach ($count in $IdleCounts | Where-Object { $results.ContainsKey("idle.$_") }) {
    $idleResult = if ($results.ContainsKey("idle.$count")) { $results["idle.$count"] } else { $null }
    foreach ($side in @(@{ Name = 'A (in-process, pwsh)'; Property = 'AKiBPer' }, @{ Name = 'B (daemon)'; Property = 'BKiBPer' })) {
        $value = if ($idleResult -is [string]) { $idleResult } elseif ($idleResult) { [double]$idleResult.($side.Property) } else { $null }
        $complete = $idleResult -and $idleResult -isnot [string] -and $idleResult.Failed -eq 0 -and $idleResult.InTunnel -ge $idleResult.Opened
        $met = if ($value -isnot [double]) { 'n/a' } elseif (-not $complete) { 'n/a: connections lost' } elseif ($value -lt 16) { 'yes' } else { '**no**' }
        $opened = if ($idleResult -and $idleResult -isnot [string]) { " ($($idleResult.Opened) of $count open, $($idleResult.InTunnel) counted by the tunnel)" } else { '' }
        $rows.Add("| $('{0:N0}' -f $count) idle connections, RSS per connection, server $($side.Name) (KiB)$opened | | | $(Format-Cell $value '0.0') | | < 16 KiB | $met |")
    }
}
# Only the groups that ran have rows (-Include chain alone fills none of this table).
$table = if ($rows.Count -gt 2) { $rows -join "`n" } else { $null }

$resume = if ($results.ContainsKey('resume')) { $results['resume'] } else { $null }
$resumeText = if ($resume -is [string]) { "Resume measurement failed: $resume" } elseif ($resume) {
    @(
        '| Measurement | qmTunnel |'
        '|---|---:|'
        "| From a reset of the link to the next echo through the tunnel, median (ms) | $(Format-Cell $resume.median_ms '0.0') |"
        "| Same, p99 (ms) | $(Format-Cell $resume.p99_ms '0.0') |"
        "| Same, fastest / slowest (ms) | $(Format-Cell $resume.min_ms '0.0') / $(Format-Cell $resume.max_ms '0.0') |"
        "| Connections through the proxy (the first, then one per cut) | $($resume.connections_proxied) |"
        ''
        "- Tunnel bench-resume on server A (in this pwsh) -> a proxy run by ``qmtunnel-bench resume-probe`` -> server B -> echo. The probe keeps one connection busy with 1-byte round trips; $($resume.cuts) times it resets every proxied connection (RST both ways) and times until the next echo arrives: A notices, reconnects at once (the hop's backoff, 100 ms × 1.5 ± 20 %, only after a failed attempt), logs in, resumes, and both sides resend what the other lacked. The application connection survived every cut (the probe fails otherwise)."
    ) -join "`n"
}

$recovery = if ($results.ContainsKey('recovery')) { $results['recovery'] } else { $null }
$recoveryText = if ($recovery -is [string]) { "Recovery measurement failed: $recovery" } elseif ($recovery) {
    @(
        '| Measurement | qmTunnel |'
        '|---|---:|'
        "| From the far server listening again to the permanent tunnel Established, median of $($recovery.Rounds) (ms) | $($recovery.MedianMs) |"
        "| Same, fastest / slowest (ms) | $($recovery.MinMs) / $($recovery.MaxMs) |"
        ''
        "- Tunnel bench-recovery (-Permanent) on server A -> server R (a daemon). Each round: kill -9 of R, 2 s, Start-QmTunnelServer -Daemon on the same port and data folder (the time counted from when it returned: R listens), then Get-QmTunnel bench-recovery every 0.1 s or so until Established. A redials on the hop's backoff (100 ms × 1.5, at most 10 s, ± 20 %); R lost its sessions, so A starts a new one."
    ) -join "`n"
}

$churnResult = if ($results.ContainsKey('churn')) { $results['churn'] } else { $null }
$churnText = if ($churnResult -is [string]) { "Churn measurement failed: $churnResult" } elseif ($churnResult) {
    @(
        '| Measurement | qmTunnel |'
        '|---|---:|'
        "| Connections opened, echoed and closed ($($churnResult.Seconds) s, 1,000 at a time) | $('{0:N0}' -f $churnResult.Done) |"
        "| Of them failed | $($churnResult.Failed)$(if ($churnResult.FirstError) { " (first: $($churnResult.FirstError))" }) |"
        "| Resets of the link meanwhile | $($churnResult.Cuts) |"
        "| Server B (daemon) RSS: before / first third / last third / after (MiB) | $($churnResult.BRssStartMiB) / $($churnResult.BRssFirstThirdMiB) / $($churnResult.BRssLastThirdMiB) / $($churnResult.BRssEndMiB) |"
        "| Server A (in pwsh, after a full GC) RSS: before / after (MiB) | $($churnResult.ARssStartMiB) / $($churnResult.ARssEndMiB) |"
        "| Open file descriptors, B: before / after; A: before / after | $($churnResult.BFdsStart) / $($churnResult.BFdsEnd); $($churnResult.AFdsStart) / $($churnResult.AFdsEnd) |"
        "| Streams open afterwards, A / B (B: besides the request that asks) | $($churnResult.AOpenStreams) / $($churnResult.BOpenStreams) |"
        ''
        "- ``qmtunnel-bench churn``: 1,000 workers, each connecting through tunnel bench-churn (server A -> the churn tool's proxy -> server B -> echo), echoing 2 bytes and closing, over and over; every 5 s the proxy resets every link connection (RST both ways), and the link session resumes each time. B's RSS sampled every 5 s."
    ) -join "`n"
}

$socksText = if ($results.ContainsKey('socks5.fixed')) {
    @(
        '| Measurement | fixed-target tunnel, first | socks5, an address | socks5, a name (resolved by B) | fixed-target tunnel, last | socks5 address / fixed last |'
        '|---|---:|---:|---:|---:|---:|'
        foreach ($stat in 'median_us', 'p99_us') {
            $address = Get-Figure 'socks5.address' $stat
            $ratio = Get-Ratio $address (Get-Figure 'socks5.fixed2' $stat)
            "| Connect + first byte, $($stat -replace '_us$', '') (µs) | $(Format-Cell (Get-Figure 'socks5.fixed' $stat) '0.0') | $(Format-Cell $address '0.0') | $(Format-Cell (Get-Figure 'socks5.name' $stat) '0.0') | $(Format-Cell (Get-Figure 'socks5.fixed2' $stat) '0.0') | $(if ($null -eq $ratio) { 'n/a' } else { $ratio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }) |"
        }
        ''
        "- Same run, same path (client -> server A in pwsh -> one qmt+plain link -> server B daemon -> echo): bench-echo (tcp://, fixed target) and bench-socks (socks5://), measured in the order of the columns. $ConnectCount new connections each after 50 untimed, each timed from connect() to its 1-byte echo; through socks5 the client sends the greeting and the CONNECT together and reads both replies before its byte. The owner answers the SOCKS client only after B's OpenAck (the reply must tell the outcome), so a socks5 connection waits one round trip of the chain before its first byte, where a fixed-target one sends its byte behind the Open at once. The first column also warms the path (JIT, pools) for the others: compare with the last."
    ) -join "`n"
} else { $null }

$flood = if ($results.ContainsKey('flood')) { $results['flood'] } else { $null }
$floodTable = if ($flood -is [string]) { "Flood measurement failed: $flood" } elseif ($flood) {
    @(
        '| Measurement | server F (daemon, default limits) |'
        '|---|---:|'
        "| Connections the flood keeps open (2 processes, 40 source addresses; each reopened when the server closes it) | $('{0:N0}' -f $FloodConnections) |"
        "| Connections the flood opened in $FloodSeconds s | $('{0:N0}' -f $flood.Attempts) |"
        "| Resident memory before (MiB) | $($flood.RssBeforeMiB) |"
        "| Resident memory, most during the flood (MiB) | $($flood.RssMaxMiB) |"
        "| Resident memory 5 s after the flood (MiB) | $($flood.RssAfterMiB) |"
        "| Login from another address during the flood (ms) | $($flood.LoginMs) |"
        "| Connections waiting for their login, most at once (MaxPendingLinks 1000) | $($flood.PendingPeak) |"
        "| New connections closed at once (MaxPendingLinksPerSource 64) | $('{0:N0}' -f $flood.Refused) |"
        "| Waiting connections closed to make room, oldest first | $('{0:N0}' -f $flood.Evicted) |"
        "| Lines the server's log grew by | $($flood.LogLines) |"
        "| Server alive afterwards | $(if ($flood.Alive) { 'yes' } else { '**no**' }) |"
        foreach ($mode in @(@{ Key = 'silent'; Text = 'connected, sent nothing' }, @{ Key = 'plain'; Text = 'plain link, Hello sent, no login' },
                @{ Key = 'clienthello'; Text = 'TLS ClientHello sent, handshake not finished' }, @{ Key = 'tls'; Text = 'TLS up, Hello sent, no login' })) {
            $cost = if ($results.ContainsKey("pending.$($mode.Key)")) { $results["pending.$($mode.Key)"] } else { $null }
            $value = if ($cost -is [string]) { 'error' } elseif ($cost) { "$($cost.KiBPer) ($($cost.Open) open)" } else { 'n/a' }
            "| Resident memory per waiting connection, $($mode.Text) (KiB; caps raised so none is closed) | $value |"
        }
    ) -join "`n"
} else { $null }

# The encrypted comparison: one row per goal, the ratio and verdict for each qmTunnel variant (A in pwsh, A daemon).
$tlsRows = [System.Collections.Generic.List[string]]::new()
$tlsRows.Add('| Measurement | stunnel | ssh -L | qmTunnel, A in pwsh | qmTunnel, A daemon | goal | ratio, A in pwsh | met | ratio, A daemon | met |')
$tlsRows.Add('|---|---:|---:|---:|---:|---|---:|---|---:|---|')
function Add-TlsRow([string]$Name, [string]$Key, [string]$Property, [string]$Reference, [string]$Goal, [scriptblock]$Met, [string]$Format = '0.##') {
    $figure = { param($path) if ($Property) { Get-Figure "$Key.$path" $Property } else { Get-Figure "$Key.$path" } }
    $stunnel = & $figure 'stunnel'
    $ssh = & $figure 'ssh'
    $inPwsh = & $figure 'tls'
    $daemon = & $figure 'tls-daemons'
    if ($null -eq $stunnel -and $null -eq $ssh -and $null -eq $inPwsh -and $null -eq $daemon) { return }
    $referenceValue = if ($Reference -eq 'stunnel') { $stunnel } else { $ssh }
    $cells = foreach ($value in $inPwsh, $daemon) {
        $ratio = Get-Ratio $value $referenceValue
        if ($null -eq $ratio) { 'n/a'; if ($Met) { 'n/a' } else { '' }; continue }
        $ratioText = $ratio.ToString('0.00', [cultureinfo]::InvariantCulture)
        # One more digit when the rounded ratio would read as meeting the goal it misses (or the reverse).
        if ($Met -and (& $Met $ratio) -ne (& $Met ([double]$ratioText))) { $ratioText = $ratio.ToString('0.000', [cultureinfo]::InvariantCulture) }
        $ratioText + '×'
        if (-not $Met) { '' } elseif (& $Met $ratio) { 'yes' } else { '**no**' }
    }
    $tlsRows.Add("| $Name | $(Format-Cell $stunnel $Format) | $(Format-Cell $ssh $Format) | $(Format-Cell $inPwsh $Format) | $(Format-Cell $daemon $Format) | $Goal | $($cells -join ' | ') |")
}
Add-TlsRow 'TLS throughput, 1 stream (Gbit/s): qmTunnel / stunnel' 'stream1' $null 'stunnel' '≥ 1.2 × stunnel' { param($r) $r -ge 1.2 }
Add-TlsRow 'TLS throughput, 1 stream (Gbit/s): qmTunnel / ssh' 'stream1' $null 'ssh' '≥ 1.0 × ssh' { param($r) $r -ge 1.0 }
Add-TlsRow 'TLS ping-pong 64 B, median (µs): qmTunnel / ssh' 'ping' 'median_us' 'ssh' '≤ 0.8 × ssh' { param($r) $r -le 0.8 } '0.0'
Add-TlsRow 'TLS ping-pong 64 B, p99 (µs): qmTunnel / ssh' 'ping' 'p99_us' 'ssh' 'reported (lower is better)' $null '0.0'
Add-TlsRow 'Connect + first echo, median (µs): qmTunnel / ssh' 'connect' 'median_us' 'ssh' '≤ 0.8 × ssh' { param($r) $r -le 0.8 } '0.0'
Add-TlsRow 'Connect + first echo, p99 (µs): qmTunnel / ssh' 'connect' 'p99_us' 'ssh' 'reported (lower is better)' $null '0.0'
Add-TlsRow 'TLS ping-pong 64 B, median (µs): qmTunnel / stunnel' 'ping' 'median_us' 'stunnel' 'reported (lower is better)' $null '0.0'
Add-TlsRow 'Connect + first echo, median (µs): qmTunnel / stunnel' 'connect' 'median_us' 'stunnel' 'reported (lower is better)' $null '0.0'
$tlsTable = if ($tlsRows.Count -gt 2) { $tlsRows -join "`n" } else { $null }
$compressionTable = if ($results.ContainsKey('compression')) { Format-CompressionTable $results['compression'] } else { $null }

# The chain: 3 hops against 1 hop, both owned by server A2, same run.
$chainRows = [System.Collections.Generic.List[string]]::new()
$chainRows.Add('| Measurement | 1 hop | 3 hops | 3 hops / 1 hop | goal | met |')
$chainRows.Add('|---|---:|---:|---:|---|---|')
foreach ($parallel in 1, 8) {
    $one = Get-Figure "stream$parallel.chain1"
    $three = Get-Figure "stream$parallel.chain3"
    if ($null -eq $one -and $null -eq $three) { continue }
    $ratio = Get-Ratio $three $one
    $ratioText = if ($null -eq $ratio) { 'n/a' } else { $ratio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }
    $goal = if ($parallel -eq 1) { '≥ 0.8 × 1 hop' } else { 'reported' }
    $met = if ($parallel -ne 1) { '' } elseif ($null -eq $ratio) { 'n/a' } elseif ($ratio -ge 0.8) { 'yes' } else { '**no**' }
    $chainRows.Add("| TLS throughput, $parallel stream$(if ($parallel -gt 1) { 's' }) (Gbit/s) | $(Format-Cell $one) | $(Format-Cell $three) | $ratioText | $goal | $met |")
}
foreach ($row in @(@{ Key = 'cpu1'; Name = 'Server CPU per Gbit/s carried, 1 stream (cores; lower is better)'; Format = '0.000' },
        @{ Key = 'owncore1'; Name = 'Estimate with a core per server: Gbit/s over the busiest server''s share of a core, 1 stream'; Format = '0.##' })) {
    $one = Get-Figure "$($row.Key).chain1"
    $three = Get-Figure "$($row.Key).chain3"
    if ($null -eq $one -or $null -eq $three) { continue }
    $ratio = Get-Ratio $three $one
    $ratioText = if ($null -eq $ratio) { 'n/a' } else { $ratio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }
    $chainRows.Add("| $($row.Name) | $(Format-Cell $one $row.Format) | $(Format-Cell $three $row.Format) | $ratioText | reported |  |")
}
# The chain on hosts of their own (namespaces): links limited, then servers capped.
foreach ($mode in 'links', 'cpu') {
    $one = Get-Figure "hostsP1.$mode.chain1"
    $three = Get-Figure "hostsP1.$mode.chain3"
    if ($null -eq $one -and $null -eq $three) { continue }
    $ratio = Get-Ratio $three $one
    $ratioText = if ($null -eq $ratio) { 'n/a' } else { $ratio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }
    $met = if ($null -eq $ratio) { 'n/a' } elseif ($ratio -ge 0.8) { 'yes' } else { '**no**' }
    $name = if ($mode -eq 'links') { "TLS throughput, 1 stream, a host per server, links of $ChainLinkMbit Mbit/s (Gbit/s)" } else { "TLS throughput, 1 stream, a host per server, each capped at $ChainCpuQuota of a core (Gbit/s)" }
    $chainRows.Add("| $name | $(Format-Cell $one) | $(Format-Cell $three) | $ratioText | ≥ 0.8 × 1 hop | $met |")
    $cpuOne = Get-Figure "cpuP1.$mode.chain1"
    $cpuThree = Get-Figure "cpuP1.$mode.chain3"
    if ($null -ne $cpuOne -and $null -ne $cpuThree) {
        $cpuRatio = Get-Ratio $cpuThree $cpuOne
        $chainRows.Add("| Server CPU per Gbit/s carried, the row above (cores; lower is better) | $(Format-Cell $cpuOne '0.000') | $(Format-Cell $cpuThree '0.000') | $(if ($null -eq $cpuRatio) { 'n/a' } else { $cpuRatio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }) | reported |  |")
    }
    $socatOne = Get-Figure "socatP1.$mode.chain1"
    $socatThree = Get-Figure "socatP1.$mode.chain3"
    if ($null -ne $socatOne -or $null -ne $socatThree) {
        $socatRatio = Get-Ratio $socatThree $socatOne
        $chainRows.Add("| socat TLS relays, the same hosts (Gbit/s) | $(Format-Cell $socatOne) | $(Format-Cell $socatThree) | $(if ($null -eq $socatRatio) { 'n/a' } else { $socatRatio.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' }) | reported |  |")
    }
}
$linkAlone = Get-Figure 'hostsP1.links.link'
$chainTable = if ($chainRows.Count -gt 2) { $chainRows -join "`n" } else { $null }
$chainNotes = @(
    "- Both tunnels belong to server A2 (a qmtunnel-server daemon): bench-chain1 -> X3 -> iperf3, bench-chain3 -> X1 -> X2 -> X3 -> iperf3; X1-X3 are daemons started for this group, every link TLS (qmt://, pinned on first use). A chain's later hops log in with keys the owner sends inside the Open, which never cross a plain link, so the comparison is TLS against TLS."
    "- Each figure is the mean of $ChainRounds iperf3 runs of $Seconds s (after $script:WarmUpSeconds s not counted), the two paths alternated. All four servers, iperf3 and its client share this machine's cores: a 3-hop chain on loopback does the work of three links (three TLS encryptions and decryptions of every byte) on the same CPUs, where on real hosts each gateway has its own."
    "- CPU rows: the CPU time (utime + stime from /proc) of the servers of each path over each iperf3 run (its warm-up and set-up included), divided by the run's wall time and rate: cores used per Gbit/s carried. The estimate divides the rate by the busiest server's share of a core: what the path would carry if each server had a core of its own, as on separate hosts (iperf3 itself left out); an estimate, not a measurement."
    "- Rows 'a host per server' (bench/Measure-ChainLinks.ps1): each server in a network namespace of its own, joined to its neighbours by veth pairs with no forwarding (A - X1 - X2 - X3, and A - X3 for the 1-hop path; iperf3's client in A, its server in X3), every link TLS. 'links of N Mbit/s': each veth end shaped with tc tbf (rate N, burst 512 KiB), as on a network where the link is the limit; iperf3 over one such link without a tunnel: $(if ($null -ne $linkAlone) { (Format-Cell $linkAlone) + ' Gbit/s' } else { 'n/a' }). 'capped at Q of a core': links unlimited, each daemon in a cgroup of its own (v1 cpu.cfs_quota_us of 1 ms per period of 1 ms / share, so the cap acts like a slower CPU rather than stopping a server for most of each 100 ms), as hosts of equal power; a gateway decrypts and encrypts every byte again, so it does about twice an end server's TLS work. No latency is added (tc netem is not in this kernel). The socat rows: the same hosts, links and caps, with socat TLS relays instead (A: TCP-LISTEN -> OPENSSL; X1, X2: OPENSSL-LISTEN -> OPENSSL in one process, as a qmTunnel gateway; X3: OPENSSL-LISTEN -> TCP; each host's socat in that host's cgroup), after qmTunnel's runs."
)

if ($results.ContainsKey('hostsP1.skipped')) { $chainNotes += "- Rows 'a host per server' not measured: $($results['hostsP1.skipped'])." }
elseif ($results.ContainsKey('hostsP1.cpu.skipped')) { $chainNotes += "- Row 'capped at a share of a core' not measured: $($results['hostsP1.cpu.skipped'])." }

$cpu = ([System.IO.File]::ReadAllLines('/proc/cpuinfo') | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', ''
$machine = "nproc $([Environment]::ProcessorCount), CPU $cpu, $([math]::Round(((Get-Content /proc/meminfo -TotalCount 1) -split '\s+')[1] / 1MB, 1)) GiB RAM, Linux $((& uname -r)), load average $(((Get-Content /proc/loadavg) -split ' ')[0..2] -join ' ') at the end"
$versions = "qmTunnel $((Get-QmVersion).Text), .NET $([Environment]::Version), PowerShell $($PSVersionTable.PSVersion), $((& iperf3 --version 2>$null | Select-Object -First 1)), $(((& socat -V 2>$null) | Where-Object { $_ -like 'socat version*' } | Select-Object -First 1))"
if (-not $SkipTls) {
    $stunnelTool = if ($stunnelPair) { $stunnelPair.Tool } else { 'stunnel4' }
    $versions += ", $(Get-ToolVersion "$stunnelTool -version" '^stunnel \d'), $(Get-ToolVersion 'ssh -V' '^OpenSSH')"
}
$date = [DateTimeOffset]::UtcNow.ToString('yyyy-MM-dd HH:mm:ss', [cultureinfo]::InvariantCulture) + ' UTC'
$notes = @(
    "- One run, all on loopback (127.0.0.1). Tunnel path: client -> server A (in the bench's pwsh process) -> one qmt+plain link -> server B (qmtunnel-server daemon) -> target. Rows 'A as daemon too': the same tunnels served by server A2, a qmtunnel-server daemon (inline socket completions, which pwsh cannot have), -> server B."
    "- Throughput: iperf3 client -> server, $Seconds s after $script:WarmUpSeconds s not counted (iperf3 -O; the same for every path: TCP slow start, and the JIT of the .NET relays), received rate. Ping-pong: one connection, $PingCount round trips of 64 bytes after 1,000 untimed ones. Connect + first byte: $ConnectCount new connections, each timed from connect() to its 1-byte echo."
    "- Idle: the client opens the connections through the tunnel to an echo server (each echoes 1 byte first, so the whole path is up), then holds them. RSS per connection = (VmRSS with the connections open - VmRSS before) / connections; server A's process gets a full GC before each reading, server B's daemon is read as it is."
    "- Machine: 2 cores shared by the client, the relays, both servers and the target: absolute figures are low and noisy; the ratios from the same run are what the goals use."
)
if ($results.Keys | Where-Object { $_ -like 'udp*' }) {
    $notes += "- UDP: qmtunnel-bench udp-echo-load keeps 64 random-byte datagrams in flight for $Seconds s after 1 s not counted; a datagram without an answer for 50 ms counts as lost. The tunnel runs with the product's defaults: one qmt+plain hop, which compresses with LZ4 (frames of 512 B and more; random payloads do not compress, so tries back off to 1 frame in 16), datagrams waiting together coalesced into one Data frame (at most 16 KiB). Each figure is the median of 3 runs, the paths (direct, socat, tunnel, A as daemon too) measured in turn each round: one run swings by half with the machine's load (the tunnel's path wakes more processes per datagram than socat's), so the rounds say more than any one of them; every run is in the commands below."
}
$tlsNotes = @(
    "- Encrypted paths, same run, same iperf3 and echo targets. qmTunnel: client -> server A -> one TLS link (qmt://, the peer's certificate pinned on first use) -> server B -> target; 'A in pwsh' is server A in the bench's pwsh process, 'A daemon' is server A2, a qmtunnel-server daemon. Each new connection is a new stream on the open link: no handshake."
    "- stunnel: client (plain in, TLS out) -> stunnel server (TLS in, ECDSA P-256 certificate from openssl) -> target; stunnel's TLS defaults, TCP_NODELAY on both sides; a new connection is a new TLS handshake. ssh: ssh -N -L -c aes128-gcm@openssh.com to a private sshd on loopback (ed25519 keys); each new connection is a new channel on the open ssh connection."
    "- TLS as openssl s_client (defaults) negotiates it: $(if ($tlsSummary.Count) { ($tlsSummary.GetEnumerator() | ForEach-Object { "$($_.Key): $($_.Value)" }) -join '; ' } else { 'not probed' })."
    "- Ratios are qmTunnel / reference; for throughput higher is better, for times lower is better. Encrypted paths are measured with 1 stream only."
)
$errorsText = if ($script:Errors.Count -gt 0) { "`n## Errors`n`n" + (($script:Errors | ForEach-Object { "- $_" }) -join "`n") + "`n" } else { '' }
$markdown = @"
# qmTunnel benchmark

Date: $date
Machine: $machine
Versions: $versions
Run: ``bench/Invoke-QmTunnelBench.ps1 -Seconds $Seconds -PingCount $PingCount -ConnectCount $ConnectCount -IdleCounts $($IdleCounts -join ',') -FloodConnections $FloodConnections -FloodSeconds $FloodSeconds -Include $($Include -join ',')$(if ($SkipTunnel) { ' -SkipTunnel' })$(if ($SkipTls) { ' -SkipTls' })`` (``dotnet pwsh ./build.ps1 bench`` runs it with the defaults, open files limit $fileLimit)

$(if ($table) { "$table`n`n$($notes -join "`n")" } else { '(No row of the main table was measured: see the groups below.)' })
$(if ($tlsTable) { "`n## TLS: qmTunnel over a TLS link vs stunnel and ssh -L`n`n$tlsTable`n`n$($tlsNotes -join "`n")" })
$(if ($chainTable) { "`n## Chain: 3 hops vs 1 hop`n`n$chainTable`n`n$($chainNotes -join "`n")" })
$(if ($compressionTable) { "`n## Compression per hop`n`n$compressionTable`n`n- Server A (in the bench's pwsh) -> one qmt+plain link per row's compression -> server B (daemon) -> the echo target. One connection of qmtunnel-bench stream --mode echo for $Seconds s, after 1 s of each kind of data not counted: text is log-like lines (--data text), random is random bytes (--data random); the throughput is the application bytes echoed back. Wire bytes per application byte: what the hop's data frames took on the wire over what they carried, both directions, from Get-QmTunnelStats' hop 1 before and after (frame headers not counted). Both ends of a link compress what they send (B compresses the echo)." })
$(if ($resumeText) { "`n## Resume after a cut of the link`n`n$resumeText" })
$(if ($socksText) { "`n## Dynamic forwarding (SOCKS5)`n`n$socksText" })
$(if ($churnText) { "`n## Churn through cuts`n`n$churnText" })
$(if ($recoveryText) { "`n## Recovery after kill -9 of the far server`n`n$recoveryText" })
$(if ($floodTable) { "`n## Connection flood: connections that never log in`n`n$floodTable`n`n- Server F is a qmtunnel-server daemon started with Start-QmTunnelServer -Daemon and the default limits. The flood: qmtunnel-bench flood (silent connections, and TLS ClientHellos that leave the server inside its TLS handshake), sources bound to 127.0.0.x; memory is VmRSS of F's process, sampled every 500 ms; the login is Connect-QmTunnelServer from 127.0.0.1 halfway through. The memory after stays near the most during: the .NET heap keeps what it grew to until later collections.`n- Per waiting connection: another daemon for each row, started with --max-pending-links and --max-pending-links-per-source of 2,000 so none is closed; 1,000 connections by qmtunnel-bench flood from 40 addresses; (VmRSS 1 s after all are open - VmRSS before) / connections open. Most of a TLS one is OpenSSL's handshake state." })
$errorsText
## Commands run

``````
$($script:Commands -join "`n")
``````
"@

Write-QmStep 'Results'
if ($table) { Write-Host $table }
if ($tlsTable) {
    Write-Host ''
    Write-Host $tlsTable
}
if ($floodTable) {
    Write-Host ''
    Write-Host $floodTable
}
if ($chainTable) {
    Write-Host ''
    Write-Host $chainTable
}
if ($compressionTable) {
    Write-Host ''
    Write-Host $compressionTable
}
$null = New-Item -ItemType Directory -Path (Split-Path -Parent $OutFile) -Force
Set-Content -LiteralPath $OutFile -Value $markdown -Encoding utf8NoBOM
Write-Host ''
Write-Host "Written to $OutFile"
if ($script:Errors.Count -gt 0) {
    Write-Host "$($script:Errors.Count) measurement(s) failed: see $OutFile" -ForegroundColor Red
    exit 1
}
exit 0
#endregion

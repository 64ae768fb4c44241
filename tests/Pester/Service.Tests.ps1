#Requires -Version 7.4
<#
    qmtunnel-server as a service, with the BUILT module and its daemon (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH, and
    the daemon/ folder next to it):
    - the staged systemd unit daemon/qmtunnel-server.service has the documented safe defaults and passes
      `systemd-analyze verify` (skipped where systemd-analyze is missing); a broken copy does not, so the check can fail;
    - Type=notify: started by a parent named "systemd" with NOTIFY_SOCKET set (what the Generic Host looks for), the
      daemon sends READY=1 only once its port accepts connections, logs in the journal's format, sends STOPPING=1 on
      SIGTERM and exits 0;
    - a daemon from Start-QmTunnelServer -Daemon, with a tunnel's link open through it, stops gracefully on
      `kill -TERM`: exit code 0 within 15 s, its log has the stopping line and the engine's stopped line;
    - the command line: --help prints the usage (exit 0); a bad or unknown option exits 2 naming it; QMTUNNEL_
      variables are read, the command line wins over them, and an unprefixed PORT of the machine is not read;
    - a -Daemon started under umask 022 keeps its data folder 0700 and every file in it 0600 (the LiteDB log too),
      leaves no log after a clean stop, and the client's pins are owner-only; a data folder of another user is
      refused with DataPathInsecure (chown nobody: these tests run as root).
    Every process and server started here is stopped in AfterAll, even when a test fails; the folders are temp folders.
    Helpers: TestTools.cs (echo server, clients, free port).
#>

BeforeDiscovery {
    $onLinux = $IsLinux
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule -Force

    # The staged daemon and unit file, next to the module being tested.
    $daemonDir = Join-Path (Split-Path -Parent $modulePath) 'daemon'
    $daemonDll = Join-Path $daemonDir 'qmtunnel-server.dll'
    $unitFile = Join-Path $daemonDir 'qmtunnel-server.service'
    # The real dotnet (not a shim): the daemon runs on it, and the unit copy given to systemd-analyze names it.
    $dotnet = (Get-Command dotnet -CommandType Application -ErrorAction Stop | Select-Object -First 1).Source
    $dotnet = [IO.Path]::GetFullPath($dotnet)

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-service-$run"
    $null = New-Item -ItemType Directory -Path $base -Force
    # Processes this file starts itself (not through the module): killed in AfterAll if still running.
    $script:started = [System.Collections.Generic.List[System.Diagnostics.Process]]::new()


    # Runs a program to its end (at most $TimeoutSeconds) and returns its exit code, standard output and error.
    function Invoke-Program {
        param(
            [Parameter(Mandatory)][string]$FilePath,
            [string[]]$ArgumentList = @(),
            [hashtable]$Environment = @{},
            [int]$TimeoutSeconds = 60
        )
        $start = [System.Diagnostics.ProcessStartInfo]::new($FilePath)
        $start.UseShellExecute = $false
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $start.RedirectStandardInput = $true
        foreach ($arg in $ArgumentList) { $start.ArgumentList.Add($arg) }
        foreach ($name in $Environment.Keys) { $start.Environment[$name] = $Environment[$name] }
        $process = [System.Diagnostics.Process]::Start($start)
        $script:started.Add($process)
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            $process.Kill($true)
            throw "$FilePath $($ArgumentList -join ' ') did not end within $TimeoutSeconds s."
        }
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Output = $stdout.GetAwaiter().GetResult(); Error = $stderr.GetAwaiter().GetResult() }
    }

    # systemd-analyze verify on a unit file: its exit code, what it printed, and the lines about this unit (an
    # unknown key or a bad value is only a warning there, with exit code 0: for us it is a failure all the same).
    function Invoke-UnitVerify([string]$Path) {
        $result = Invoke-Program -FilePath 'systemd-analyze' -ArgumentList @('verify', $Path)
        $name = Split-Path -Leaf $Path
        $text = ($result.Output + "`n" + $result.Error).Trim()
        [pscustomobject]@{
            ExitCode = $result.ExitCode
            Text     = $text
            Problems = @($text -split "`r?`n" | Where-Object { $_ -and $_.Contains($name) })
        }
    }

    # A copy of the staged unit for systemd-analyze verify, which checks that ExecStart's program exists: run by this
    # machine's dotnet, on the staged daemon. $Edit changes the text further.
    function New-UnitCopy([string]$Folder, [scriptblock]$Edit = { $args[0] }) {
        $null = New-Item -ItemType Directory -Path $Folder -Force
        $text = Get-Content -LiteralPath $unitFile -Raw
        $text = $text -replace '(?m)^ExecStart=/usr/bin/dotnet /opt/qmtunnel/daemon/qmtunnel-server\.dll', "ExecStart=$dotnet $daemonDll"
        $text = & $Edit $text
        $copy = Join-Path $Folder 'qmtunnel-server.service'
        Set-Content -LiteralPath $copy -Value $text -Encoding utf8NoBOM -NoNewline
        $copy
    }

    # The unit's [Service] settings as name -> list of values (a setting may repeat).
    function Get-UnitSetting([string]$Path) {
        $settings = @{}
        $section = ''
        foreach ($line in Get-Content -LiteralPath $Path) {
            if ($line -match '^\s*(#|;|$)') { continue }
            if ($line -match '^\[(.+)\]\s*$') { $section = $Matches[1]; continue }
            if ($line -match '^([A-Za-z]+)=(.*)$') {
                $key = "$section.$($Matches[1])"
                if (-not $settings.ContainsKey($key)) { $settings[$key] = [System.Collections.Generic.List[string]]::new() }
                $settings[$key].Add($Matches[2])
            }
        }
        $settings
    }
}

AfterAll {
    foreach ($process in $script:started) {
        try {
            if (-not $process.HasExited) { $process.Kill($true); $null = $process.WaitForExit(5000) }
        }
        catch { Write-Verbose "already gone: $_" }
        $process.Dispose()
    }
    # Servers this file started through the module (by data path), even when a test failed half way.
    foreach ($server in @(Get-QmTunnelServer | Where-Object { $_.DataPath -like "$base*" })) {
        $server | Stop-QmTunnelServer -ErrorAction SilentlyContinue
        if ($server.ProcessId -and (Get-Process -Id $server.ProcessId -ErrorAction SilentlyContinue)) {
            Stop-Process -Id $server.ProcessId -Force -ErrorAction SilentlyContinue
        }
    }
    if ($base -and (Test-Path -LiteralPath $base)) {
        Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'The systemd unit daemon/qmtunnel-server.service' {
    BeforeAll {
        $settings = if (Test-Path -LiteralPath $unitFile) { Get-UnitSetting $unitFile } else { @{} }
        $analyze = Get-Command systemd-analyze -CommandType Application -ErrorAction Ignore | Select-Object -First 1
    }

    It 'is staged next to the daemon' {
        $unitFile | Should -Exist
        $daemonDll | Should -Exist
    }

    It 'is Type=notify and runs the daemon installed in /opt/qmtunnel/daemon on 127.0.0.1:9200, data in /var/lib/qmtunnel' {
        $settings['Service.Type'] | Should -Be @('notify')
        $settings['Service.ExecStart'] | Should -Be @('/usr/bin/dotnet /opt/qmtunnel/daemon/qmtunnel-server.dll --port 9200 --listen 127.0.0.1 --data-path /var/lib/qmtunnel')
        $settings['Service.StateDirectory'] | Should -Be @('qmtunnel')
        $settings['Install.WantedBy'] | Should -Be @('multi-user.target')
    }

    It 'stops with SIGTERM, gives it 20 s, restarts on failure' {
        $settings['Service.KillSignal'] | Should -Be @('SIGTERM')
        $settings['Service.TimeoutStopSec'] | Should -Be @('20')
        $settings['Service.Restart'] | Should -Be @('on-failure')
    }

    It 'runs unprivileged and hardened: its own user, no capabilities, read-only system but its state folder' {
        $settings['Service.DynamicUser'] | Should -Be @('yes')
        $settings['Service.CapabilityBoundingSet'] | Should -Be @('')
        $settings['Service.AmbientCapabilities'] | Should -Be @('')
        $settings['Service.NoNewPrivileges'] | Should -Be @('yes')
        $settings['Service.ProtectSystem'] | Should -Be @('strict')
        $settings['Service.ProtectHome'] | Should -Be @('yes')
        $settings['Service.PrivateTmp'] | Should -Be @('yes')
        $settings['Service.ReadWritePaths'] | Should -Be @('-/var/lib/qmtunnel')
        $settings['Service.LimitNOFILE'] | Should -Be @('65536')
        $settings['Service.Environment'] | Should -Contain 'DOTNET_CLI_TELEMETRY_OPTOUT=1'
    }

    It 'passes systemd-analyze verify' {
        if (-not $analyze) {
            Set-ItResult -Skipped -Because 'systemd-analyze is not on this machine (Debian: apt-get install systemd)'
            return
        }
        $copy = New-UnitCopy (Join-Path $base 'unit-good')
        $verify = Invoke-UnitVerify $copy
        $verify.ExitCode | Should -Be 0 -Because "systemd-analyze verify printed: $($verify.Text)"
        $verify.Problems | Should -BeNullOrEmpty -Because 'every line systemd-analyze prints about the unit is a problem in it'
    }

    It 'finds a broken copy broken (the check above can fail)' {
        if (-not $analyze) {
            Set-ItResult -Skipped -Because 'systemd-analyze is not on this machine (Debian: apt-get install systemd)'
            return
        }
        $bad = New-UnitCopy (Join-Path $base 'unit-bad') { $args[0] -replace '(?m)^Type=notify$', "Type=notifyy`nProtectSystm=strict" }
        $verify = Invoke-UnitVerify $bad
        $verify.Problems.Count | Should -BeGreaterOrEqual 2 -Because "systemd-analyze verify printed: $($verify.Text)"
        $verify.Text | Should -Match 'notifyy'
        $verify.Text | Should -Match 'ProtectSystm'
    }
}

Describe 'Type=notify under systemd' -Skip:(-not $onLinux) {
    BeforeAll {
        # The Generic Host takes itself for a systemd service when its parent process is named "systemd": a copy of
        # bash under that name plays the service manager, and a datagram socket at NOTIFY_SOCKET gets the messages.
        $folder = Join-Path $base 'notify'
        $null = New-Item -ItemType Directory -Path $folder -Force
        $fakeSystemd = Join-Path $folder 'systemd'
        Copy-Item -LiteralPath (Get-Command bash -CommandType Application | Select-Object -First 1).Source -Destination $fakeSystemd
        $socketPath = Join-Path $folder 'notify.sock'
        $socket = [System.Net.Sockets.Socket]::new([System.Net.Sockets.AddressFamily]::Unix, [System.Net.Sockets.SocketType]::Dgram,
            [System.Net.Sockets.ProtocolType]::Unspecified)
        $socket.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new($socketPath))
        $socket.ReceiveTimeout = 30000
        $buffer = [byte[]]::new(4096)
        function Receive-Notification {
            try {
                $n = $socket.Receive($buffer)
                [Text.Encoding]::UTF8.GetString($buffer, 0, $n)
            }
            catch [System.Net.Sockets.SocketException] {
                "no message within 30 s ($($_.Exception.SocketErrorCode)); the daemon printed: $(Get-Content -LiteralPath $outFile -Raw -ErrorAction Ignore)"
            }
        }

        $port = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $dataPath = Join-Path $folder 'data'
        $outFile = Join-Path $folder 'stdout.txt'
        # Not exec: the daemon must be the child of "systemd"; its stdout and stderr (the journal's) go to $outFile.
        $start = [System.Diagnostics.ProcessStartInfo]::new($fakeSystemd)
        $start.UseShellExecute = $false
        $start.RedirectStandardInput = $true
        foreach ($arg in @('-c', '"$1" "$2" --port "$3" --data-path "$4" >"$5" 2>&1; exit $?', 'systemd',
                $dotnet, $daemonDll, "$port", $dataPath, $outFile)) {
            $start.ArgumentList.Add($arg)
        }
        $start.Environment['NOTIFY_SOCKET'] = $socketPath
        $manager = [System.Diagnostics.Process]::Start($start)
        $script:started.Add($manager)

        $ready = Receive-Notification
        # At once, before anything else: did the port accept connections when READY=1 came?
        $probe = [System.Net.Sockets.TcpClient]::new()
        try {
            $probe.Connect('127.0.0.1', $port)
            $acceptedAtReady = if ($probe.Connected) { 'connected' } else { 'not connected' }
        }
        catch {
            $acceptedAtReady = "refused: $($_.Exception.Message)"
        }
        finally {
            $probe.Dispose()
        }
        $outAtReady = Get-Content -LiteralPath $outFile -Raw -ErrorAction Ignore
        $daemonPid = if ($outAtReady -match 'listening on \S+ \(pid (\d+)') { [int]$Matches[1] } else { 0 }
        $parentPid = if ($daemonPid -and (Test-Path "/proc/$daemonPid/status")) {
            [int]((Get-Content "/proc/$daemonPid/status" | Where-Object { $_ -like 'PPid:*' }) -replace '\D', '')
        }

        $clock = [Diagnostics.Stopwatch]::StartNew()
        if ($daemonPid) { & kill -TERM $daemonPid }
        $stopping = Receive-Notification
        $exited = $manager.WaitForExit(15000)
        $clock.Stop()
        $exitCode = if ($exited) { $manager.ExitCode }
        $out = Get-Content -LiteralPath $outFile -Raw -ErrorAction Ignore
    }

    AfterAll {
        if ($socket) { $socket.Dispose() }
    }

    It 'runs the daemon as the child of the service manager' {
        $daemonPid | Should -BeGreaterThan 0 -Because "the daemon printed: $outAtReady"
        $parentPid | Should -Be $manager.Id
    }

    It 'sends READY=1 only once its port accepts connections, after its "listening on" line' {
        $ready | Should -Be 'READY=1'
        # Compared as text: "refused: ..." is truthy, so -BeTrue would pass for a refused connection too.
        $acceptedAtReady | Should -Be 'connected'
        $outAtReady | Should -Match "qmtunnel-server listening on qmt(\+plain)?://127\.0\.0\.1:$port \(pid \d+, data "
    }

    It 'logs in the journal''s format: the syslog priority first, no timestamp' {
        $out | Should -Match '(?m)^<6>QmTunnel\.Engine\[\d+\] qmTunnel server listening on'
        $out | Should -Not -Match '(?m)^\d{4}-\d\d-\d\d '
    }

    It 'sends STOPPING=1 on SIGTERM, stops gracefully and exits 0 within 15 s' {
        $stopping | Should -Be 'STOPPING=1'
        $exited | Should -BeTrue
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
        $exitCode | Should -Be 0 -Because "the daemon printed: $out"
        $out | Should -Match 'qmTunnel server stopping'
        $out | Should -Match "qmTunnel server on port $port stopped"
    }
}

Describe 'SIGTERM to a daemon from Start-QmTunnelServer -Daemon' -Skip:(-not $onLinux) {
    BeforeAll {
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $daemonData = Join-Path $base 'daemon'
        $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath $daemonData
        # The exit code of the daemon can be read only through the Process object that started it, which the module
        # keeps (internal ServerRegistry.FindDaemon(pid).Process): read here by reflection.
        $registry = (Get-Command Start-QmTunnelServer).ImplementingType.Assembly.GetType('QmTunnel.PowerShell.ServerRegistry')
        $findDaemon = if ($registry) { $registry.GetMethod('FindDaemon', [Reflection.BindingFlags]'Static, Public, NonPublic') }
        $process = if ($findDaemon) { $findDaemon.Invoke($null, @($daemon.ProcessId)).Process }

        # An in-process server with a tunnel through the daemon (its own address: the default link, TLS): a link is
        # open when SIGTERM comes.
        $localData = Join-Path $base 'local'
        $null = Start-QmTunnelServer -Port 0 -DataPath $localData -PassThru
        $tunnel = New-QmTunnel through-daemon -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop $daemon.Address) -Target $echo.Uri | Start-QmTunnel -PassThru
        $before = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 64KB, 30)
        $logFile = Join-Path $daemonData 'qmtunnel-server.log'

        $clock = [Diagnostics.Stopwatch]::StartNew()
        & kill -TERM $daemon.ProcessId
        $exited = if ($process) { $process.WaitForExit(15000) } else { (Get-Process -Id $daemon.ProcessId -ErrorAction Ignore).WaitForExit(15000) }
        $clock.Stop()
        # Read at once: the module forgets (and disposes) the process of a daemon that exited when next asked.
        $exitCode = if ($process -and $exited) { $process.ExitCode }
        $log = Get-Content -LiteralPath $logFile -Raw -ErrorAction Ignore
    }

    AfterAll {
        if ($echo) { $echo.Dispose() }
        Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $localData } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    }

    It 'carried data through the daemon before' {
        $before.Intact | Should -BeTrue -Because "$before"
        $daemon.IsDaemon | Should -BeTrue
    }

    It 'exits within 15 s' {
        $exited | Should -BeTrue
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
        Get-Process -Id $daemon.ProcessId -ErrorAction SilentlyContinue | Where-Object { -not $_.HasExited } | Should -BeNullOrEmpty
    }

    It 'exits with code 0' {
        $process | Should -Not -BeNullOrEmpty -Because 'the module keeps the daemon''s Process (ServerRegistry.FindDaemon(pid).Process, read by reflection)'
        $exitCode | Should -Be 0 -Because "its log says: $log"
    }

    It 'logs the stopping line, then the engine''s stopped line' {
        $log | Should -Match 'qmTunnel server stopping'
        $log | Should -Match "qmTunnel server on port $($daemon.Port) stopped"
        $log.IndexOf('qmTunnel server stopping') | Should -BeLessThan $log.IndexOf("qmTunnel server on port $($daemon.Port) stopped")
    }

    It 'is no longer listed, and a client of the tunnel through it is reset' {
        @(Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $daemon.ProcessId }) | Should -BeNullOrEmpty
        [QmTunnel.PesterTools.EchoClient]::Probe($tunnel.BoundListen, 0, 30) | Should -Be 'Reset'
    }
}

Describe 'The daemon''s command line' {
    It '--help prints the usage and exits 0' {
        $result = Invoke-Program -FilePath $dotnet -ArgumentList @($daemonDll, '--help')
        $result.ExitCode | Should -Be 0
        $result.Output | Should -Match 'usage: qmtunnel-server'
        foreach ($option in '--port', '--listen', '--data-path', '--log-file') {
            $result.Output | Should -Match ([regex]::Escape($option))
        }
    }

    It '--port abc exits 2 with a message naming --port' {
        $result = Invoke-Program -FilePath $dotnet -ArgumentList @($daemonDll, '--port', 'abc')
        $result.ExitCode | Should -Be 2
        $result.Error | Should -Match "qmtunnel-server: --port 'abc' is not a number"
        $result.Output | Should -BeNullOrEmpty
    }

    It '<Arguments> exits 2 with a message naming <Named>' -ForEach @(
        @{ Arguments = @('--bogus', '1'); Named = '--bogus' }
        @{ Arguments = @('--port'); Named = '--port' }
        @{ Arguments = @('--port=70000'); Named = '70000' }
        @{ Arguments = @('9200'); Named = '9200' }
        @{ Arguments = @('--listen', 'not-an-address'); Named = 'not-an-address' }
        @{ Arguments = @('--allow-plain-links', 'maybe'); Named = 'maybe' }
    ) {
        $result = Invoke-Program -FilePath $dotnet -ArgumentList (@($daemonDll) + $Arguments)
        $result.ExitCode | Should -Be 2
        $result.Error | Should -Match ([regex]::Escape($Named))
    }

    It 'reads QMTUNNEL_ variables, and the command line wins over them' {
        $fromVariable = Invoke-Program -FilePath $dotnet -ArgumentList @($daemonDll) -Environment @{ QMTUNNEL_Port = 'abc' }
        $fromVariable.ExitCode | Should -Be 2
        $fromVariable.Error | Should -Match "'abc'"
        $both = Invoke-Program -FilePath $dotnet -ArgumentList @($daemonDll, '--port', 'xyz') -Environment @{ QMTUNNEL_Port = 'abc' }
        $both.ExitCode | Should -Be 2
        $both.Error | Should -Match "'xyz'"
        $both.Error | Should -Not -Match "'abc'"
    }

    It 'does not read the machine''s unprefixed PORT (the port is read before the address, which fails here)' {
        $result = Invoke-Program -FilePath $dotnet -ArgumentList @($daemonDll) -Environment @{ PORT = 'abc'; QMTUNNEL_ListenAddress = 'not-an-address' }
        $result.ExitCode | Should -Be 2
        $result.Error | Should -Match 'not-an-address'
        $result.Error | Should -Not -Match "'abc'"
    }
}

Describe 'A -Daemon started under umask 022 keeps its data folder owner-only' -Skip:(-not $onLinux) {
    BeforeAll {
        # umask of this pwsh process (inherited by the daemon it starts), as a shell with umask 022 has it.
        if (-not ('QmTunnel.PesterTools.Umask' -as [type])) {
            Add-Type -Namespace QmTunnel.PesterTools -Name Umask -MemberDefinition '[DllImport("libc", EntryPoint = "umask")] public static extern uint Set(uint mask);'
        }
        $umaskData = Join-Path $base 'umask' 'data'      # missing: the cmdlet creates it (and 'umask' above it)
        $clientData = Join-Path $base 'umask' 'client'   # the client's pins of this test
        $savedDataEnv = $env:QMTUNNEL_DATA
        $env:QMTUNNEL_DATA = $clientData
        $previousUmask = [QmTunnel.PesterTools.Umask]::Set(0x12)
        try {
            $umaskDaemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath $umaskData
            # A write through a session: the database and its LiteDB log are used, the client pins the server.
            $session = Connect-QmTunnelServer "qmt://127.0.0.1:$($umaskDaemon.Port)" -Credential $QmTestAdmin
            $null = New-QmTunnelGroup umask-test -Session $session
        }
        finally {
            $null = [QmTunnel.PesterTools.Umask]::Set($previousUmask)
        }
        function Get-Modes([string]$Folder) {
            foreach ($item in @(Get-Item -LiteralPath $Folder -Force) + @(Get-ChildItem -LiteralPath $Folder -Force -Recurse)) {
                [pscustomobject]@{ Name = $item.Name; Mode = [Convert]::ToString([int][IO.File]::GetUnixFileMode($item.FullName), 8) }
            }
        }
        $whileRunning = @(Get-Modes $umaskData)
        $daemonUmask = (Get-Content "/proc/$($umaskDaemon.ProcessId)/status" | Where-Object { $_ -like 'Umask:*' }) -replace '^Umask:\s*', ''
        $clientModes = @(Get-Modes $clientData)
        Disconnect-QmTunnelServer $session -Confirm:$false
        $umaskDaemon | Stop-QmTunnelServer -Confirm:$false
        $afterStop = @(Get-Modes $umaskData)
        $parentMode = [Convert]::ToString([int][IO.File]::GetUnixFileMode((Split-Path -Parent $umaskData)), 8)
    }

    AfterAll {
        $env:QMTUNNEL_DATA = $savedDataEnv
    }

    It 'starts it under umask 022: a file this process makes under it is 0644' {
        $previousUmask | Should -Not -BeNullOrEmpty
        # A file this process creates now, as the daemon's would have been without its own care.
        $previousUmask = [QmTunnel.PesterTools.Umask]::Set(0x12)
        try {
            $probe = Join-Path $base 'umask' 'probe.txt'
            Set-Content -LiteralPath $probe -Value 'x'
            [Convert]::ToString([int][IO.File]::GetUnixFileMode($probe), 8) | Should -Be '644'
            Remove-Item -LiteralPath $probe
        }
        finally {
            $null = [QmTunnel.PesterTools.Umask]::Set($previousUmask)
        }
    }

    It 'runs the daemon with umask 077 (its second line of defence)' {
        $daemonUmask | Should -Be '0077'
    }

    It 'created the data folder (and the missing folder above it) 0700' {
        ($whileRunning | Where-Object Name -EQ 'data').Mode | Should -Be '700'
        $parentMode | Should -Be '700'
    }

    It 'keeps every file 0600 while it runs: database, its LiteDB log, lock, key, daemon log' {
        $files = @($whileRunning | Where-Object Name -NE 'data')
        $files.Name | Sort-Object | Should -Be @('qmtunnel-log.db', 'qmtunnel-server.log', 'qmtunnel.db', 'qmtunnel.lock', 'server.pfx')
        foreach ($file in $files) { $file.Mode | Should -Be '600' -Because "$($file.Name) holds or guards the server's secrets" }
    }

    It 'leaves nothing readable by others after it stops, and no log (checkpointed into the database)' {
        $afterStop.Name | Should -Not -Contain 'qmtunnel-log.db'
        foreach ($item in $afterStop) { $item.Mode | Should -BeIn @('700', '600') -Because "$($item.Name) is the server's" }
    }

    It 'refuses a data folder of another user with DataPathInsecure, -Daemon or not, and creates nothing in it' {
        $foreign = Join-Path $base 'umask' 'foreign'
        $null = New-Item -ItemType Directory -Path $foreign -Force
        & chown nobody $foreign
        $LASTEXITCODE | Should -Be 0 -Because 'chown nobody needs root, as these tests run'
        foreach ($daemonSwitch in $true, $false) {
            $captured = Invoke-Capture { Start-QmTunnelServer -Daemon:$daemonSwitch -Port 0 -DataPath $foreign }
            $captured.Terminating | Should -BeTrue
            $record = $captured.Errors[0]
            $record.FullyQualifiedErrorId | Should -Match '^DataPathInsecure(,|$)'
            "$($record.CategoryInfo.Category)" | Should -Be 'SecurityError'
            "$($record.TargetObject)" | Should -Be $foreign
            $record.Exception.Message | Should -Match 'belongs to uid 65534 \(nobody\)'
            $record.Exception.Message | Should -Match ([regex]::Escape("chown -R root '$foreign'"))
        }
        @(Get-ChildItem -LiteralPath $foreign -Force) | Should -BeNullOrEmpty
        @(Get-QmTunnelServer | Where-Object { $_.DataPath -eq $foreign }) | Should -BeNullOrEmpty
    }

    It 'keeps the client''s pins owner-only too' {
        ($clientModes | Where-Object Name -EQ 'client').Mode | Should -Be '700'
        ($clientModes | Where-Object Name -EQ 'known-servers.txt').Mode | Should -Be '600'
    }
}

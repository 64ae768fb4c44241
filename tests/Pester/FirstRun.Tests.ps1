#Requires -Version 7.4
<#
    What an administrator meets on a first run, through the BUILT module: the banner of build.ps1 start and the
    README's one-host trial run as written (in a child pwsh and in a runspace whose host answers the password
    prompts as a person would), on data folders, HOME and TMPDIR of their own (never the real default data path).
    Helpers: TestCommon.ps1, TestHost.cs (recording host), TestTools.cs (free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    Import-QmTestHost
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmt-first-$run"
    $null = New-Item -ItemType Directory -Path $base -Force
    # The environment of every child pwsh here: nothing of the real user's data folders.
    $isolated = @{
        HOME = (Join-Path $base 'home')
        TMPDIR = (Join-Path $base 'tmp')
        QMTUNNEL_DATA = (Join-Path $base 'default-data')
        QMTUNNEL_MODULE_PATH = $modulePath
    }
    foreach ($dir in $isolated.HOME, $isolated.TMPDIR) { $null = New-Item -ItemType Directory -Path $dir -Force }

    function Get-InProcessServer { @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }) }
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'The banner of build.ps1 start' {
    BeforeAll {
        if (Get-InProcessServer) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }
        $tunnelPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $build = Join-Path $repoRoot 'src' 'Build' 'QmTunnel.Build.psm1'
        # As build.ps1 start does by default: the dev server uses the default data path, here $isolated.QMTUNNEL_DATA,
        # which the banner's commands below also see as theirs (so a second server there would find it locked).
        $devData = $isolated.QMTUNNEL_DATA
        # build.ps1 start runs Start-QmDevServer after building; the module is built already, so run it directly.
        $dev = Start-QmTestPwsh -Environment $isolated -Command @"
Import-Module '$build'
Start-QmDevServer -Port 0 -TunnelPort $tunnelPort -ManifestPath '$modulePath'
"@
        Wait-Until { (Get-QmTestPwshOutput $dev) -match 'Press Ctrl\+C' -or $dev.Process.HasExited } 'the dev server printed its banner' 90
        $printed = Get-QmTestPwshOutput $dev
        $thumbprint = ($printed | Select-String 'certificate SHA256 ([0-9A-F]{64})' | Select-Object -First 1).Matches[0].Groups[1].Value
        $password = ($printed | Select-String 'generated password (\S+) \.' | Select-Object -First 1).Matches[0].Groups[1].Value
        # The commands: the lines indented by two spaces after the "Create your first tunnel" paragraph, up to the blank line.
        $banner = @()
        $inBlock = $false
        foreach ($line in $printed) {
            if ($line -match '^Create your first tunnel') { $inBlock = $true; continue }
            if ($inBlock -and $line -match '^  (?<command>\S.*)$') { $banner += $Matches.command; continue }
            if ($inBlock -and $banner.Count -gt 0 -and $line -eq '') { break }
        }
        # The same default data path as the dev server's (never the real one).
        $savedData = $env:QMTUNNEL_DATA
        $env:QMTUNNEL_DATA = $isolated.QMTUNNEL_DATA
        $session = New-QmTestRunspace
        # As a person would: the password the dev server showed at its first start, typed at each prompt.
        $session.UI.Passwords['admin'] = $password
    }

    AfterAll {
        if ($session) {
            $null = Invoke-QmTestLine $session 'Stop-QmTunnelServer -ErrorAction SilentlyContinue'
            Close-QmTestRunspace $session
        }
        Stop-QmTestPwsh $dev
        $env:QMTUNNEL_DATA = $savedData
    }

    It 'starts the dev server and prints its thumbprint, its first admin password and the commands' {
        $dev.Process.HasExited | Should -BeFalse -Because ($printed -join "`n")
        ($printed -match [regex]::Escape("(data: $devData)")) | Should -Not -BeNullOrEmpty -Because 'the dev server uses the default data path'
        $thumbprint | Should -Match '^[0-9A-F]{64}$'
        $password | Should -Not -BeNullOrEmpty
        $banner.Count | Should -BeGreaterOrEqual 5
    }

    It 'gives the second server a data folder of its own, never the dev server''s or the default one' {
        $start = @($banner | Where-Object { $_ -match '^Start-QmTunnelServer' })
        $start.Count | Should -Be 1
        $start[0] | Should -Match '-DataPath'
        $start[0] | Should -Not -Match ([regex]::Escape($devData))
        $start[0] | Should -Match ([regex]::Escape($isolated.TMPDIR))
    }

    It 'gives the hop a login' {
        ($banner | Where-Object { $_ -match 'New-QmTunnelHop' }) | Should -Match '-Credential admin'
    }

    It 'runs as written, and the tunnel carries a TLS handshake to the dev server and back' {
        $results = foreach ($line in $banner) {
            $result = Invoke-QmTestLine $session $line
            $result.Errors | Should -BeNullOrEmpty -Because "'$line' must run as written: $($result.Errors -join '; ')"
            $result
        }
        # The TLS client's line prints the certificate the dev server presented, through the tunnel.
        $seen = $results | Where-Object { $_.Line -match 'SslStream' } | ForEach-Object Output
        "$seen" | Should -Be $thumbprint
        $stats = ($results | Where-Object { $_.Line -match '^Get-QmTunnelStats' }).Output[0]
        $stats.ConnectionsTotal | Should -Be 1
        $stats.FailedConnections | Should -Be 0
        $stats.BytesToClients | Should -BeGreaterThan 100 -Because 'the server hello and certificate came back through the tunnel'
        $session.UI.Prompts | Should -Be @('admin') -Because 'the only prompt is the hop''s login'
    }
}

Describe "README's quick start on one host" {
    BeforeAll {
        if (Get-InProcessServer) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }
        $readme = Get-Content -LiteralPath (Join-Path $repoRoot 'README.md') -Raw
        $section = $readme.Substring($readme.IndexOf('### On one host'))
        $block = [regex]::Match($section, '(?s)```powershell\r?\n(?<code>.*?)```').Groups['code'].Value
        $lines = @($block -split '\r?\n' | Where-Object { $_.Trim() })
        # The ports the block names, which must be free here (run the tests in a network namespace of their own).
        $ports = @([regex]::Matches($block, '(?:-Port |127\.0\.0\.1:)(\d{4,5})') | ForEach-Object { [int]$_.Groups[1].Value } | Sort-Object -Unique)
        $busy = @($ports | Where-Object {
                $probe = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, $_)
                try { $probe.Start(); $false } catch { $true } finally { $probe.Stop() }
            })
        # Run from a folder laid out like the repository (out/qmTunnel is the module under test), with a temp folder of its own.
        $tree = Join-Path $base 'readme'
        $null = New-Item -ItemType Directory -Path (Join-Path $tree 'out') -Force
        $null = New-Item -ItemType SymbolicLink -Path (Join-Path $tree 'out' 'qmTunnel') -Target (Split-Path -Parent $modulePath)
        $saved = @{ TMPDIR = $env:TMPDIR; QMTUNNEL_DATA = $env:QMTUNNEL_DATA }
        $env:TMPDIR = Join-Path $base 'readme-tmp'
        $env:QMTUNNEL_DATA = Join-Path $base 'readme-default-data'
        $null = New-Item -ItemType Directory -Path $env:TMPDIR -Force
        $session = New-QmTestRunspace
        $session.UI.Passwords['admin'] = 'readme-admin-password'
        $null = Invoke-QmTestLine $session "Set-Location -LiteralPath '$tree'"
        # The session's defaults of the other test files do not apply here: the block runs as written.
        $null = Invoke-QmTestLine $session '$PSDefaultParameterValues.Clear()'
    }

    AfterAll {
        if ($session) {
            $null = Invoke-QmTestLine $session 'Get-QmTunnelServer | Stop-QmTunnelServer -ErrorAction SilentlyContinue'
            Close-QmTestRunspace $session
        }
        $env:TMPDIR = $saved.TMPDIR
        $env:QMTUNNEL_DATA = $saved.QMTUNNEL_DATA
    }

    It 'names free ports' {
        $ports.Count | Should -BeGreaterOrEqual 3
        $busy | Should -BeNullOrEmpty -Because 'the README block uses fixed ports; another program holds them here'
    }

    It 'runs as written: the client reaches host B through host A''s tunnel, and everything stops' {
        $results = foreach ($line in $lines) {
            $result = Invoke-QmTestLine $session $line
            $result.Errors | Should -BeNullOrEmpty -Because "'$line' must run as written: $($result.Errors -join '; ')"
            $result
        }
        $stats = ($results | Where-Object { $_.Line -match '^Get-QmTunnelStats' }).Output[0]
        $stats.ConnectionsTotal | Should -Be 1
        $stats.FailedConnections | Should -Be 0
        $stats.BytesFromClients | Should -BeGreaterThan 0
        $stats.BytesToClients | Should -BeGreaterThan 0
        Get-InProcessServer | Should -BeNullOrEmpty
        @(Get-QmTunnelServer | Where-Object DataPath -Like "$($env:TMPDIR)*") | Should -BeNullOrEmpty
    }
}

Describe 'Tunnel definitions an administrator gets wrong, and changes' {
    BeforeAll {
        if (Get-InProcessServer) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }
        $dataPath = Join-Path $base 'server'
        $server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru
        $self = New-QmTestHop "qmt://127.0.0.1:$($server.Port)"
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $tunnel = New-QmTunnel live -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri | Start-QmTunnel -PassThru
        $deadPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
    }

    AfterAll {
        Stop-QmTunnelServer -ErrorAction SilentlyContinue
        if ($echo) { $echo.Dispose() }
    }

    It 'New-QmTunnel refuses a hop without a login with HopCredentialMissing naming the hop and the fix, -WhatIf too' {
        foreach ($whatIf in $false, $true) {
            $captured = Invoke-Capture { New-QmTunnel nologin -Listen tcp://127.0.0.1:0 -Via "qmt://127.0.0.1:$deadPort" -Target $echo.Uri -WhatIf:$whatIf }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'HopCredentialMissing,*'
            "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'AuthenticationError'
            "$($captured.Errors[0].TargetObject)" | Should -Be "qmt://127.0.0.1:$deadPort"
            $captured.Errors[0].Exception.Message | Should -Match "New-QmTunnelHop qmt://127\.0\.0\.1:$deadPort -Credential"
        }
        Get-QmTunnel nologin -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'Set-QmTunnel refuses a new hop without a login and keeps the chain' {
        $before = Get-QmTunnel live
        $captured = Invoke-Capture { Set-QmTunnel live -Via "qmt://127.0.0.1:$deadPort" }
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'HopCredentialMissing,*'
        (Get-QmTunnel live).Via | Should -Be $before.Via
        (Get-QmTunnel live).ModifiedAt | Should -Be $before.ModifiedAt
    }

    It 'Set-QmTunnel -Description keeps the open client connections; -WhatIf says there is no restart' {
        $session = New-QmTestRunspace -ImportModule
        try {
            $whatIf = Invoke-QmTestLine $session "Set-QmTunnel live -Description 'x' -WhatIf"
            $whatIf.Errors | Should -BeNullOrEmpty
            $session.UI.Text | Should -Match 'Set Description \(no restart'
            $session.UI.ClearText()
            $null = Invoke-QmTestLine $session "Set-QmTunnel live -Target tcp://localhost:1 -WhatIf"
            $session.UI.Text | Should -Match 'restarts the tunnel if it is running and Target changes'
        }
        finally { Close-QmTestRunspace $session }
        $held = [QmTunnel.PesterTools.HeldConnection]::Open($tunnel.BoundListen, 10)
        try {
            $held.Echoes(1000, 10) | Should -BeTrue
            Set-QmTunnel live -Description 'changed while a client is connected' -MaxConnections 50
            $held.Echoes(1000, 10) | Should -BeTrue -Because 'a description change restarts nothing'
            (Get-QmTunnelStats live).ConnectionsCurrent | Should -Be 1
            (Get-QmTunnel live).Description | Should -Be 'changed while a client is connected'
            # A new target must restart: the open connection is closed.
            Set-QmTunnel live -Target ($echo.Uri -replace '127\.0\.0\.1', 'localhost')
            $held.Ended(20) | Should -BeTrue
        }
        finally { $held.Dispose() }
    }

    It 'takes a plain number as seconds for every TimeSpan parameter' {
        $created = New-QmTunnel seconds -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -ConnectTimeout 5
        $created.ConnectTimeout | Should -Be ([TimeSpan]::FromSeconds(5))
        (Set-QmTunnel seconds -ConnectTimeout 0.5 -PassThru).ConnectTimeout | Should -Be ([TimeSpan]::FromMilliseconds(500))
        (Set-QmTunnel seconds -ConnectTimeout '7' -PassThru).ConnectTimeout | Should -Be ([TimeSpan]::FromSeconds(7))
        (Set-QmTunnel seconds -ConnectTimeout 00:00:03 -PassThru).ConnectTimeout | Should -Be ([TimeSpan]::FromSeconds(3))
        Remove-QmTunnel seconds
    }

    It 'refuses <Case> with <Id>, -WhatIf or not' -ForEach @(
        @{ Case = 'New-QmTunnel -ConnectTimeout -5'; Id = 'TunnelSettingInvalid'; Script = { New-QmTunnel neg -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -ConnectTimeout -5 -WhatIf } }
        @{ Case = 'New-QmTunnel -ConnectTimeout TimeSpan.MaxValue'; Id = 'TunnelSettingInvalid'; Script = { New-QmTunnel huge -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -ConnectTimeout ([TimeSpan]::MaxValue) -WhatIf } }
        @{ Case = 'New-QmTunnel -MaxConnections 0'; Id = 'TunnelSettingInvalid'; Script = { New-QmTunnel zero -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -MaxConnections 0 -WhatIf } }
        @{ Case = 'Set-QmTunnel -ConnectTimeout -1'; Id = 'TunnelSettingInvalid'; Script = { Set-QmTunnel live -ConnectTimeout -1 -WhatIf } }
        @{ Case = 'Set-QmTunnel -ConnectTimeout 100000'; Id = 'TunnelSettingInvalid'; Script = { Set-QmTunnel live -ConnectTimeout 100000 -WhatIf } }
        @{ Case = 'Set-QmTunnel -Target without scheme'; Id = 'EndpointUriInvalid'; Script = { Set-QmTunnel live -Target db:5432 -WhatIf } }
        @{ Case = 'Get-QmTunnelStats -Interval 0.1'; Id = 'FollowIntervalInvalid'; Script = { Get-QmTunnelStats -Follow -Interval 0.1 } }
        @{ Case = 'Get-QmTunnelConnection -Interval 86400'; Id = 'FollowIntervalInvalid'; Script = { Get-QmTunnelConnection -Follow -Interval 86400 } }
        @{ Case = 'Start-QmTunnelServer -StartTimeout -1'; Id = 'ServerSettingInvalid'; Script = { Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'never') -StartTimeout -1 } }
        @{ Case = 'Start-QmTunnelServer -StartTimeout 1e9'; Id = 'ServerSettingInvalid'; Script = { Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'never') -StartTimeout 1e9 } }
        @{ Case = 'Connect-QmTunnelServer -ConnectTimeout 0'; Id = 'ConnectTimeoutInvalid'; Script = { Connect-QmTunnelServer qmt://127.0.0.1:9 -Credential $QmTestAdmin -ConnectTimeout 0 } }
        @{ Case = 'a number of seconds past what a TimeSpan holds'; Id = 'ParameterArgumentTransformationError'; Script = { Set-QmTunnel live -ConnectTimeout 1e300 -WhatIf } }
    ) {
        $before = Get-QmTunnel live
        $captured = Invoke-Capture $Script
        $captured.Errors.Count | Should -Be 1 -Because "$($captured.Errors)"
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike "$Id,*"
        if ($Id -ne 'ParameterArgumentTransformationError') {
            "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
            $captured.Errors[0].Exception.Message | Should -Match 'give|Write it as|use'
        }
        (Get-QmTunnel live).ModifiedAt | Should -Be $before.ModifiedAt
        Test-Path -LiteralPath (Join-Path $base 'never') | Should -BeFalse
    }

    It 'takes tunnel names from the pipeline as strings' {
        $null = [QmTunnel.PesterTools.EchoClient]::Run((Get-QmTunnel live).BoundListen, 100, 20)
        ('live' | Get-QmTunnel).Name | Should -Be 'live'
        ('live' | Get-QmTunnelStats).Name | Should -Be 'live'
        @('live' | Get-QmTunnelConnection).Count | Should -BeGreaterOrEqual 1
        'live' | Stop-QmTunnel
        (Get-QmTunnel live).State | Should -Be 'Stopped'
        ('live' | Start-QmTunnel -PassThru).State | Should -BeIn 'Listening', 'Established'
    }

    It 'shows a hop as its address and how it logs in, never the credential object' {
        $hop = New-QmTunnelHop qmt://127.0.0.1:9 -Credential $QmTestAdmin
        foreach ($text in ($hop | Out-String -Width 80), ($hop | Format-List | Out-String -Width 80)) {
            $text | Should -Not -Match 'PSCredential|SecureString'
            $text | Should -Match 'Password'
            $text | Should -Match 'qmt://admin@127\.0\.0\.1:9'
        }
    }

    It 'suggests qmt:// for a server address without scheme, and that address is accepted' {
        $captured = Invoke-Capture { Connect-QmTunnelServer 127.0.0.1:9301 -Credential $QmTestAdmin }
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'EndpointUriInvalid,*'
        $message = $captured.Errors[0].Exception.Message
        $message | Should -Match 'qmt://127\.0\.0\.1:9301'
        $message | Should -Not -Match 'tcp://'
        $suggested = [regex]::Match($message, 'qmt://127\.0\.0\.1:9301').Value
        (New-QmTunnelHop $suggested).ToString() | Should -Be $suggested
    }

    It 'shows progress while it waits over a second for a server that does not answer' {
        $silent = [QmTunnel.PesterTools.SilentServer]::new()
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$modulePath'; `$ProgressPreference = 'Continue'; Connect-QmTunnelServer qmt://127.0.0.1:$($silent.Port) -Credential `$args[0] -ConnectTimeout 3").AddArgument($QmTestAdmin)
            try { $null = $ps.Invoke() } catch { Write-Verbose "the connection fails, as it must: $_" }
            $progress = @($ps.Streams.Progress | Where-Object Activity -eq 'Connect-QmTunnelServer')
            $progress.Count | Should -BeGreaterOrEqual 2 -Because 'one record while it waits, one when it ends'
            $progress[0].StatusDescription | Should -Match "127\.0\.0\.1:$($silent.Port)"
            $progress[-1].RecordType | Should -Be 'Completed'
        }
        finally {
            $ps.Dispose()
            $silent.Dispose()
        }
    }
}

Describe 'Daemons: failed starts, live counters, stopping one started elsewhere' {
    BeforeAll {
        $started = [System.Collections.Generic.List[int]]::new()
        $held = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $held.Start()
        $heldPort = $held.LocalEndpoint.Port

        # A daemon started by another process (a child pwsh that exits once it listens); returns its pid.
        function Start-ForeignDaemon([string]$DataPath, [int]$Port) {
            $child = Start-QmTestPwsh -Environment $isolated -Command @"
Import-Module '$modulePath'
`$admin = [pscredential]::new('admin', (ConvertTo-SecureString '$QmTestAdminPassword' -AsPlainText -Force))
`$d = Start-QmTunnelServer -Daemon -Port $Port -DataPath '$DataPath' -AdminCredential `$admin -PasswordIterations 100000
"pid=`$(`$d.ProcessId)"
"@
            try {
                $null = $child.Process.WaitForExit(60000)
                $line = Get-QmTestPwshOutput $child | Where-Object { $_ -match '^pid=(\d+)$' } | Select-Object -First 1
                if (-not $line) { throw "The foreign daemon did not start: $((Get-QmTestPwshOutput $child) -join "`n")" }
                $id = [int]($line -replace '^pid=', '')
                $started.Add($id)
                $id
            }
            finally { Stop-QmTestPwsh $child }
        }
    }

    AfterAll {
        $held.Stop()
        Get-QmTunnelSession | Disconnect-QmTunnelServer -ErrorAction SilentlyContinue
        Get-QmTunnelServer | Where-Object { $_.DataPath -like "$base*" } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
        # Only the daemons these tests started, by process id, if a test failed before stopping them.
        foreach ($id in $started) {
            $process = Get-Process -Id $id -ErrorAction SilentlyContinue
            if ($process) { $process.Kill(); $null = $process.WaitForExit(10000) }
        }
    }

    It 'a daemon that cannot take its port reports PortInUse, and leaves no admin whose password nobody saw' {
        $dataPath = Join-Path $base 'daemon-port'
        $defaults = $global:PSDefaultParameterValues['Start-QmTunnelServer:AdminCredential']
        $global:PSDefaultParameterValues.Remove('Start-QmTunnelServer:AdminCredential')
        try {
            $captured = Invoke-Capture { Start-QmTunnelServer -Daemon -Port $heldPort -DataPath $dataPath }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PortInUse,*'
            "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'ResourceBusy'
            "$($captured.Errors[0].TargetObject)" | Should -Be "127.0.0.1:$heldPort"
            $captured.Errors[0].Exception.Message | Should -Match 'qmtunnel-server could not start'
            Test-Path -LiteralPath (Join-Path $dataPath 'initial-admin-password') | Should -BeFalse
            # The next start of the data path is its first: it generates the admin password and shows it.
            $warnings = $null
            $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath $dataPath -WarningVariable warnings -WarningAction SilentlyContinue
            $started.Add($daemon.ProcessId)
            "$warnings" | Should -Match 'generated password \S+ \.'
            $daemon | Stop-QmTunnelServer
        }
        finally {
            $global:PSDefaultParameterValues['Start-QmTunnelServer:AdminCredential'] = $defaults
        }
    }

    It 'a daemon whose data folder another process''s daemon holds reports DatabaseLocked' {
        $dataPath = Join-Path $base 'daemon-locked'
        $foreign = Start-ForeignDaemon $dataPath 0
        $captured = Invoke-Capture { Start-QmTunnelServer -Daemon -Port 0 -DataPath $dataPath }
        $captured.Errors.Count | Should -Be 1
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'DatabaseLocked,*'
        "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'ResourceBusy'
        (Get-Process -Id $foreign -ErrorAction SilentlyContinue) | Should -Not -BeNullOrEmpty -Because 'the running daemon goes on'
        (Get-Process -Id $foreign).Kill()
    }

    It 'Get-QmTunnelServer shows a daemon''s links and open streams as they are now' {
        if (Get-InProcessServer) { throw 'An in-process server is already running.' }
        $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'daemon-live')
        $started.Add($daemon.ProcessId)
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'owner')
        try {
            $tunnel = New-QmTunnel through -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop $daemon.Address) -Target $echo.Uri | Start-QmTunnel -PassThru
            $connection = [QmTunnel.PesterTools.HeldConnection]::Open($tunnel.BoundListen, 10)
            try {
                $connection.Echoes(1000, 10) | Should -BeTrue
                $now = Get-QmTunnelServer | Where-Object ProcessId -eq $daemon.ProcessId
                $now.Links | Should -BeGreaterOrEqual 1
                $now.OpenStreams | Should -BeGreaterOrEqual 1 -Because 'the held connection is a stream on the daemon''s link'
                $now.CertificateThumbprint | Should -Be $daemon.CertificateThumbprint
                $session = Connect-QmTunnelServer $daemon.Address -Credential $QmTestAdmin
                $remote = Get-QmTunnelServer -Session $session
                $remote.OpenStreams | Should -BeGreaterOrEqual 1
                $remote.Links | Should -BeGreaterOrEqual 2 -Because 'the tunnel''s link and the session''s'
                Disconnect-QmTunnelServer $session
            }
            finally { $connection.Dispose() }
            $openBefore = $now.OpenStreams
            Wait-Until { (Get-QmTunnelServer | Where-Object ProcessId -eq $daemon.ProcessId).OpenStreams -lt $openBefore } 'the closed connection''s stream is gone'
        }
        finally {
            Stop-QmTunnelServer
            $echo.Dispose()
            $daemon | Stop-QmTunnelServer
        }
    }

    It 'Stop-QmTunnelServer -Session stops a daemon another process started, for a user with the right only' {
        $foreign = Start-ForeignDaemon (Join-Path $base 'daemon-foreign') 0
        # Its address: from its log's listening line.
        $log = Get-Content -LiteralPath (Join-Path $base 'daemon-foreign' 'qmtunnel-server.log') -Raw
        $address = [regex]::Match($log, 'listening on (qmt://\S+)').Groups[1].Value
        $admin = Connect-QmTunnelServer $address -Credential $QmTestAdmin
        $null = New-QmTunnelGroup Operators -Rights CreateTunnels -AllowRule 'L#*:*#*#*:*' -Session $admin
        $bobCredential = [pscredential]::new('bob', (ConvertTo-SecureString 'bob-password-1' -AsPlainText -Force))
        $null = New-QmTunnelUser -Credential $bobCredential -Group Operators -Session $admin
        $bob = Connect-QmTunnelServer $address -Credential $bobCredential

        $denied = Invoke-Capture { Stop-QmTunnelServer -Session $bob }
        $denied.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
        $denied.Errors[0].Exception.Message | Should -Match 'ChangeServerConfiguration'
        (Get-Process -Id $foreign -ErrorAction SilentlyContinue) | Should -Not -BeNullOrEmpty

        Stop-QmTunnelServer -Session $admin -WhatIf
        (Get-Process -Id $foreign -ErrorAction SilentlyContinue) | Should -Not -BeNullOrEmpty
        $admin.IsOpen | Should -BeTrue

        Stop-QmTunnelServer -Session $admin
        $admin.IsOpen | Should -BeFalse
        @(Get-QmTunnelSession) | Should -Not -Contain $admin
        $process = Get-Process -Id $foreign -ErrorAction SilentlyContinue
        if ($process) { $process.WaitForExit(30000) | Should -BeTrue -Because 'the daemon exits after its drain' }
        Get-Content -LiteralPath (Join-Path $base 'daemon-foreign' 'qmtunnel-server.log') -Raw | Should -Match 'Stop requested by admin'
    }
}

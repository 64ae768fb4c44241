#Requires -Version 7.4
<#
    Daemons as an administrator meets them, through the BUILT module: a failed start keeps the daemon's own error id
    (PortInUse, DatabaseLocked) and leaves no admin whose password nobody saw; Get-QmTunnelServer shows a daemon's
    links and open streams as they are now (its status socket), or a session's server; Stop-QmTunnelServer -Session
    stops a daemon another process started, for a user with ChangeServerConfiguration only.
    Helpers: TestCommon.ps1, TestHost.cs (child pwsh output), TestTools.cs and TestPeers.cs (echo, held connection).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    Import-QmTestHost
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $base, $isolated = New-QmTestSandbox -Name 'Daemons' -ModulePath $modulePath

    function Get-InProcessServer { @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }) }
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
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

    It 'Stop-QmTunnelServer -Session stops another pwsh''s in-process server, which that pwsh then no longer lists' {
        $port = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $other = Start-QmTestPwsh -Environment $isolated -Command @"
Import-Module '$modulePath'
`$admin = [pscredential]::new('admin', (ConvertTo-SecureString '$QmTestAdminPassword' -AsPlainText -Force))
Start-QmTunnelServer -Port $port -DataPath '$(Join-Path $base 'other-pwsh')' -AdminCredential `$admin -PasswordIterations 100000
'listening'
while (Get-QmTunnelServer) { Start-Sleep -Milliseconds 100 }
'no server'
"@
        try {
            Wait-Until { (Get-QmTestPwshOutput $other) -contains 'listening' -or $other.Process.HasExited } 'the other pwsh runs its server' 60
            $session = Connect-QmTunnelServer "qmt://127.0.0.1:$port" -Credential $QmTestAdmin
            Stop-QmTunnelServer -Session $session
            $session.IsOpen | Should -BeFalse
            $other.Process.WaitForExit(30000) | Should -BeTrue -Because 'its in-process server stopped and was forgotten there'
            Get-QmTestPwshOutput $other | Should -Contain 'no server'
        }
        finally { Stop-QmTestPwsh $other }
    }
}

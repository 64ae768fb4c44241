#Requires -Version 7.4
<#
    Every user-facing error of the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH), as a script sees it: an
    ErrorRecord whose FullyQualifiedErrorId starts with the error id, with a real ErrorCategory, the target at fault
    and a message that says what to do; and nothing half-created after a refusal.
    The in-process server is one per pwsh process (not per runspace), so ServerNotRunning is checked first, before
    this file starts a server; every server and listener started here is stopped in AfterAll.
    Helpers: TestTools.cs (echo server, clients, free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule -Force

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-errors-$run"
    $null = New-Item -ItemType Directory -Path $base -Force

    # One error, shaped as the module promises: id first in FullyQualifiedErrorId, the category, the target.
    function Assert-QmError {
        param(
            [object]$Captured,
            [string]$Id,
            [string]$Category,
            [object]$Target,
            [string]$MessagePattern
        )
        $Captured.Errors.Count | Should -Be 1 -Because "exactly one error is expected, got: $($Captured.Errors | ForEach-Object { "[$($_.FullyQualifiedErrorId)] $_" })"
        $record = $Captured.Errors[0]
        $record.FullyQualifiedErrorId | Should -Match "^$([regex]::Escape($Id))(,|$)"
        "$($record.CategoryInfo.Category)" | Should -Be $Category
        "$($record.CategoryInfo.Category)" | Should -Not -Be 'NotSpecified'
        if ($null -eq $Target) {
            $record.TargetObject | Should -BeNullOrEmpty
        }
        else {
            "$($record.TargetObject)" | Should -Be "$Target"
        }
        $record.Exception.Message | Should -Not -BeNullOrEmpty
        if ($MessagePattern) {
            $record.Exception.Message | Should -Match $MessagePattern
        }
    }


    function Get-InProcessServer {
        @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon })
    }

    # A port held by another program (this process), released in AfterAll.
    function New-HeldPort {
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $script:heldListeners += , $listener
        $listener.LocalEndpoint.Port
    }
    $script:heldListeners = @()
}

AfterAll {
    foreach ($listener in $script:heldListeners) {
        $listener.Stop()
    }
    # Only servers this file started (by data path): stop them even when a test failed half way.
    Get-QmTunnelServer | Where-Object { $_.DataPath -like "$base*" } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Errors before any server runs' {
    BeforeAll {
        $leftover = Get-InProcessServer
        if ($leftover) {
            throw "An in-process server is already running ($($leftover[0].Address), data $($leftover[0].DataPath)): a test that ran earlier in this process did not stop it, so ServerNotRunning cannot be checked."
        }
    }

    It '<Command> reports ServerNotRunning' -ForEach @(
        @{ Command = 'Get-QmTunnel'; Script = { Get-QmTunnel } }
        @{ Command = 'Get-QmTunnel -Name'; Script = { Get-QmTunnel -Name some } }
        @{ Command = 'New-QmTunnel'; Script = { New-QmTunnel some -Listen tcp://127.0.0.1:0 -Via qmt+plain://127.0.0.1:9200 -Target tcp://127.0.0.1:5432 } }
        @{ Command = 'Start-QmTunnel'; Script = { Start-QmTunnel some } }
        @{ Command = 'Stop-QmTunnel'; Script = { Stop-QmTunnel some } }
        @{ Command = 'Set-QmTunnel'; Script = { Set-QmTunnel some -MaxConnections 5 } }
        @{ Command = 'Remove-QmTunnel'; Script = { Remove-QmTunnel some } }
        @{ Command = 'Get-QmTunnelStats'; Script = { Get-QmTunnelStats } }
        @{ Command = 'Get-QmTunnelConnection'; Script = { Get-QmTunnelConnection } }
        @{ Command = 'Stop-QmTunnelServer'; Script = { Stop-QmTunnelServer } }
    ) {
        $captured = Invoke-Capture $Script
        Assert-QmError $captured -Id 'ServerNotRunning' -Category 'ResourceUnavailable' -Target $null -MessagePattern 'Start-QmTunnelServer'
        $captured.Output | Should -BeNullOrEmpty
    }

    It 'Get-QmTunnelServer lists no server (and is no error)' {
        $captured = Invoke-Capture { Get-QmTunnelServer }
        $captured.Errors | Should -BeNullOrEmpty
        @($captured.Output | Where-Object { -not $_.IsDaemon }) | Should -BeNullOrEmpty
    }

    It 'Start-QmTunnelServer on a port another program holds reports PortInUse and leaves no server behind' {
        $port = New-HeldPort
        $dataPath = Join-Path $base 'held-port'
        $captured = Invoke-Capture { Start-QmTunnelServer -Port $port -DataPath $dataPath -PassThru }
        Assert-QmError $captured -Id 'PortInUse' -Category 'ResourceBusy' -Target "127.0.0.1:$port" -MessagePattern "$port"
        $captured.Terminating | Should -BeTrue
        $captured.Output | Should -BeNullOrEmpty
        Get-InProcessServer | Should -BeNullOrEmpty
        # The failed start released the database: the same data path starts on a free port.
        $server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru
        try {
            $server.Port | Should -Not -Be $port
        }
        finally {
            Stop-QmTunnelServer
        }
        Get-InProcessServer | Should -BeNullOrEmpty
    }

    It 'Start-QmTunnelServer -Daemon on a held port reports the daemon''s own PortInUse, and no daemon is left' {
        $port = New-HeldPort
        $dataPath = Join-Path $base 'held-port-daemon'
        $captured = Invoke-Capture { Start-QmTunnelServer -Daemon -Port $port -DataPath $dataPath }
        Assert-QmError $captured -Id 'PortInUse' -Category 'ResourceBusy' -Target "127.0.0.1:$port" -MessagePattern 'qmtunnel-server could not start'
        $captured.Output | Should -BeNullOrEmpty
        @(Get-QmTunnelServer | Where-Object { $_.DataPath -eq $dataPath }) | Should -BeNullOrEmpty
    }

    It 'Start-QmTunnelServer on a corrupt database reports DatabaseCorrupt naming the file, and leaves the file unchanged' {
        $dataPath = Join-Path $base 'corrupt'
        $null = New-Item -ItemType Directory -Path $dataPath -Force
        $dbFile = Join-Path $dataPath 'qmtunnel.db'
        $garbage = [byte[]]::new(64KB)
        [System.Security.Cryptography.RandomNumberGenerator]::Fill($garbage)
        [IO.File]::WriteAllBytes($dbFile, $garbage)
        $hashBefore = (Get-FileHash -LiteralPath $dbFile -Algorithm SHA256).Hash

        $captured = Invoke-Capture { Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru }
        Assert-QmError $captured -Id 'DatabaseCorrupt' -Category 'InvalidData' -Target $dbFile -MessagePattern ([regex]::Escape($dbFile))
        $captured.Terminating | Should -BeTrue
        $captured.Output | Should -BeNullOrEmpty
        Get-InProcessServer | Should -BeNullOrEmpty

        # A second attempt fails the same way: the file is never reset or overwritten.
        $again = Invoke-Capture { Start-QmTunnelServer -Port 0 -DataPath $dataPath }
        Assert-QmError $again -Id 'DatabaseCorrupt' -Category 'InvalidData' -Target $dbFile
        (Get-Item -LiteralPath $dbFile).Length | Should -Be $garbage.Length
        (Get-FileHash -LiteralPath $dbFile -Algorithm SHA256).Hash | Should -Be $hashBefore
        Get-InProcessServer | Should -BeNullOrEmpty
    }
}

Describe 'Errors with a server running' {
    BeforeAll {
        $dataPath = Join-Path $base 'server'
        $server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru
        # The server is its own hop: the tunnels here go A -> A -> target.
        $self = New-QmTestHop "qmt://127.0.0.1:$($server.Port)"
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $null = New-QmTunnel taken -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -Description 'the original'
    }

    AfterAll {
        if ($echo) { $echo.Dispose() }
        Get-QmTunnelServer | Where-Object { $_.DataPath -eq $dataPath } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    }

    It 'Start-QmTunnelServer again reports ServerAlreadyRunning with the running server as target, which keeps running' {
        $captured = Invoke-Capture { Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'second') -PassThru }
        Assert-QmError $captured -Id 'ServerAlreadyRunning' -Category 'ResourceExists' -Target $server.Address -MessagePattern 'Stop-QmTunnelServer'
        $captured.Errors[0].TargetObject.ServerId | Should -Be $server.ServerId
        $captured.Output | Should -BeNullOrEmpty
        $running = Get-InProcessServer
        $running.Count | Should -Be 1
        $running[0].ServerId | Should -Be $server.ServerId
        Test-Path -LiteralPath (Join-Path $base 'second' 'qmtunnel.db') | Should -BeFalse
    }

    Context 'TunnelNotFound' {
        It '<Command> nope reports TunnelNotFound with the name as target' -ForEach @(
            @{ Command = 'Get-QmTunnel'; Script = { Get-QmTunnel nope } }
            @{ Command = 'Start-QmTunnel'; Script = { Start-QmTunnel nope -PassThru } }
            @{ Command = 'Stop-QmTunnel'; Script = { Stop-QmTunnel nope -PassThru } }
            @{ Command = 'Set-QmTunnel'; Script = { Set-QmTunnel nope -MaxConnections 5 -PassThru } }
            @{ Command = 'Remove-QmTunnel'; Script = { Remove-QmTunnel nope } }
            @{ Command = 'Get-QmTunnelStats'; Script = { Get-QmTunnelStats nope } }
            @{ Command = 'Get-QmTunnelConnection'; Script = { Get-QmTunnelConnection nope } }
        ) {
            $captured = Invoke-Capture $Script
            Assert-QmError $captured -Id 'TunnelNotFound' -Category 'ObjectNotFound' -Target 'nope' -MessagePattern 'Get-QmTunnel'
            $captured.Terminating | Should -BeFalse -Because 'a missing tunnel is a non-terminating error, like Get-Service'
            $captured.Output | Should -BeNullOrEmpty
        }

        It 'Get-QmTunnel nope, taken reports nope and still outputs taken' {
            $captured = Invoke-Capture { Get-QmTunnel nope, taken }
            Assert-QmError $captured -Id 'TunnelNotFound' -Category 'ObjectNotFound' -Target 'nope'
            @($captured.Output.Name) | Should -Be @('taken')
        }

        It 'a wildcard that matches nothing is no error' {
            $captured = Invoke-Capture { Get-QmTunnel 'nope*' }
            $captured.Errors | Should -BeNullOrEmpty
            $captured.Output | Should -BeNullOrEmpty
        }

        It '-ErrorAction Stop makes it terminating, with the same id' {
            { Get-QmTunnel nope -ErrorAction Stop } | Should -Throw -ErrorId 'TunnelNotFound,*'
        }
    }

    Context 'A refused New-QmTunnel: <Case>' -ForEach @(
        @{ Case = 'a name in use'; Name = 'taken'; Override = @{}; Id = 'TunnelNameInUse'; Category = 'ResourceExists'; Target = 'taken'; Pattern = 'Set-QmTunnel' }
        @{ Case = 'a name with a space'; Name = 'bad name'; Override = @{}; Id = 'TunnelNameInvalid'; Category = 'InvalidArgument'; Target = 'bad name'; Pattern = 'letters, digits' }
        @{ Case = 'a name starting with a dash'; Name = '-dash'; Override = @{}; Id = 'TunnelNameInvalid'; Category = 'InvalidArgument'; Target = '-dash' }
        @{ Case = 'a 65-character name'; Name = ('n' * 65); Override = @{}; Id = 'TunnelNameInvalid'; Category = 'InvalidArgument'; Target = ('n' * 65) }
        @{ Case = '-MaxConnections 0'; Name = 'max0'; Override = @{ MaxConnections = 0 }; Id = 'TunnelSettingInvalid'; Category = 'InvalidArgument'; Target = 'max0'; Pattern = 'MaxConnections' }
        @{ Case = '-BufferSize 1024'; Name = 'buf1k'; Override = @{ BufferSize = 1024 }; Id = 'TunnelSettingInvalid'; Category = 'InvalidArgument'; Target = 'buf1k'; Pattern = 'BufferSize' }
        @{ Case = '-ConnectTimeout 0'; Name = 'timeout0'; Override = @{ ConnectTimeout = [TimeSpan]::Zero }; Id = 'TunnelSettingInvalid'; Category = 'InvalidArgument'; Target = 'timeout0'; Pattern = 'ConnectTimeout' }
        @{ Case = "-Target 'db:5432' (no scheme)"; Name = 'noscheme'; Override = @{ Target = 'db:5432' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'db:5432'; Pattern = 'tcp://' }
        @{ Case = '-Target without a port'; Name = 'noport'; Override = @{ Target = 'tcp://db' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'tcp://db'; Pattern = 'port' }
        @{ Case = '-Listen with port 70000'; Name = 'bigport'; Override = @{ Listen = 'tcp://127.0.0.1:70000' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'tcp://127.0.0.1:70000'; Pattern = '65535' }
        @{ Case = '-Listen with an unknown scheme'; Name = 'httplisten'; Override = @{ Listen = 'http://127.0.0.1:8080' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'http://127.0.0.1:8080' }
        @{ Case = '-Listen naming a tunnel server'; Name = 'qmtlisten'; Override = @{ Listen = 'qmt+plain://127.0.0.1:9300' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'qmt+plain://127.0.0.1:9300' }
        @{ Case = '-Via naming an application endpoint'; Name = 'tcpvia'; Override = @{ Via = 'tcp://127.0.0.1:9200' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'tcp://127.0.0.1:9200'; Pattern = 'qmt\+plain://' }
        @{ Case = '-Via a server on port 0'; Name = 'port0'; Override = @{ Via = 'qmt://host:0' }; Id = 'EndpointUriInvalid'; Category = 'InvalidArgument'; Target = 'qmt://host:0'; Pattern = 'port 0' }
    ) {
        BeforeAll {
            $namesBefore = @((Get-QmTunnel).Name)
            $parameters = @{ Name = $Name; Listen = 'tcp://127.0.0.1:0'; Via = $self; Target = $echo.Uri }
            foreach ($key in $Override.Keys) {
                $parameters[$key] = $Override[$key]
            }
            # A value the cmdlet validates itself (ValidateRange and the like) never reaches the engine: then
            # PowerShell's binding error is the answer. ValidateNotNullOrEmpty does not count: these values are not empty.
            $validated = $false
            $checked = @($Override.Keys) + @(if ($Id -eq 'TunnelNameInvalid') { 'Name' })
            foreach ($key in $checked) {
                $attributes = (Get-Command New-QmTunnel).Parameters[$key].Attributes
                if ($attributes | Where-Object { $_ -is [System.Management.Automation.ValidateArgumentsAttribute] -and
                        $_ -isnot [System.Management.Automation.ValidateNotNullAttribute] -and $_ -isnot [System.Management.Automation.ValidateNotNullOrEmptyAttribute] }) {
                    $validated = $true
                }
            }
            $captured = Invoke-Capture { New-QmTunnel @parameters }
        }

        It 'is an error with its id, category and target' {
            if ($validated) {
                $captured.Errors.Count | Should -Be 1
                $captured.Errors[0].FullyQualifiedErrorId | Should -Match '^ParameterArgumentValidationError,'
                $captured.Errors[0].Exception | Should -BeOfType [System.Management.Automation.ParameterBindingException]
            }
            else {
                Assert-QmError $captured -Id $Id -Category $Category -Target $Target -MessagePattern $Pattern
            }
            $captured.Output | Should -BeNullOrEmpty
        }

        It 'creates nothing' {
            @((Get-QmTunnel).Name) | Should -Be $namesBefore
            if ($Name -ne 'taken' -and $Name -notmatch '^-') {
                Get-QmTunnel $Name -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            }
            $original = Get-QmTunnel taken
            $original.Description | Should -Be 'the original'
            $original.Target | Should -Be $echo.Uri
        }
    }

    Context 'A refused Set-QmTunnel' {
        It 'Set-QmTunnel taken -MaxConnections 0 is refused (TunnelSettingInvalid, or the binding error if the cmdlet validates it) and changes nothing' {
            $before = Get-QmTunnel taken
            $captured = Invoke-Capture { Set-QmTunnel taken -MaxConnections 0 -PassThru }
            if ((Get-Command Set-QmTunnel).Parameters.MaxConnections.Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateRangeAttribute] }) {
                $captured.Errors[0].FullyQualifiedErrorId | Should -Match '^ParameterArgumentValidationError,'
            }
            else {
                Assert-QmError $captured -Id 'TunnelSettingInvalid' -Category 'InvalidArgument' -Target 'taken' -MessagePattern 'MaxConnections'
            }
            $captured.Output | Should -BeNullOrEmpty
            $after = Get-QmTunnel taken
            $after.MaxConnections | Should -Be $before.MaxConnections
            $after.ModifiedAt | Should -Be $before.ModifiedAt
        }

        It "Set-QmTunnel taken -Target 'db:5432' is refused with EndpointUriInvalid and changes nothing" {
            $captured = Invoke-Capture { Set-QmTunnel taken -Target 'db:5432' -PassThru }
            Assert-QmError $captured -Id 'EndpointUriInvalid' -Category 'InvalidArgument' -Target 'db:5432'
            (Get-QmTunnel taken).Target | Should -Be $echo.Uri
        }
    }

    Context 'PortInUse for a tunnel' {
        BeforeAll {
            $port = New-HeldPort
            $listen = "tcp://127.0.0.1:$port"
            $created = New-QmTunnel held-port -Listen $listen -Via $self -Target $echo.Uri
            $captured = Invoke-Capture { Start-QmTunnel held-port -PassThru }
        }

        AfterAll {
            Remove-QmTunnel held-port -ErrorAction SilentlyContinue
        }

        It 'New-QmTunnel accepts the profile (the port is only bound by Start-QmTunnel)' {
            $created.Name | Should -Be 'held-port'
            "$($created.State)" | Should -Be 'Stopped'
        }

        It 'Start-QmTunnel reports PortInUse with the listen address as target' {
            Assert-QmError $captured -Id 'PortInUse' -Category 'ResourceBusy' -Target $listen -MessagePattern "$port"
            $captured.Output | Should -BeNullOrEmpty
        }

        It 'leaves the tunnel Failed, with the reason as LastError' {
            $tunnel = Get-QmTunnel held-port
            "$($tunnel.State)" | Should -Be 'Failed'
            $tunnel.LastError | Should -Match "$port"
            $tunnel.BoundListen | Should -BeNullOrEmpty
        }

        It 'starts once the port is free again' {
            $listener = $script:heldListeners | Where-Object { $_.LocalEndpoint.Port -eq $port }
            $listener.Stop()
            $tunnel = Start-QmTunnel held-port -PassThru
            "$($tunnel.State)" | Should -BeIn @('Listening', 'Established')
            $tunnel.BoundListen | Should -Be $listen
        }
    }

    Context 'A target that refuses connections' {
        BeforeAll {
            $closedPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
            $tunnel = New-QmTunnel refused -Listen tcp://127.0.0.1:0 -Via $self -Target "tcp://127.0.0.1:$closedPort" -ConnectTimeout 00:00:05 |
                Start-QmTunnel -PassThru
            $outcome = [QmTunnel.PesterTools.EchoClient]::Probe($tunnel.BoundListen, 0, 20)
            $counted = { (Get-QmTunnelStats refused).ConnectionsCurrent -eq 0 -and (Get-QmTunnelStats refused).FailedConnections -ge 1 }
            try { Wait-Until $counted 'the refused connection is counted' }
            catch {
                # Say what was seen instead (the probe's outcome, the counters, each connection's state and error).
                $seen = Get-QmTunnelStats refused
                $connections = (Get-QmTunnelConnection refused | ForEach-Object { "$($_.State): $($_.Error)" }) -join '; '
                throw "$($_.Exception.Message) Probe: $outcome; current $($seen.ConnectionsCurrent), failed $($seen.FailedConnections), last error: $($seen.LastError); connections: $connections"
            }
            $stats = Get-QmTunnelStats refused
        }

        It 'resets the client connection' {
            $outcome | Should -Be 'Reset'
        }

        It 'counts one failed connection, with a LastError naming the target' {
            $stats.FailedConnections | Should -Be 1
            $stats.ConnectionsTotal | Should -Be 1
            $stats.BytesFromClients | Should -Be 0
            $stats.BytesToClients | Should -Be 0
            $stats.LastError | Should -Not -BeNullOrEmpty
            $stats.LastError | Should -Match "$closedPort"
            $stats.LastErrorAt | Should -Not -BeNullOrEmpty
        }

        It 'lists the connection as Failed, with its error' {
            $connections = @(Get-QmTunnelConnection refused)
            $connections.Count | Should -Be 1
            "$($connections[0].State)" | Should -Be 'Failed'
            $connections[0].Error | Should -Match "$closedPort"
            $connections[0].DisconnectedAt | Should -Not -BeNullOrEmpty
        }

        It 'keeps the tunnel running' {
            "$((Get-QmTunnel refused).State)" | Should -BeIn @('Listening', 'Established')
        }
    }

    It 'nothing half-created was saved: after a restart the server has exactly the tunnels it had' {
        $names = @((Get-QmTunnel).Name)
        Stop-QmTunnelServer
        $null = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru
        @((Get-QmTunnel).Name) | Should -Be $names
        $names | Should -Contain 'taken'
        $names | Should -Contain 'refused'
    }
}

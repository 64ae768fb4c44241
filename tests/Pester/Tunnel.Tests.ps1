#Requires -Version 7.4
<#
    End to end through the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH), with real sockets:
    an in-process server A and a daemon server B (qmtunnel-server), tunnels A -> B -> an echo server in this process:
    - 100 MiB with SHA-256 equal both ways, counted exactly by Get-QmTunnelStats and Get-QmTunnelConnection;
    - 200 concurrent connections through one tunnel, each with its own random data, all intact;
    - half-close end to end (the target answers only after the client's FIN);
    - the pipeline (Get-QmTunnel | Stop-QmTunnel -PassThru, wildcards);
    - profiles survive a restart of A on the same data path; started tunnels start again; Set-QmTunnel persists,
      Remove-QmTunnel (-WhatIf) removes;
    - Stop-QmTunnelServer on the daemon object ends the daemon process.
    Every server started here is stopped in AfterAll, even when a test fails; the data paths are temp folders.
    Helpers: TestTools.cs (echo server, streaming SHA-256 clients, free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule -Force


    # Stops the in-process server A and starts it again on the same data path (a new port: -Port 0).
    function Restart-ServerA {
        Stop-QmTunnelServer
        $script:serverA = Start-QmTunnelServer -Port 0 -DataPath $tmpA -PassThru
    }

    function Format-Failure([object[]]$Results) {
        ($Results | Where-Object { -not $_.Intact } | Select-Object -First 5 | ForEach-Object { $_.ToString() }) -join '; '
    }

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $tmpA = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-$run-A"
    $tmpB = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-$run-B"

    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    # Echoes only after the client has shut down its sending side: every byte back travels after the FIN.
    $lateEcho = [QmTunnel.PesterTools.EchoServer]::new($true)

    $script:serverA = Start-QmTunnelServer -Port 0 -DataPath $tmpA -PassThru
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath $tmpB
    # The default: a TLS link, B's certificate pinned by A on first use.
    $via = New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"
}

AfterAll {
    foreach ($server in @($echo, $lateEcho)) {
        if ($server) { $server.Dispose() }
    }
    # A (whichever restart of it runs), by its data path.
    Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $tmpA } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    # B, if a test failed before stopping it: gracefully, then by force, by its process id.
    if ($serverB -and $serverB.ProcessId) {
        $live = Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }
        if ($live) {
            $live | Stop-QmTunnelServer -ErrorAction SilentlyContinue
            if (Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }) {
                Stop-Process -Id $serverB.ProcessId -Force -ErrorAction SilentlyContinue
            }
        }
    }
    foreach ($path in @($tmpA, $tmpB)) {
        if ($path -and (Test-Path -LiteralPath $path)) {
            Remove-Item -LiteralPath $path -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}

Describe 'qmTunnel end to end: in-process server A, daemon server B, echo server' {
    Context 'The two servers' {
        It 'A runs in this process, on a port of its own, with its data path' {
            $serverA | Should -BeOfType 'QmTunnel.Engine.Management.ServerInfo'
            $serverA.IsDaemon | Should -BeFalse
            $serverA.ProcessId | Should -BeNullOrEmpty
            $serverA.Port | Should -BeGreaterThan 0
            $serverA.DataPath | Should -Be $tmpA
            $serverA.Address | Should -Be "qmt://127.0.0.1:$($serverA.Port)"
            $serverA.CertificateThumbprint | Should -Match '^[0-9A-F]{64}$'
            $serverA.AllowPlainLinks | Should -BeFalse
            Join-Path $tmpA 'qmtunnel.db' | Should -Exist
        }

        It 'B is a daemon: a ServerInfo with the ProcessId of a live qmtunnel-server process' {
            $serverB | Should -BeOfType 'QmTunnel.Engine.Management.ServerInfo'
            $serverB.IsDaemon | Should -BeTrue
            $serverB.ProcessId | Should -BeGreaterThan 0
            $serverB.ProcessId | Should -Not -Be $PID
            $process = Get-Process -Id $serverB.ProcessId -ErrorAction SilentlyContinue
            $process | Should -Not -BeNullOrEmpty
            $process.HasExited | Should -BeFalse
            $serverB.Port | Should -BeGreaterThan 0
            $serverB.Port | Should -Not -Be $serverA.Port
            $serverB.DataPath | Should -Be $tmpB
            # B listens: a plain TCP connection to its port is accepted.
            $client = [System.Net.Sockets.TcpClient]::new()
            try {
                $client.Connect('127.0.0.1', $serverB.Port)
                $client.Connected | Should -BeTrue
            }
            finally {
                $client.Dispose()
            }
        }

        It 'Get-QmTunnelServer lists both' {
            $servers = @(Get-QmTunnelServer)
            @($servers | Where-Object { -not $_.IsDaemon }).ServerId | Should -Be $serverA.ServerId
            @($servers | Where-Object { $_.IsDaemon }).ProcessId | Should -Contain $serverB.ProcessId
        }
    }

    Context '100 MiB through tunnel big (A -> B -> echo)' {
        BeforeAll {
            $size = 100MB
            $tunnel = New-QmTunnel big -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri | Start-QmTunnel -PassThru
            $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, $size, 180)
            Wait-Until { (Get-QmTunnelStats big).ConnectionsCurrent -eq 0 } 'the connection of big is closed'
            $stats = Get-QmTunnelStats big
            $connections = @(Get-QmTunnelConnection big)
        }

        It 'is started, listening on the port it picked' {
            "$($tunnel.State)" | Should -BeIn @('Listening', 'Established')
            $tunnel.Listen | Should -Be 'tcp://127.0.0.1:0'
            $tunnel.BoundListen | Should -Match '^tcp://127\.0\.0\.1:(?!0$)\d+$'
            @($tunnel.Via) | Should -Be @("$via")
            $tunnel.Target | Should -Be $echo.Uri
        }

        It 'carries 100 MiB there and back, SHA-256 equal both ways' {
            $result.Error | Should -BeNullOrEmpty
            $result.BytesSent | Should -Be $size
            $result.BytesReceived | Should -Be $size
            $result.ReceivedSha256 | Should -Be $result.SentSha256
            $result.ReceivedEnd | Should -BeTrue
        }

        It 'Get-QmTunnelStats counts exactly those bytes and one connection' {
            $stats.BytesFromClients | Should -Be $size
            $stats.BytesToClients | Should -Be $size
            $stats.LinkBytesSent | Should -BeGreaterThan $size
            $stats.LinkBytesReceived | Should -BeGreaterThan $size
            $stats.ConnectionsTotal | Should -Be 1
            $stats.ConnectionsCurrent | Should -Be 0
            $stats.FailedConnections | Should -Be 0
            $stats.RejectedConnections | Should -Be 0
            $stats.LastError | Should -BeNullOrEmpty
            "$($stats.State)" | Should -Be 'Established'
        }

        It 'Get-QmTunnelConnection shows the closed connection with its bytes' {
            $connections.Count | Should -Be 1
            $connection = $connections[0]
            $connection.Tunnel | Should -Be 'big'
            "$($connection.State)" | Should -Be 'Closed'
            $connection.BytesFromClient | Should -Be $size
            $connection.BytesToClient | Should -Be $size
            $connection.Target | Should -Be $echo.Uri
            $connection.Error | Should -BeNullOrEmpty
            $connection.DisconnectedAt | Should -Not -BeNullOrEmpty
            $connection.DisconnectedAt | Should -BeGreaterOrEqual $connection.ConnectedAt
        }
    }

    Context '200 concurrent connections through tunnel bidi-many' {
        BeforeAll {
            $count = 200
            $tunnel = New-QmTunnel bidi-many -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri -MaxConnections 250 | Start-QmTunnel -PassThru
            # 256 KiB + up to 64 KiB each: every client its own random data and its own size. The clients connect one
            # after another (each waits for its first echo), are then all open together, and then all transfer at once.
            $batch = [QmTunnel.PesterTools.EchoBatch]::Open($tunnel.BoundListen, $count, 256KB, 64KB, 120)
            try {
                $whileOpen = Get-QmTunnelStats bidi-many
                $openConnections = @(Get-QmTunnelConnection bidi-many -State Open)
                $endedEarly = $batch.Ended
            }
            finally {
                $results = $batch.Finish()
            }
            Wait-Until { (Get-QmTunnelStats bidi-many).ConnectionsCurrent -eq 0 } 'the connections of bidi-many are closed'
            $stats = Get-QmTunnelStats bidi-many
        }

        It 'holds all 200 open at the same time' {
            $endedEarly | Should -Be 0
            $whileOpen.ConnectionsCurrent | Should -Be $count
            $openConnections.Count | Should -Be $count
        }

        It 'delivers every connection intact' {
            $results.Count | Should -Be $count
            @($results | Where-Object { -not $_.Intact }).Count | Should -Be 0 -Because (Format-Failure $results)
        }

        It 'gave each connection its own data' {
            @($results.SentSha256 | Sort-Object -Unique).Count | Should -Be $count
        }

        It 'Get-QmTunnelStats shows 200 connections, none failed or rejected, and all their bytes' {
            $stats.ConnectionsTotal | Should -Be $count
            $stats.ConnectionsCurrent | Should -Be 0
            $stats.FailedConnections | Should -Be 0
            $stats.RejectedConnections | Should -Be 0
            $sent = ($results | Measure-Object -Property BytesSent -Sum).Sum
            $stats.BytesFromClients | Should -Be $sent
            $stats.BytesToClients | Should -Be $sent
        }

        It 'Get-QmTunnelConnection lists them closed, without errors' {
            $connections = @(Get-QmTunnelConnection bidi-many)
            $connections.Count | Should -Be $count
            @($connections | Where-Object { "$($_.State)" -ne 'Closed' -or $_.Error }).Count | Should -Be 0
        }

        It '200 clients connecting at the same moment are all intact' {
            # Regression test: Open frames must reach the wire in stream-id order even when clients arrive together.
            $burst = New-QmTunnel burst -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri -MaxConnections 250 | Start-QmTunnel -PassThru
            try {
                $simultaneous = [QmTunnel.PesterTools.EchoClient]::RunMany($burst.BoundListen, $count, 128KB, 64KB, 120)
                @($simultaneous | Where-Object { -not $_.Intact }).Count | Should -Be 0 -Because (Format-Failure $simultaneous)
                Wait-Until { (Get-QmTunnelStats burst).ConnectionsCurrent -eq 0 } 'the connections of burst are closed'
                $burstStats = Get-QmTunnelStats burst
                $burstStats.ConnectionsTotal | Should -Be $count
                $burstStats.FailedConnections | Should -Be 0
            }
            finally {
                Remove-QmTunnel burst
            }
        }
    }

    Context 'Half-close end to end (tunnel half; the target answers only after the client''s FIN)' {
        BeforeAll {
            $size = 4MB + 17
            $tunnel = New-QmTunnel half -Listen tcp://127.0.0.1:0 -Via $via -Target $lateEcho.Uri | Start-QmTunnel -PassThru
            $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, $size, 60)
        }

        It 'a client that shuts down its sending side still receives the whole answer, then the end' {
            $result.Error | Should -BeNullOrEmpty
            $result.BytesSent | Should -Be $size
            $result.BytesReceived | Should -Be $size
            $result.ReceivedSha256 | Should -Be $result.SentSha256
            $result.ReceivedEnd | Should -BeTrue
        }

        It 'the answer really waits for the FIN: without it, nothing comes back' {
            # Still open after 1 s, and not one byte back (a plain "Timeout" would also be the answer of an echo that did not wait).
            [QmTunnel.PesterTools.EchoClient]::Probe($tunnel.BoundListen, 1000, 1) | Should -Be 'Timeout 0'
        }
    }

    Context 'The pipeline' {
        It "Get-QmTunnel 'bi*' selects by wildcard" {
            @((Get-QmTunnel 'bi*').Name) | Should -Be @('bidi-many', 'big')
            @((Get-QmTunnel '*half').Name) | Should -Be @('half')
        }

        It 'Get-QmTunnel half | Stop-QmTunnel -PassThru outputs it Stopped' {
            $listen = (Get-QmTunnel half).BoundListen
            $stopped = Get-QmTunnel half | Stop-QmTunnel -PassThru
            @($stopped).Count | Should -Be 1
            $stopped.Name | Should -Be 'half'
            "$($stopped.State)" | Should -Be 'Stopped'
            $stopped.BoundListen | Should -BeNullOrEmpty
            "$((Get-QmTunnel half).State)" | Should -Be 'Stopped'
            [QmTunnel.PesterTools.EchoClient]::Probe($listen, 0, 5) | Should -Match '^ConnectFailed'
        }

        It 'takes names by property: [pscustomobject]@{ Name } | Get-QmTunnelStats' {
            $stats = [pscustomobject]@{ Name = 'big' } | Get-QmTunnelStats
            $stats.Name | Should -Be 'big'
            $stats.BytesFromClients | Should -Be 100MB
        }
    }

    Context 'Restarting A on the same data path' {
        BeforeAll {
            $before = Get-QmTunnel big
            $namesBefore = @((Get-QmTunnel).Name)
            Stop-QmTunnelServer
            $serversBetween = @(Get-QmTunnelServer)
            $script:serverA = Start-QmTunnelServer -Port 0 -DataPath $tmpA -PassThru
            $after = Get-QmTunnel big
        }

        It 'Stop-QmTunnelServer stopped A (B kept running)' {
            @($serversBetween | Where-Object { -not $_.IsDaemon }) | Should -BeNullOrEmpty
            @($serversBetween.ProcessId) | Should -Contain $serverB.ProcessId
        }

        It 'A comes back with every tunnel' {
            @((Get-QmTunnel).Name) | Should -Be $namesBefore
        }

        It 'big has the same settings' {
            foreach ($property in 'Name', 'Listen', 'Target', 'MaxConnections', 'ConnectTimeout', 'NoDelay', 'KeepAlive', 'BufferSize',
                'Persistent', 'Description', 'Direction', 'Protocol') {
                $after.$property | Should -Be $before.$property -Because "$property is saved"
            }
            @($after.Via) | Should -Be @($before.Via)
            # The database keeps timestamps to the millisecond.
            $after.CreatedAt.ToUnixTimeMilliseconds() | Should -Be $before.CreatedAt.ToUnixTimeMilliseconds()
        }

        It 'big was started, so it runs again (on a new port picked for tcp://127.0.0.1:0)' {
            "$($after.State)" | Should -BeIn @('Listening', 'Established')
            $after.BoundListen | Should -Match '^tcp://127\.0\.0\.1:\d+$'
        }

        It 'big still carries data, counted from zero' {
            $result = [QmTunnel.PesterTools.EchoClient]::Run($after.BoundListen, 8MB, 60)
            $result.Intact | Should -BeTrue -Because $result.ToString()
            Wait-Until { (Get-QmTunnelStats big).ConnectionsCurrent -eq 0 } 'the connection of big is closed'
            $stats = Get-QmTunnelStats big
            $stats.ConnectionsTotal | Should -Be 1
            $stats.BytesFromClients | Should -Be 8MB
            $stats.BytesToClients | Should -Be 8MB
        }

        It 'half was stopped, so it stays stopped' {
            "$((Get-QmTunnel half).State)" | Should -Be 'Stopped'
        }
    }

    Context 'Set-QmTunnel and Remove-QmTunnel' {
        BeforeAll {
            $null = New-QmTunnel setme -Listen tcp://127.0.0.1:0 -Via $via -Target $echo.Uri -Description 'to change'
        }

        It 'Set-QmTunnel changes MaxConnections and Description, and only those' {
            $before = Get-QmTunnel setme
            $changed = Set-QmTunnel setme -MaxConnections 7 -Description 'changed' -PassThru
            $changed.MaxConnections | Should -Be 7
            $changed.Description | Should -Be 'changed'
            $changed.Target | Should -Be $before.Target
            $changed.BufferSize | Should -Be $before.BufferSize
            $changed.ConnectTimeout | Should -Be $before.ConnectTimeout
            (Get-QmTunnel setme).MaxConnections | Should -Be 7
        }

        It 'Set-QmTunnel on a running tunnel keeps it running, with the new setting' {
            $changed = Get-QmTunnel big | Set-QmTunnel -MaxConnections 50 -PassThru
            $changed.MaxConnections | Should -Be 50
            "$($changed.State)" | Should -BeIn @('Listening', 'Established')
            $result = [QmTunnel.PesterTools.EchoClient]::Run($changed.BoundListen, 1MB, 30)
            $result.Intact | Should -BeTrue -Because $result.ToString()
        }

        It 'the changes persist across a restart of A' {
            Restart-ServerA
            $setme = Get-QmTunnel setme
            $setme.MaxConnections | Should -Be 7
            $setme.Description | Should -Be 'changed'
            "$($setme.State)" | Should -Be 'Stopped'
            $big = Get-QmTunnel big
            $big.MaxConnections | Should -Be 50
            "$($big.State)" | Should -BeIn @('Listening', 'Established')
        }

        It 'Remove-QmTunnel -WhatIf removes nothing' {
            Remove-QmTunnel setme -WhatIf
            (Get-QmTunnel setme).Name | Should -Be 'setme'
        }

        It 'Remove-QmTunnel removes it, also from the database' {
            $countBefore = @(Get-QmTunnel).Count
            Get-QmTunnel setme | Remove-QmTunnel
            Get-QmTunnel setme -ErrorAction SilentlyContinue -ErrorVariable notFound | Should -BeNullOrEmpty
            $notFound[0].FullyQualifiedErrorId | Should -Match '^TunnelNotFound'
            @(Get-QmTunnel).Count | Should -Be ($countBefore - 1)
            Restart-ServerA
            Get-QmTunnel setme -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            @(Get-QmTunnel).Count | Should -Be ($countBefore - 1)
        }
    }

    Context 'Stopping the daemon' {
        BeforeAll {
            $process = Get-Process -Id $serverB.ProcessId
            $bigListen = (Get-QmTunnel big).BoundListen
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $serverB | Stop-QmTunnelServer -WarningVariable stopWarnings
            $exited = $process.WaitForExit(15000)
            $clock.Stop()
        }

        It 'Stop-QmTunnelServer on the daemon object ends its process within 15 s' {
            $exited | Should -BeTrue
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
            Get-Process -Id $serverB.ProcessId -ErrorAction SilentlyContinue | Where-Object { -not $_.HasExited } | Should -BeNullOrEmpty
        }

        It 'stopped it gracefully (SIGTERM; no warning that it had to be killed)' {
            $stopWarnings | Should -BeNullOrEmpty
        }

        It 'Get-QmTunnelServer no longer lists it; A still runs' {
            @(Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }) | Should -BeNullOrEmpty
            @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }).Count | Should -Be 1
        }

        It 'stopping it again reports ServerNotRunning' {
            $serverB | Stop-QmTunnelServer -ErrorAction SilentlyContinue -ErrorVariable again
            $again.Count | Should -Be 1
            $again[0].FullyQualifiedErrorId | Should -Match '^ServerNotRunning'
        }

        It 'a client of a tunnel through it is reset and counted as failed' {
            $failedBefore = (Get-QmTunnelStats big).FailedConnections
            [QmTunnel.PesterTools.EchoClient]::Probe($bigListen, 0, 30) | Should -Be 'Reset'
            Wait-Until { (Get-QmTunnelStats big).FailedConnections -gt $failedBefore } 'the failed connection is counted'
            (Get-QmTunnelStats big).LastError | Should -Not -BeNullOrEmpty
        }
    }
}

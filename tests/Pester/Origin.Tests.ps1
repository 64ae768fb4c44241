#Requires -Version 7.4
<#
    Objects go back to where they came from, through the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH),
    with real servers on loopback: A is the in-process server, B a qmtunnel-server daemon reached through a session.
    The SAME names exist on both: tunnel 'twin' (and 'fresh' for New-QmTunnel), user 'twin' and 'fresh', group 'Twins'
    and 'Spare', and the pin of B's address, which A, B (a tunnel through itself) and this user's client pins all hold.
    - every producer | consumer pair of cmdlets, from B through the session and from A: the server the objects came
      from changed (or answered) and the other did not;
    - an explicit -Session for another server is SessionMismatch for each object and changes nothing; a second
      session to the same server is accepted; -Client with a server's pin and -Session with a client pin too;
    - objects of both servers in one pipeline each reach their own, -Follow included;
    - a plain name goes to the in-process server or -Session; an Origin known only as text (Import-Csv) is matched by
      name or refused; an object from a closed session is SessionClosed, and from a restarted in-process server
      ServerNotRunning;
    - the Origin is small in ConvertTo-Json and shown by the views.
    The client's pins go to a temporary QMTUNNEL_DATA folder, not the user's own file.
#>

BeforeDiscovery {
    # Each pair runs twice: with objects read from B through the session, then with objects read from A.
    $directions = @(
        @{ Direction = 'B through the session'; FromSession = $true }
        @{ Direction = 'the in-process server A'; FromSession = $false }
    )
    # Action pairs: Run (given the splat of the side the objects come from) changes something that Read shows; the
    # side the objects came from reads After, the other side still Before. Query pairs: Run returns what the answering
    # server says, and it must be Expected (a value only the side the objects came from has).
    $pairs = @(
        @{ Pair = 'Get-QmTunnel | Start-QmTunnel'; Before = 'Stopped'; After = 'Started'
            Run = { param($here) Get-QmTunnel twin @here | Start-QmTunnel }; Read = { param($on) Get-TwinState twin $on } }
        @{ Pair = 'Get-QmTunnel | Stop-QmTunnel'; Before = 'Started'; After = 'Stopped'
            Setup = { param($here, $there) Start-QmTunnel twin @here; Start-QmTunnel twin @there }
            Run = { param($here) Get-QmTunnel twin @here | Stop-QmTunnel }; Read = { param($on) Get-TwinState twin $on } }
        @{ Pair = 'Get-QmTunnel | Set-QmTunnel'; Before = 'initial'; After = 'changed'
            Run = { param($here) Get-QmTunnel twin @here | Set-QmTunnel -Description changed }; Read = { param($on) (Get-QmTunnel twin @on).Description } }
        @{ Pair = 'Get-QmTunnel | Remove-QmTunnel'; Before = 1; After = 0
            Run = { param($here) Get-QmTunnel twin @here | Remove-QmTunnel }; Read = { param($on) @(Get-QmTunnel twin @on -ErrorAction SilentlyContinue).Count } }
        @{ Pair = 'Get-QmTunnel | Get-QmTunnel'; Expected = 'here'; Setup = { param($here, $there) Set-TwinMarks $here $there }
            Run = { param($here) (Get-QmTunnel twin @here | Get-QmTunnel).Description } }
        @{ Pair = 'Get-QmTunnel | Get-QmTunnelStats'; Expected = 'Started'; Setup = { param($here, $there) Start-QmTunnel twin @here }
            Run = { param($here) ConvertTo-TwinState (Get-QmTunnel twin @here | Get-QmTunnelStats).State } }
        @{ Pair = 'Get-QmTunnel | Get-QmTunnelConnection'; Expected = 2
            Setup = { param($here, $there) Add-TwinConnection $here 2; Add-TwinConnection $there 1 }
            Run = { param($here) @(Get-QmTunnel twin @here | Get-QmTunnelConnection).Count } }
        @{ Pair = 'Get-QmTunnelStats | Stop-QmTunnel'; Before = 'Started'; After = 'Stopped'
            Setup = { param($here, $there) Start-QmTunnel twin @here; Start-QmTunnel twin @there }
            Run = { param($here) Get-QmTunnelStats twin @here | Stop-QmTunnel }; Read = { param($on) Get-TwinState twin $on } }
        @{ Pair = 'Get-QmTunnelStats | Get-QmTunnel'; Expected = 'here'; Setup = { param($here, $there) Set-TwinMarks $here $there }
            Run = { param($here) (Get-QmTunnelStats twin @here | Get-QmTunnel).Description } }
        @{ Pair = 'New-QmTunnel | Start-QmTunnel'; Before = 'Stopped'; After = 'Started'
            Setup = { param($here, $there) $null = New-Twin fresh $there }
            Run = { param($here) New-Twin fresh $here | Start-QmTunnel }; Read = { param($on) Get-TwinState fresh $on } }
        @{ Pair = 'Start-QmTunnel -PassThru | Stop-QmTunnel'; Before = 'Started'; After = 'Stopped'
            Setup = { param($here, $there) Start-QmTunnel twin @there }
            Run = { param($here) Start-QmTunnel twin -PassThru @here | Stop-QmTunnel }; Read = { param($on) Get-TwinState twin $on } }
        @{ Pair = 'Set-QmTunnel -PassThru | Start-QmTunnel'; Before = 'Stopped'; After = 'Started'
            Run = { param($here) Set-QmTunnel twin -Description set -PassThru @here | Start-QmTunnel }; Read = { param($on) Get-TwinState twin $on } }
        @{ Pair = 'Get-QmTunnelUser | Set-QmTunnelUser'; Before = 'initial'; After = 'changed'
            Run = { param($here) Get-QmTunnelUser twin @here | Set-QmTunnelUser -Description changed }; Read = { param($on) (Get-QmTunnelUser twin @on).Description } }
        @{ Pair = 'Get-QmTunnelUser | Remove-QmTunnelUser'; Before = 1; After = 0
            Run = { param($here) Get-QmTunnelUser twin @here | Remove-QmTunnelUser }; Read = { param($on) @(Get-QmTunnelUser twin @on -ErrorAction SilentlyContinue).Count } }
        @{ Pair = 'Get-QmTunnelUser | Get-QmTunnelUser'; Expected = 'here'; Setup = { param($here, $there) Set-TwinMarks $here $there }
            Run = { param($here) (Get-QmTunnelUser twin @here | Get-QmTunnelUser).Description } }
        @{ Pair = 'New-QmTunnelUser | Set-QmTunnelUser'; Before = $true; After = $false
            Setup = { param($here, $there) $null = New-QmTunnelUser fresh -Group Twins -Password $userPassword @there }
            Run = { param($here) New-QmTunnelUser fresh -Group Twins -Password $userPassword @here | Set-QmTunnelUser -Enabled $false }
            Read = { param($on) (Get-QmTunnelUser fresh @on).Enabled } }
        @{ Pair = 'Set-QmTunnelUser -PassThru | Remove-QmTunnelUser'; Before = 1; After = 0
            Run = { param($here) Set-QmTunnelUser twin -Description set -PassThru @here | Remove-QmTunnelUser }
            Read = { param($on) @(Get-QmTunnelUser twin @on -ErrorAction SilentlyContinue).Count } }
        @{ Pair = 'Get-QmTunnelGroup | Set-QmTunnelGroup'; Before = 'initial'; After = 'changed'
            Run = { param($here) Get-QmTunnelGroup Twins @here | Set-QmTunnelGroup -Description changed }; Read = { param($on) (Get-QmTunnelGroup Twins @on).Description } }
        @{ Pair = 'Get-QmTunnelGroup | Remove-QmTunnelGroup'; Before = 1; After = 0
            Setup = { param($here, $there) $null = New-QmTunnelGroup Spare @here; $null = New-QmTunnelGroup Spare @there }
            Run = { param($here) Get-QmTunnelGroup Spare @here | Remove-QmTunnelGroup }; Read = { param($on) @(Get-QmTunnelGroup Spare @on -ErrorAction SilentlyContinue).Count } }
        @{ Pair = 'Get-QmTunnelGroup | Get-QmTunnelGroup'; Expected = 'here'; Setup = { param($here, $there) Set-TwinMarks $here $there }
            Run = { param($here) (Get-QmTunnelGroup Twins @here | Get-QmTunnelGroup).Description } }
        @{ Pair = 'New-QmTunnelGroup | Set-QmTunnelGroup'; Before = 'initial'; After = 'changed'
            Setup = { param($here, $there) $null = New-QmTunnelGroup Spare -Description initial @there }
            Run = { param($here) New-QmTunnelGroup Spare -Description initial @here | Set-QmTunnelGroup -Description changed }
            Read = { param($on) (Get-QmTunnelGroup Spare @on).Description } }
        @{ Pair = 'Set-QmTunnelGroup -PassThru | Set-QmTunnelGroup'; Before = 'initial'; After = 'second'
            Run = { param($here) Set-QmTunnelGroup Twins -Description first -PassThru @here | Set-QmTunnelGroup -Description second }
            Read = { param($on) (Get-QmTunnelGroup Twins @on).Description } }
        @{ Pair = 'Get-QmTunnelServerConfig | Set-QmTunnelServerConfig'; Before = 100; After = 77
            Run = { param($here) Get-QmTunnelServerConfig @here | Set-QmTunnelServerConfig -MaxManagementSessions 77 }
            Read = { param($on) (Get-QmTunnelServerConfig @on).MaxManagementSessions } }
    )
    $cases = foreach ($pair in $pairs) { foreach ($direction in $directions) { $pair + $direction } }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-origin-$run"
    $savedDataEnv = $env:QMTUNNEL_DATA
    $env:QMTUNNEL_DATA = Join-Path $base 'client'
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $userPassword = ConvertTo-SecureString 'twin-password-1' -AsPlainText -Force

    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
    $serverA = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    $addressB = "qmt://127.0.0.1:$($serverB.Port)"
    $pin = "127.0.0.1:$($serverB.Port)"   # held by A, by B and by this user's client pins
    $s = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin
    $local = @{}
    $remote = @{ Session = $s }

    . (Join-Path $PSScriptRoot 'OriginTwins.ps1')

    # A tunnel on B through B itself, so B pins its own address as A does through its twin.
    $null = New-Twin pinself $remote
}

AfterAll {
    Get-QmTunnelSession | Disconnect-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
    Get-QmTunnelServer | Stop-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
    if ($echo) { $echo.Dispose() }
    $env:QMTUNNEL_DATA = $savedDataEnv
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Every object knows where it came from' {
    BeforeAll { Initialize-Twins }

    It 'carries its Origin: the session''s server, or the in-process server' {
        $fromB = Get-QmTunnel twin @remote
        $fromB.Origin.Kind | Should -Be 'Session'
        $fromB.Origin.Server | Should -Be $addressB
        $fromB.Origin.User | Should -Be 'admin'
        $fromB.Origin.ServerId | Should -Be $s.ServerId
        $fromB.Origin.GetSession() | Should -Be $s
        "$($fromB.Origin)" | Should -Be $addressB
        $fromA = Get-QmTunnel twin
        $fromA.Origin.Kind | Should -Be 'InProcess'
        "$($fromA.Origin)" | Should -Be 'in-process'
        $fromA.Origin.ServerId | Should -Be (Get-QmTunnelServer | Where-Object Kind -eq InProcess).ServerId
        foreach ($on in $local, $remote) {
            $kind = if ($on.Count) { 'Session' } else { 'InProcess' }
            @(
                Get-QmTunnelStats twin @on
                Get-QmTunnelUser twin @on
                Get-QmTunnelGroup Twins @on
                Get-QmTunnelKnownServer $pin @on
                Get-QmTunnelServerConfig @on
                Start-QmTunnel twin -PassThru @on
                Stop-QmTunnel twin -PassThru @on
            ) | ForEach-Object { $_.Origin.Kind | Should -Be $kind -Because "$($_.GetType().Name) from $kind" }
        }
        (Get-QmTunnelKnownServer -Client $pin).Origin.Kind | Should -Be 'ClientPins'
        $s.ServerInfo.Origin.Kind | Should -Be 'Session'
    }

    It 'keeps the Origin small in ConvertTo-Json -Depth 4' {
        $json = Get-QmTunnel twin @remote | ConvertTo-Json -Depth 4 | ConvertFrom-Json
        @($json.Origin.PSObject.Properties.Name) | Should -Be @('Kind', 'Server', 'User', 'ServerId')
        (Get-QmTunnelUser twin @remote | ConvertTo-Json -Depth 4).Length | Should -BeLessThan 1000
        ($s.ServerInfo | ConvertTo-Json -Depth 4).Length | Should -BeLessThan 2000
    }

    It 'shows it in the list view of a tunnel' {
        (Get-QmTunnel twin @remote | Format-List | Out-String) | Should -Match "Origin\s+:\s+$([regex]::Escape($addressB))"
    }
}

Describe 'Producer | consumer: <Pair>, objects from <Direction>' -ForEach $cases {
    BeforeAll {
        Initialize-Twins
        $here = if ($FromSession) { $remote } else { $local }
        $there = if ($FromSession) { $local } else { $remote }
        if ($Setup) { & $Setup $here $there }
    }

    It 'acts on the server the objects came from, and only there' {
        if ($null -ne $Expected) {
            & $Run $here | Should -Be $Expected
            return
        }
        & $Read $there | Should -Be $Before -Because 'the other server starts so'
        & $Run $here
        & $Read $here | Should -Be $After -Because "the objects came from $Direction"
        & $Read $there | Should -Be $Before -Because 'the same name on the other server is not touched'
    }
}

Describe 'An explicit -Session that disagrees with an object' {
    BeforeEach { Initialize-Twins }

    It 'is SessionMismatch for each object, naming both servers, and changes nothing' {
        $result = Invoke-Capture { Get-QmTunnel twin | Remove-QmTunnel -Session $s }
        Assert-OneError $result SessionMismatch
        $result.Errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $result.Errors[0].TargetObject | Should -Be 'twin'
        $result.Errors[0].Exception.Message | Should -Match 'in-process server'
        $result.Errors[0].Exception.Message | Should -Match ([regex]::Escape($addressB))
        $result.Errors[0].Exception.Message | Should -Match 'Leave -Session out'
        @(Get-QmTunnel twin).Count | Should -Be 1
        @(Get-QmTunnel twin @remote).Count | Should -Be 1

        $toA = Connect-QmTunnelServer "qmt://127.0.0.1:$($serverA.Port)" -Credential $QmTestAdmin
        try {
            foreach ($script in { Get-QmTunnelUser twin @remote | Set-QmTunnelUser -Description x -Session $toA },
                                { Get-QmTunnelGroup Twins @remote | Set-QmTunnelGroup -Description x -Session $toA },
                                { Get-QmTunnelServerConfig @remote | Set-QmTunnelServerConfig -MaxManagementSessions 5 -Session $toA },
                                { Get-QmTunnel twin @remote | Get-QmTunnelStats -Session $toA }) {
                Assert-OneError (Invoke-Capture $script) SessionMismatch
            }
            (Get-QmTunnelUser twin).Description | Should -Be 'initial'
            (Get-QmTunnelUser twin @remote).Description | Should -Be 'initial'
            (Get-QmTunnelServerConfig).MaxManagementSessions | Should -Be 100
        }
        finally {
            Disconnect-QmTunnelServer $toA
        }
    }

    It 'accepts a -Session to the same server (another session, here as another user)' {
        $null = New-QmTunnelGroup Admins2 -Rights 'ChangeServerConfiguration, AdministerAllTunnels' @remote -ErrorAction SilentlyContinue
        $other = [pscredential]::new('other', $userPassword)
        $null = New-QmTunnelUser -Credential $other -Group Admins2 @remote -ErrorAction SilentlyContinue
        $s2 = Connect-QmTunnelServer $addressB -Credential $other
        try {
            Get-QmTunnel twin @remote | Set-QmTunnel -Description 'through s2' -Session $s2
            (Get-QmTunnel twin @remote).Description | Should -Be 'through s2'
            (Get-QmTunnel twin).Description | Should -Be 'initial'
        }
        finally {
            Disconnect-QmTunnelServer $s2
        }
    }
}

Describe 'Objects of both servers in one pipeline' {
    BeforeEach { Initialize-Twins }

    It 'each go to their own server' {
        @(Get-QmTunnel twin) + @(Get-QmTunnel twin @remote) | Set-QmTunnel -Description both
        (Get-QmTunnel twin).Description | Should -Be 'both'
        (Get-QmTunnel twin @remote).Description | Should -Be 'both'
        $stats = @(Get-QmTunnel twin @remote) + @(Get-QmTunnel twin) | Get-QmTunnelStats
        @($stats.Origin.Kind) | Should -Be @('Session', 'InProcess')
    }

    It 'are followed on each server at once with -Follow' {
        Start-QmTunnel twin @remote
        $objects = @(Get-QmTunnel twin) + @(Get-QmTunnel twin @remote)
        # In a runspace of its own, so a watch that never reports one server fails the test instead of hanging it.
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                    param($ModulePath, $Objects)
                    Import-Module $ModulePath
                    $seen = @{}
                    $Objects | Get-QmTunnelStats -Follow |
                        Where-Object { $kind = "$($_.Origin.Kind)"; $new = -not $seen.ContainsKey($kind); $seen[$kind] = $true; $new } |
                        Select-Object -First 2
                }).AddArgument((Get-QmTestModulePath)).AddArgument($objects)
            $handle = $ps.BeginInvoke()
            $handle.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) | Should -BeTrue -Because 'both servers report within 30 s'
            $updates = $ps.EndInvoke($handle)
            $ps.Streams.Error | Should -BeNullOrEmpty
        }
        finally {
            $ps.Stop()
            $ps.Dispose()
        }
        $fromB = $updates | Where-Object { "$($_.Origin.Kind)" -eq 'Session' }
        $fromA = $updates | Where-Object { "$($_.Origin.Kind)" -eq 'InProcess' }
        ConvertTo-TwinState $fromB.State | Should -Be 'Started'
        ConvertTo-TwinState $fromA.State | Should -Be 'Stopped'
    }
}

Describe 'Names and origins that are not live objects' {
    BeforeEach { Initialize-Twins }

    It 'a plain name goes to the in-process server, or to -Session' {
        [pscustomobject]@{ Name = 'twin' } | Start-QmTunnel
        Get-TwinState twin $local | Should -Be 'Started'
        Get-TwinState twin $remote | Should -Be 'Stopped'
        [pscustomobject]@{ Name = 'twin' } | Set-QmTunnel -Description plain @remote
        (Get-QmTunnel twin @remote).Description | Should -Be 'plain'
        (Get-QmTunnel twin).Description | Should -Be 'initial'
    }

    It 'an Origin known only as text (Import-Csv) is matched by name, or refused with SessionMismatch' {
        $csv = Join-Path $base 'tunnels.csv'
        Get-QmTunnel twin @remote | Export-Csv -LiteralPath $csv
        $result = Invoke-Capture { Import-Csv -LiteralPath $csv | Start-QmTunnel }
        Assert-OneError $result SessionMismatch
        $result.Errors[0].Exception.Message | Should -Match 'Connect-QmTunnelServer'
        Get-TwinState twin $local | Should -Be 'Stopped'
        Import-Csv -LiteralPath $csv | Start-QmTunnel @remote
        Get-TwinState twin $remote | Should -Be 'Started'
        Get-TwinState twin $local | Should -Be 'Stopped'

        Get-QmTunnel twin | Export-Csv -LiteralPath $csv
        Import-Csv -LiteralPath $csv | Start-QmTunnel
        Get-TwinState twin $local | Should -Be 'Started'
        Assert-OneError (Invoke-Capture { Import-Csv -LiteralPath $csv | Stop-QmTunnel @remote }) SessionMismatch
        Get-TwinState twin $remote | Should -Be 'Started'
    }

    It 'an object from a closed session is SessionClosed; a new session to the same server takes it' {
        $s2 = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin
        $old = Get-QmTunnel twin -Session $s2
        Disconnect-QmTunnelServer $s2
        $result = Invoke-Capture { $old | Start-QmTunnel }
        Assert-OneError $result SessionClosed
        $result.Errors[0].Exception.Message | Should -Match '-Session'
        Get-TwinState twin $remote | Should -Be 'Stopped'
        Get-TwinState twin $local | Should -Be 'Stopped'
        $old | Start-QmTunnel @remote
        Get-TwinState twin $remote | Should -Be 'Started'
        Get-TwinState twin $local | Should -Be 'Stopped'
    }
}

Describe 'Pins: server pins and this user''s client pins' {
    # The same name in three places; each test removes at most one and checks the others. Server pins are not made
    # again (the servers keep their links to B), so the order matters; the client pin is made again before each test.
    BeforeAll { Initialize-Twins }   # A's tunnel twin through B pins B on A

    BeforeEach {
        $again = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin
        Disconnect-QmTunnelServer $again
    }

    It 'the pin is held by A, by B and by this user''s client pins' {
        (Get-QmTunnelKnownServer $pin).Thumbprint | Should -Be $serverB.CertificateThumbprint
        (Get-QmTunnelKnownServer $pin @remote).Thumbprint | Should -Be $serverB.CertificateThumbprint
        (Get-QmTunnelKnownServer -Client $pin).Thumbprint | Should -Be $serverB.CertificateThumbprint
    }

    It 'Get-QmTunnelKnownServer -Client | Remove-QmTunnelKnownServer removes the client pin, not a server''s' {
        Get-QmTunnelKnownServer -Client $pin | Remove-QmTunnelKnownServer
        @(Get-QmTunnelKnownServer -Client $pin -ErrorAction SilentlyContinue).Count | Should -Be 0
        @(Get-QmTunnelKnownServer $pin).Count | Should -Be 1
        @(Get-QmTunnelKnownServer $pin @remote).Count | Should -Be 1
    }

    It 'refuses -Client with a server''s pin, and -Session with a client pin (SessionMismatch), removing nothing' {
        $result = Invoke-Capture { Get-QmTunnelKnownServer $pin | Remove-QmTunnelKnownServer -Client }
        Assert-OneError $result SessionMismatch
        $result.Errors[0].Exception.Message | Should -Match 'client pins'
        Assert-OneError (Invoke-Capture { Get-QmTunnelKnownServer -Client $pin | Remove-QmTunnelKnownServer @remote }) SessionMismatch
        Assert-OneError (Invoke-Capture { Get-QmTunnelKnownServer $pin @remote | Remove-QmTunnelKnownServer -Client }) SessionMismatch
        @(Get-QmTunnelKnownServer $pin).Count | Should -Be 1
        @(Get-QmTunnelKnownServer $pin @remote).Count | Should -Be 1
        @(Get-QmTunnelKnownServer -Client $pin).Count | Should -Be 1
    }

    It 'Get-QmTunnelKnownServer -Session | Remove-QmTunnelKnownServer removes B''s pin, not A''s or the client''s' {
        Get-QmTunnelKnownServer $pin @remote | Remove-QmTunnelKnownServer
        @(Get-QmTunnelKnownServer $pin @remote -ErrorAction SilentlyContinue).Count | Should -Be 0
        @(Get-QmTunnelKnownServer $pin).Count | Should -Be 1
        @(Get-QmTunnelKnownServer -Client $pin).Count | Should -Be 1
    }

    It 'Get-QmTunnelKnownServer | Remove-QmTunnelKnownServer removes A''s pin, not the client''s' {
        Get-QmTunnelKnownServer $pin | Remove-QmTunnelKnownServer
        @(Get-QmTunnelKnownServer $pin -ErrorAction SilentlyContinue).Count | Should -Be 0
        @(Get-QmTunnelKnownServer -Client $pin).Count | Should -Be 1
    }
}

Describe 'An in-process server started again' {
    It 'does not take objects of the one before it (ServerNotRunning); objects from a session need no in-process server' {
        Initialize-Twins
        $old = Get-QmTunnel twin
        Stop-QmTunnelServer -Confirm:$false
        Assert-OneError (Invoke-Capture { $old | Start-QmTunnel }) ServerNotRunning
        # Objects from a session, and the client pins, need no in-process server.
        Get-QmTunnel twin @remote | Start-QmTunnel
        Get-TwinState twin $remote | Should -Be 'Started'
        Get-QmTunnelKnownServer -Client $pin | Remove-QmTunnelKnownServer -WhatIf
        @(Get-QmTunnelKnownServer -Client $pin).Count | Should -Be 1
        Stop-QmTunnel twin @remote
        $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a')
        $result = Invoke-Capture { $old | Start-QmTunnel }
        Assert-OneError $result ServerNotRunning
        $result.Errors[0].Exception.Message | Should -Match 'List the objects again'
        Get-TwinState twin $local | Should -Be 'Stopped'
        Get-TwinState twin $remote | Should -Be 'Stopped'
    }
}

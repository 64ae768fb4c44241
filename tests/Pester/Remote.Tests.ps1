#Requires -Version 7.4
<#
    Remote management through the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH), with real servers on
    loopback: B is a qmtunnel-server daemon managed only through sessions, A is the in-process server.
    - Connect-QmTunnelServer logs in over TLS and returns a session that Get-QmTunnelSession lists; a wrong password is
      AuthenticationFailed (AuthenticationError), a wrong -CertificateThumbprint CertificateMismatch, both terminating;
    - through -Session: a group and users created on B (not on A); a tunnel created on B whose hop is A (B logs in to A)
      moves 50 MiB intact; Get-QmTunnelStats / Get-QmTunnelConnection (and -Follow) report B's counters;
    - a session as a user without AdministerAllTunnels does not see the admin's tunnel and is refused stopping it
      (PermissionDenied); after Disconnect-QmTunnelServer the session is refused with SessionClosed;
    - the same script manages B with -Session and A without it.
    The client's pins of B (trust on first use) go to a temporary QMTUNNEL_DATA folder, not the user's own file.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-remote-$run"
    $savedDataEnv = $env:QMTUNNEL_DATA
    $env:QMTUNNEL_DATA = Join-Path $base 'client'
    $echo = [QmTunnel.PesterTools.EchoServer]::new()

    $carolPassword = 'carol-password-123'
    $carol = [pscredential]::new('carol', (ConvertTo-SecureString $carolPassword -AsPlainText -Force))
    $wrong = [pscredential]::new('admin', (ConvertTo-SecureString 'not-the-password' -AsPlainText -Force))

    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
    $serverA = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    $addressB = "qmt://127.0.0.1:$($serverB.Port)"
    $s = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin

    # One script for any server: -Session manages that one, none the in-process server. Creates a group, a user
    # and a tunnel to the echo server through $Hop, moves data through it, and removes all of it again.
    function Invoke-ManagementScript([string]$Suffix, [object]$Hop, [object]$Session) {
        $on = if ($Session) { @{ Session = $Session } } else { @{} }
        $group = New-QmTunnelGroup "Script$Suffix" -Rights CreateTunnels -AllowRule 'L#*:*#*#*:*' @on
        $user = New-QmTunnelUser "script$Suffix" -Group $group.Name -Password (ConvertTo-SecureString 'script-password-1' -AsPlainText -Force) @on
        $tunnel = New-QmTunnel "script$Suffix" -Listen tcp://127.0.0.1:0 -Via $Hop -Target $echo.Uri @on | Start-QmTunnel -PassThru @on
        $moved = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)
        $stats = Get-QmTunnelStats $tunnel.Name @on
        Set-QmTunnel $tunnel.Name -Description 'changed by the script' @on
        $changed = Get-QmTunnel $tunnel.Name @on
        Remove-QmTunnel $tunnel.Name @on
        Remove-QmTunnelUser $user.Name @on
        Remove-QmTunnelGroup $group.Name @on
        [pscustomobject]@{
            Intact      = $moved.Intact
            Bytes       = $stats.BytesFromClients
            Description = $changed.Description
            Left        = @(Get-QmTunnel "script$Suffix" -ErrorAction SilentlyContinue @on).Count + @(Get-QmTunnelUser "script$Suffix" -ErrorAction SilentlyContinue @on).Count
        }
    }
}

AfterAll {
    Get-QmTunnelSession | Disconnect-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
    Get-QmTunnelServer | Stop-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
    if ($echo) { $echo.Dispose() }
    $env:QMTUNNEL_DATA = $savedDataEnv
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Connect-QmTunnelServer' {
    It 'logs in over TLS and returns an open session, listed by Get-QmTunnelSession' {
        $s | Should -BeOfType 'QmTunnel.Engine.Management.Remote.QmTunnelSession'
        $s.IsOpen | Should -BeTrue
        $s.Address | Should -Be $addressB
        $s.User | Should -Be 'admin'
        $s.Group | Should -Be 'Administrators'
        $s.ConnectedAt | Should -BeGreaterThan ([DateTimeOffset]::Now.AddMinutes(-10))
        @(Get-QmTunnelSession) | Should -Contain $s
        $table = $s | Format-Table | Out-String -Width 200
        foreach ($column in 'Address', 'User', 'Group', 'IsOpen', 'ConnectedAt') {
            $table | Should -Match "\b$column\b"
        }
        $table | Should -Match "$([regex]::Escape($addressB))\s+admin\s+Administrators\s+True\s+\d{4}-\d\d-\d\d \d\d:\d\d"
    }

    It 'pins the certificate on first use, and checks a -CertificateThumbprint given' {
        $pins = Get-Content (Join-Path $env:QMTUNNEL_DATA 'known-servers.txt')
        $pins | Should -Match "^127\.0\.0\.1:$($serverB.Port) $($serverB.CertificateThumbprint) "
        $pinned = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin -CertificateThumbprint $serverB.CertificateThumbprint
        try {
            $pinned.IsOpen | Should -BeTrue
            $pinned.Server.CertificateThumbprint | Should -Be $serverB.CertificateThumbprint
        }
        finally {
            Disconnect-QmTunnelServer $pinned
        }
        $result = Invoke-Capture { Connect-QmTunnelServer $addressB -Credential $QmTestAdmin -CertificateThumbprint ('AB' * 32) }
        $result.Terminating | Should -BeTrue
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'CertificateMismatch,*'
        $result.Errors[0].CategoryInfo.Category | Should -Be 'SecurityError'

        # The client's own pins: listed, and a removed one is pinned again on the next session.
        $own = Get-QmTunnelKnownServer -Client "127.0.0.1:$($serverB.Port)"
        $own.Thumbprint | Should -Be $serverB.CertificateThumbprint
        Remove-QmTunnelKnownServer -Client "127.0.0.1:$($serverB.Port)"
        Get-QmTunnelKnownServer -Client "127.0.0.1:$($serverB.Port)" -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $gone = Invoke-Capture { Remove-QmTunnelKnownServer -Client "127.0.0.1:$($serverB.Port)" }
        $gone.Errors[0].FullyQualifiedErrorId | Should -BeLike 'KnownServerNotFound,*'
        $again = Connect-QmTunnelServer $addressB -Credential $QmTestAdmin
        try {
            (Get-QmTunnelKnownServer -Client "127.0.0.1:$($serverB.Port)").Thumbprint | Should -Be $serverB.CertificateThumbprint
            $conflict = Invoke-Capture { Get-QmTunnelKnownServer -Client -Session $again }
            $conflict.Errors[0].FullyQualifiedErrorId | Should -BeLike 'ParameterConflict,*'
        }
        finally {
            Disconnect-QmTunnelServer $again
        }
    }

    It 'refuses a wrong password with AuthenticationFailed (AuthenticationError), terminating, and keeps no session' {
        $before = @(Get-QmTunnelSession).Count
        $result = Invoke-Capture { Connect-QmTunnelServer $addressB -Credential $wrong }
        $result.Terminating | Should -BeTrue
        $result.Output | Should -BeNullOrEmpty
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
        $result.Errors[0].CategoryInfo.Category | Should -Be 'AuthenticationError'
        $result.Errors[0].Exception.Message | Should -Not -Match 'not-the-password'
        @(Get-QmTunnelSession).Count | Should -Be $before
    }

    It 'reports a server that does not answer with HopConnectFailed, and a bad -ConnectTimeout with ConnectTimeoutInvalid' {
        $free = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $result = Invoke-Capture { Connect-QmTunnelServer "qmt://127.0.0.1:$free" -Credential $QmTestAdmin -ConnectTimeout 00:00:05 }
        $result.Terminating | Should -BeTrue
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'HopConnectFailed,*'
        $result = Invoke-Capture { Connect-QmTunnelServer $addressB -Credential $QmTestAdmin -ConnectTimeout 0 }
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'ConnectTimeoutInvalid,*'
        $result.Errors[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'Managing the daemon B through -Session' {
    It 'creates a group and users on B, not on the in-process server' {
        $group = New-QmTunnelGroup Viewers -Rights CreateTunnels -AllowRule "L#*:*#*#*:*" -Session $s -WarningAction SilentlyContinue
        $group.Name | Should -Be 'Viewers'
        $user = New-QmTunnelUser -Credential $carol -Group Viewers -Session $s
        $user.Group | Should -Be 'Viewers'
        $null = New-QmTunnelUser dave -Group Viewers -Session $s -WarningAction SilentlyContinue
        @(Get-QmTunnelUser -Group Viewers -Session $s).Name | Should -Be @('carol', 'dave')
        Set-QmTunnelUser dave -Description 'changed remotely' -Session $s
        (Get-QmTunnelUser dave -Session $s).Description | Should -Be 'changed remotely'
        Remove-QmTunnelUser dave -Session $s
        (Get-QmTunnelGroup Viewers -Session $s).UserCount | Should -Be 1
        Get-QmTunnelUser carol -ErrorAction SilentlyContinue | Should -BeNullOrEmpty   # not on A
        Get-QmTunnelGroup Viewers -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'logs a session in with a client certificate mapped to a user created through the session' {
        $pfx = Join-Path $base 'robot.pfx'
        $thumbprint = New-QmTestClientCertificate $pfx
        $null = New-QmTunnelUser robot -Group Viewers -CertificateThumbprint $thumbprint -Session $s -WarningAction SilentlyContinue
        $robot = Connect-QmTunnelServer $addressB -CertificatePath $pfx
        try {
            $robot.User | Should -Be 'robot'
            $robot.Group | Should -Be 'Viewers'
            (Get-QmTunnelUser -Session $robot).Name | Should -Be 'robot'   # without ChangeServerConfiguration: only itself
        }
        finally {
            Disconnect-QmTunnelServer $robot
        }
    }

    It 'creates on B a tunnel through A (B logs in to A) that moves 50 MiB intact' {
        $tunnel = New-QmTunnel remote1 -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($serverA.Port)") -Target $echo.Uri -Session $s
        $tunnel.Owner | Should -Be 'admin'
        $started = Start-QmTunnel remote1 -Session $s -PassThru
        "$($started.State)" | Should -BeIn @('Listening', 'Established')
        $started.BoundListen | Should -Match '^tcp://127\.0\.0\.1:\d+$'
        Get-QmTunnel remote1 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty   # the in-process server has no such tunnel
        ([QmTunnel.PesterTools.EchoClient]::Run($started.BoundListen, 50MB, 120)).Intact | Should -BeTrue
    }

    It 'Get-QmTunnelStats and Get-QmTunnelConnection -Session report B''s counters' {
        $stats = Get-QmTunnelStats remote1 -Session $s
        $stats.BytesFromClients | Should -BeGreaterOrEqual 50MB
        $stats.BytesToClients | Should -BeGreaterOrEqual 50MB
        $stats.ConnectionsTotal | Should -BeGreaterOrEqual 1
        $connection = @(Get-QmTunnelConnection remote1 -Session $s)[0]
        $connection.Tunnel | Should -Be 'remote1'
        $connection.BytesFromClient | Should -BeGreaterOrEqual 50MB
    }

    It 'Get-QmTunnelStats -Session -Follow yields updates as they come, and stops with the pipeline' {
        $listen = (Get-QmTunnel remote1 -Session $s).BoundListen
        $updates = Get-QmTunnelStats remote1 -Session $s -Follow | ForEach-Object {
            # each update causes the next: one more connection through the tunnel
            $null = [QmTunnel.PesterTools.EchoClient]::Run($listen, 1000, 30)
            $_
        } | Select-Object -First 3
        $updates.Count | Should -Be 3
        $updates | ForEach-Object { $_ | Should -BeOfType 'QmTunnel.Engine.Management.TunnelStats' }
        $updates[2].ConnectionsTotal | Should -BeGreaterThan $updates[0].ConnectionsTotal
        $s.IsOpen | Should -BeTrue   # the session goes on after a stopped watch
        (Get-QmTunnelStats remote1 -Session $s).ConnectionsTotal | Should -BeGreaterOrEqual $updates[2].ConnectionsTotal
    }

    It 'changes the tunnel''s settings with Set-QmTunnel -Session, and -WhatIf changes nothing' {
        Set-QmTunnel remote1 -Description 'set remotely' -MaxConnections 50 -Session $s
        $tunnel = Get-QmTunnel remote1 -Session $s
        $tunnel.Description | Should -Be 'set remotely'
        $tunnel.MaxConnections | Should -Be 50
        Set-QmTunnel remote1 -Description 'what if' -Session $s -WhatIf
        (Get-QmTunnel remote1 -Session $s).Description | Should -Be 'set remotely'
    }

    It 'shows B''s pins and configuration' {
        (Get-QmTunnelKnownServer -Session $s).Server | Should -Contain "127.0.0.1:$($serverA.Port)"
        $config = Get-QmTunnelServerConfig -Session $s
        $config.Port | Should -Be $serverB.Port
        $config.CertificateThumbprint | Should -Be $serverB.CertificateThumbprint
    }

    It 'turns AcceptCompression of B off and on with Set-QmTunnelServerConfig -Session, shown by Get-QmTunnelServerConfig' {
        (Get-QmTunnelServerConfig -Session $s).AcceptCompression | Should -BeTrue
        Set-QmTunnelServerConfig -AcceptCompression:$false -Session $s -WhatIf
        (Get-QmTunnelServerConfig -Session $s).AcceptCompression | Should -BeTrue
        (Set-QmTunnelServerConfig -AcceptCompression:$false -Session $s -PassThru).AcceptCompression | Should -BeFalse
        $config = Get-QmTunnelServerConfig -Session $s
        $config.AcceptCompression | Should -BeFalse
        ($config | Out-String) | Should -Match 'AcceptCompression\s*:\s*False'
        Set-QmTunnelServerConfig -AcceptCompression -Session $s
        (Get-QmTunnelServerConfig -Session $s).AcceptCompression | Should -BeTrue
    }

    It 'completes tunnel names from the -Session on the command line' {
        $line = 'Stop-QmTunnel -Session $s -Name rem'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('remote1')
        $line = 'Stop-QmTunnel -Name rem'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches | Should -BeNullOrEmpty   # A has none
    }
}

Describe 'A session as a user without AdministerAllTunnels' {
    BeforeAll {
        $s2 = Connect-QmTunnelServer $addressB -Credential $carol
    }

    It 'logs in as that user' {
        $s2.User | Should -Be 'carol'
        $s2.Group | Should -Be 'Viewers'
    }

    It 'does not see the admin''s tunnel' {
        @(Get-QmTunnel -Session $s2) | Should -BeNullOrEmpty
        @(Get-QmTunnelStats -Session $s2) | Should -BeNullOrEmpty
    }

    It 'is told the admin''s tunnel does not exist when it tries to stop it (as for a missing one), and the tunnel keeps running' {
        $result = Invoke-Capture { Stop-QmTunnel remote1 -Session $s2 }
        $result.Errors.Count | Should -Be 1
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelNotFound,*'
        $result.Errors[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $missing = Invoke-Capture { Stop-QmTunnel no-such-tunnel -Session $s2 }
        $missing.Errors[0].Exception.Message.Replace('no-such-tunnel', 'remote1') | Should -BeExactly $result.Errors[0].Exception.Message
        "$((Get-QmTunnel remote1 -Session $s).State)" | Should -BeIn @('Listening', 'Established')
    }

    It 'is refused managing users (no ChangeServerConfiguration)' {
        $result = Invoke-Capture { New-QmTunnelUser eve -Group Viewers -Session $s2 -WarningAction SilentlyContinue }
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
        Get-QmTunnelUser eve -Session $s -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'is refused changing AcceptCompression (no ChangeServerConfiguration), and the setting stays' {
        $result = Invoke-Capture { Set-QmTunnelServerConfig -AcceptCompression:$false -Session $s2 }
        $result.Errors.Count | Should -Be 1
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
        $result.Errors[0].Exception.Message | Should -Match 'ChangeServerConfiguration'
        (Get-QmTunnelServerConfig -Session $s).AcceptCompression | Should -BeTrue
    }

    It 'after Disconnect-QmTunnelServer, is refused with SessionClosed (terminating) and no longer listed' {
        Disconnect-QmTunnelServer $s2
        $s2.IsOpen | Should -BeFalse
        @(Get-QmTunnelSession) | Should -Not -Contain $s2
        $result = Invoke-Capture { Get-QmTunnel -Session $s2 }
        $result.Terminating | Should -BeTrue
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'SessionClosed,*'
        $result.Errors[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $result.Errors[0].Exception.Message | Should -Match 'Connect-QmTunnelServer'
        $s.IsOpen | Should -BeTrue   # the other session is not affected
    }
}

Describe 'One script for a remote and the in-process server' {
    It 'manages B with -Session' {
        $result = Invoke-ManagementScript -Suffix B -Hop (New-QmTestHop "qmt://127.0.0.1:$($serverA.Port)") -Session $s
        $result.Intact | Should -BeTrue
        $result.Bytes | Should -Be 1MB
        $result.Description | Should -Be 'changed by the script'
        $result.Left | Should -Be 0
    }

    It 'manages the in-process server A without -Session' {
        $result = Invoke-ManagementScript -Suffix A -Hop (New-QmTestHop "qmt://127.0.0.1:$($serverA.Port)")
        $result.Intact | Should -BeTrue
        $result.Bytes | Should -Be 1MB
        $result.Description | Should -Be 'changed by the script'
        $result.Left | Should -Be 0
    }
}

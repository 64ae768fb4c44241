#Requires -Version 7.4
<#
    Authenticated links through the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH), with real servers on
    loopback: the in-process server A owns the tunnels, B and C are qmtunnel-server daemons.
    - a wrong password at a hop fails New-QmTunnel with AuthenticationFailed (AuthenticationError), nothing saved;
    - a server further down the chain (C, behind B) refuses a tunnel its allow-rules do not allow: PermissionDenied
      naming C, the group and the rule to add; the same chain to an allowed target moves data;
    - repeated bad logins are refused, and a good one from the same address still works (the throttle's timing is
      tested on an injected clock in the xunit tests);
    - the first start without -AdminCredential shows a generated password once, and that password logs in;
    - a client certificate mapped to a user logs in (mutual TLS) instead of a password.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-auth-$run"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()

    $opsPassword = 'ops-password-123'
    $ops = [pscredential]::new('ops', (ConvertTo-SecureString $opsPassword -AsPlainText -Force))
    $wrong = [pscredential]::new('admin', (ConvertTo-SecureString 'not-the-password' -AsPlainText -Force))

    # C is prepared in-process (a restricted group and user), then served as a daemon with the same data.
    $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'c')
    $null = New-QmTunnelGroup Operators -Rights CreateTunnels -AllowRule "L#*:*#*#*#127.0.0.1:$($echo.Port)"
    $null = New-QmTunnelUser ops -Group Operators -Credential $ops
    Stop-QmTunnelServer
    $serverC = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'c') -AllowPlainLinks
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
    $serverT = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 't')
    $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
}

AfterAll {
    Get-QmTunnelServer | Stop-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
    $echo.Dispose()
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Logins on links' {
    It 'a wrong password at the hop fails New-QmTunnel with AuthenticationFailed, and nothing is saved' {
        $err = $null
        $tunnel = New-QmTunnel badlogin -Listen tcp://127.0.0.1:0 -Via (New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Credential $wrong) -Target $echo.Uri -ErrorVariable err -ErrorAction SilentlyContinue
        $tunnel | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
        $err[0].CategoryInfo.Category | Should -Be 'AuthenticationError'
        $err[0].Exception.Message | Should -Match "refused the login of 'admin'"
        $err[0].Exception.Message | Should -Not -Match 'not-the-password'
        Get-QmTunnel badlogin -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'a hop without a login is refused when the tunnel is created (HopCredentialMissing), saying how to give one' {
        $tunnel = New-QmTunnel nologin -Listen tcp://127.0.0.1:0 -Via "qmt://127.0.0.1:$($serverB.Port)" -Target $echo.Uri -ErrorVariable err -ErrorAction SilentlyContinue
        $tunnel | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'HopCredentialMissing,*'
        $err[0].Exception.Message | Should -Match 'New-QmTunnelHop'
        Get-QmTunnel nologin -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'the far hop C refuses a target its allow-rules do not allow, naming the server, group and rule to add' {
        $chain = (New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"), (New-QmTunnelHop "qmt://127.0.0.1:$($serverC.Port)" -Credential $ops)
        $err = $null
        $denied = New-QmTunnel denied -Listen tcp://127.0.0.1:0 -Via $chain -Target 'tcp://127.0.0.1:9' -ErrorVariable err -ErrorAction SilentlyContinue
        $denied | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
        $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        $err[0].Exception.Message | Should -Match "user 'ops'"
        $err[0].Exception.Message | Should -Match "group 'Operators'"
        $err[0].Exception.Message | Should -Match ([regex]::Escape("L#127.0.0.1:0#127.0.0.1:$($serverB.Port)#127.0.0.1:$($serverC.Port)#127.0.0.1:9"))
        Get-QmTunnel denied -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'the same chain to the allowed target moves data, logged in as admin at B and as ops at C' {
        $chain = (New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"), (New-QmTunnelHop "qmt://127.0.0.1:$($serverC.Port)" -Credential $ops)
        $tunnel = New-QmTunnel allowed -Listen tcp://127.0.0.1:0 -Via $chain -Target $echo.Uri | Start-QmTunnel -PassThru
        @($tunnel.Via) | Should -Be @("qmt://admin@127.0.0.1:$($serverB.Port)", "qmt://ops@127.0.0.1:$($serverC.Port)")
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 4MB, 60)).Intact | Should -BeTrue
    }

    It 'tunnel objects name the user of each hop and never carry its login keys (ConvertTo-Json, Format-List *)' {
        $tunnel = Get-QmTunnel allowed
        @($tunnel.Hops.User) | Should -Be @('admin', 'ops')
        @($tunnel.Hops.Login) | Should -Be @('Password', 'Password')
        foreach ($text in ($tunnel | ConvertTo-Json -Depth 6), ($tunnel | Format-List * | Out-String -Width 300), ($tunnel | Format-List | Out-String)) {
            $text | Should -Not -Match 'ClientKey|ServerKey|"Salt"|System\.Byte\[\]'
        }
        ($tunnel | Format-List | Out-String) | Should -Match 'Logins\s*:\s*admin \(Password\), ops \(Password\)'
    }

    It 'keeps no password in the database, only derived keys' {
        Stop-QmTunnelServer
        try {
            $bytes = [IO.File]::ReadAllBytes((Join-Path $base 'a' 'qmtunnel.db'))
            $text = [Text.Encoding]::UTF8.GetString($bytes)
            $text.Contains($opsPassword) | Should -BeFalse
            $text.Contains($QmTestAdminPassword) | Should -BeFalse
            $text.Contains('ops') | Should -BeTrue # the user name is kept
        }
        finally {
            $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a')
        }
        # Restored with its keys: it still logs in at both servers.
        $tunnel = Get-QmTunnel allowed | Start-QmTunnel -PassThru
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 64KB, 30)).Intact | Should -BeTrue
    }

    It 'refuses repeated bad logins each time, and a good login from the same address still works' {
        # How the throttle spaces the attempts (per address and per user, parallel no faster than serial) is tested
        # on an injected clock in tests/QmTunnel.Engine.Tests/Security/LoginThrottleTests.cs.
        $hop = New-QmTunnelHop "qmt://127.0.0.1:$($serverT.Port)" -Credential $wrong
        foreach ($i in 1..4) {
            $err = $null
            $null = New-QmTunnel "throttled$i" -Listen tcp://127.0.0.1:0 -Via $hop -Target $echo.Uri -ErrorAction SilentlyContinue -ErrorVariable err
            $err[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
        }
        $ok = New-QmTunnel throttle-ok -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($serverT.Port)") -Target $echo.Uri
        $ok.Name | Should -Be 'throttle-ok'
    }
}

Describe 'The admin of a new server' {
    It 'a daemon started with -AdminCredential has the password neither on its command line nor in its environment' {
        $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'secrets')
        try {
            foreach ($file in 'environ', 'cmdline') {
                $text = [Text.Encoding]::UTF8.GetString([IO.File]::ReadAllBytes("/proc/$($daemon.ProcessId)/$file"))
                $text | Should -Not -BeNullOrEmpty
                $text.Contains($script:QmTestAdminPassword) | Should -BeFalse -Because "/proc/PID/$file must not show the admin password"
            }
            # The password did reach it: the admin logs in with it.
            $tunnel = New-QmTunnel secrets -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($daemon.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
            ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 64KB, 30)).Intact | Should -BeTrue
            Remove-QmTunnel secrets -Confirm:$false
        }
        finally {
            $daemon | Stop-QmTunnelServer -Confirm:$false
        }
    }

    It 'without -AdminCredential, a first start shows a generated password once, and it logs in' {
        $fresh = Join-Path $base 'fresh'
        $warnings = $null
        $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath $fresh -AdminCredential $null -WarningVariable warnings -WarningAction SilentlyContinue
        @($warnings).Count | Should -Be 1
        "$($warnings[0])" | Should -Match 'shown only this once'
        $password = ("$($warnings[0])" -split 'generated password ')[1].Split(' ')[0]
        $password.Length | Should -BeGreaterOrEqual 20
        Test-Path (Join-Path $fresh 'initial-admin-password') | Should -BeFalse # read and deleted by the cmdlet
        $admin = [pscredential]::new('admin', (ConvertTo-SecureString $password -AsPlainText -Force))
        $tunnel = New-QmTunnel generated -Listen tcp://127.0.0.1:0 -Via (New-QmTunnelHop "qmt://127.0.0.1:$($daemon.Port)" -Credential $admin) -Target $echo.Uri | Start-QmTunnel -PassThru
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 64KB, 30)).Intact | Should -BeTrue
        $daemon | Stop-QmTunnelServer -Confirm:$false

        $again = $null
        $daemon = Start-QmTunnelServer -Daemon -Port 0 -DataPath $fresh -AdminCredential $null -WarningVariable again -WarningAction SilentlyContinue
        @($again).Count | Should -Be 0
        $daemon | Stop-QmTunnelServer -Confirm:$false
    }

    It 'a later start with another -AdminCredential is refused with AdminCredentialMismatch' {
        Stop-QmTunnelServer
        try {
            $refused = $null
            try {
                Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -AdminCredential $wrong
            }
            catch {
                $refused = $_
            }
            $refused.FullyQualifiedErrorId | Should -BeLike 'AdminCredentialMismatch,*'
            $refused.CategoryInfo.Category | Should -Be 'AuthenticationError'
            $refused.Exception.Message | Should -Match 'Set-QmTunnelUser admin -Password'
            Get-QmTunnelServer | Where-Object { -not $_.ProcessId -or $_.ProcessId -eq $PID } | Should -BeNullOrEmpty
        }
        finally {
            $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a')
        }
    }
}

Describe 'Client certificates' {
    It 'a hop with -CertificatePath logs in as the user that certificate is mapped to' {
        $pfx = Join-Path $base 'robot.pfx'
        $thumbprint = New-QmTestClientCertificate $pfx
        $null = New-QmTunnelGroup Robots -Rights CreateTunnels -AllowRule 'L#*:*#*#*:*'
        $null = New-QmTunnelUser robot -Group Robots -CertificateThumbprint $thumbprint -WarningAction SilentlyContinue
        $self = (Get-QmTunnelServer | Where-Object { -not $_.ProcessId -or $_.ProcessId -eq $PID } | Select-Object -First 1).Port
        $hop = New-QmTunnelHop "qmt://127.0.0.1:$self" -CertificatePath $pfx
        $hop.Login | Should -Be 'Certificate'
        $tunnel = New-QmTunnel robot -Listen tcp://127.0.0.1:0 -Via $hop -Target $echo.Uri | Start-QmTunnel -PassThru
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 256KB, 30)).Intact | Should -BeTrue

        # An unmapped certificate is refused like a wrong password.
        $otherPfx = Join-Path $base 'other.pfx'
        $null = New-QmTestClientCertificate $otherPfx
        $err = $null
        $null = New-QmTunnel stranger -Listen tcp://127.0.0.1:0 -Via (New-QmTunnelHop "qmt://127.0.0.1:$self" -CertificatePath $otherPfx) -Target $echo.Uri -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'AuthenticationFailed,*'
    }
}

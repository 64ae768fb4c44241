#Requires -Version 7.4
<#
    What an administrator gets wrong or changes, through the BUILT module, and what it answers: a hop without a
    login (HopCredentialMissing, before any dial, -WhatIf too); changes that restart a tunnel only when they must
    (and -WhatIf says which); plain numbers as seconds and every TimeSpan range-checked before -WhatIf; names from the
    pipeline; a hop's view; a server address without scheme; progress while a server does not answer.
    Helpers: TestCommon.ps1, TestHost.cs (recording host), TestTools.cs and TestPeers.cs (echo, held connection).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    Import-QmTestHost
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $base, $isolated = New-QmTestSandbox -Name 'Administration' -ModulePath $modulePath

    function Get-InProcessServer { @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }) }
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
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

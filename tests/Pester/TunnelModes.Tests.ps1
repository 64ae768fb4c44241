#Requires -Version 7.4
<#
    Permanent and on-demand tunnels through the BUILT module: -Permanent, -OnDemand, -IdleTimeout and
    -FailureTolerance of New-QmTunnel and Set-QmTunnel, their defaults, ranges and the combinations refused (before
    -WhatIf where the cmdlet can tell), the states Get-QmTunnel and Get-QmTunnelStats show (Established without a
    client, Idle, then Established with one), a mode switched on a running tunnel without restarting its listener,
    the settings kept across a restart of the server (a permanent tunnel comes up again without a client), and the
    views. One in-process server on a fixed free port whose tunnels go through itself (a hop to its own port).
    Helpers: TestCommon.ps1, TestHost.cs (recording host), TestTools.cs (echo server and client, free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    Import-QmTestHost
    $base, $isolated = New-QmTestSandbox -Name 'TunnelModes' -ModulePath $modulePath
    if (@(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon })) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }

    $dataPath = Join-Path $base 'server'
    $port = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
    $server = Start-QmTunnelServer -Port $port -DataPath $dataPath -PassThru
    $self = New-QmTestHop "qmt://127.0.0.1:$port"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
}

AfterAll {
    Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Permanent and on-demand tunnels' {
    It 'a new tunnel is per connection, with a 300 s idle timeout and a 30 s failure tolerance' {
        $plain = New-QmTunnel plain -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri
        "$($plain.Mode)" | Should -Be 'PerConnection'
        $plain.IdleTimeout | Should -Be ([TimeSpan]::FromSeconds(300))
        $plain.FailureTolerance | Should -Be ([TimeSpan]::FromSeconds(30))
        "$($plain.State)" | Should -Be 'Stopped'
    }

    It 'New-QmTunnel -Permanent is Established once started, without any client, in Get-QmTunnel and Get-QmTunnelStats' {
        $held = New-QmTunnel held -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -Permanent -FailureTolerance 90
        "$($held.Mode)" | Should -Be 'Permanent'
        $held.FailureTolerance | Should -Be ([TimeSpan]::FromSeconds(90))
        $null = Start-QmTunnel held
        Wait-Until { "$((Get-QmTunnel held).State)" -eq 'Established' } 'the permanent tunnel is Established'
        "$((Get-QmTunnelStats held).State)" | Should -Be 'Established'
        (Get-QmTunnelStats held).ConnectionsTotal | Should -Be 0
        $echo.ConnectionsAccepted | Should -Be 0 -Because 'holding the chain up does not touch the target'
    }

    It 'New-QmTunnel -OnDemand -IdleTimeout is Idle until a client comes, then Established' {
        $lazy = New-QmTunnel lazy -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -OnDemand -IdleTimeout 90 | Start-QmTunnel -PassThru
        "$($lazy.Mode)" | Should -Be 'OnDemand'
        $lazy.IdleTimeout | Should -Be ([TimeSpan]::FromSeconds(90)) -Because 'a plain number is seconds'
        "$($lazy.State)" | Should -Be 'Idle'
        "$((Get-QmTunnelStats lazy).State)" | Should -Be 'Idle'
        $result = [QmTunnel.PesterTools.EchoClient]::Run($lazy.BoundListen, 64KB, 30)
        $result.Intact | Should -BeTrue -Because $result.ToString()
        "$((Get-QmTunnel lazy).State)" | Should -Be 'Established' -Because 'the idle timeout (90 s) has not passed'
    }

    It 'refuses <Case> with TunnelSettingInvalid and the fix, -WhatIf or not, creating nothing' -ForEach @(
        @{ Case = '-Permanent with -OnDemand'; Fix = 'Give one of them'; Script = { New-QmTunnel both -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -Permanent -OnDemand -WhatIf } }
        @{ Case = '-IdleTimeout without -OnDemand'; Fix = 'add -OnDemand'; Script = { New-QmTunnel idle -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -IdleTimeout 60 -WhatIf } }
        @{ Case = '-IdleTimeout 0.5'; Fix = '00:00:01 to 1.00:00:00'; Script = { New-QmTunnel short -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -OnDemand -IdleTimeout 0.5 } }
        @{ Case = '-FailureTolerance 2 hours'; Fix = '00:00:00 to 01:00:00'; Script = { New-QmTunnel tolerant -Listen tcp://127.0.0.1:0 -Via $self -Target $echo.Uri -FailureTolerance 7200 } }
        @{ Case = 'Set-QmTunnel -Permanent -OnDemand'; Fix = 'Give one of them'; Script = { Set-QmTunnel plain -Permanent -OnDemand -WhatIf } }
    ) {
        $count = @(Get-QmTunnel).Count
        $captured = Invoke-Capture $Script
        $captured.Errors.Count | Should -Be 1 -Because "$($captured.Errors)"
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        "$($captured.Errors[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        $captured.Errors[0].Exception.Message | Should -BeLike "*$Fix*"
        @(Get-QmTunnel).Count | Should -Be $count
    }

    It 'Set-QmTunnel -IdleTimeout on a tunnel that is not on demand is refused by the server, and nothing changes' {
        $before = Get-QmTunnel held
        $captured = Invoke-Capture { Set-QmTunnel held -IdleTimeout 60 }
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        $captured.Errors[0].Exception.Message | Should -BeLike "*would be Permanent*"
        (Get-QmTunnel held).ModifiedAt | Should -Be $before.ModifiedAt
    }

    It 'Set-QmTunnel -WhatIf names the mode switch and says the listener is not restarted' {
        $session = New-QmTestRunspace -ImportModule
        try {
            $whatIf = Invoke-QmTestLine $session 'Set-QmTunnel lazy -Permanent -WhatIf'
            $whatIf.Errors | Should -BeNullOrEmpty
            $session.UI.Text | Should -Match 'Set Permanent \(no restart'
            $session.UI.Text | Should -Match 'without restarting its listener'
        }
        finally { Close-QmTestRunspace $session }
        "$((Get-QmTunnel lazy).Mode)" | Should -Be 'OnDemand'
    }

    It 'Set-QmTunnel switches a running tunnel between modes without restarting its listener' {
        $before = Get-QmTunnel plain | Start-QmTunnel -PassThru
        "$($before.State)" | Should -BeIn @('Listening', 'Established')
        $permanent = Set-QmTunnel plain -Permanent -PassThru
        "$($permanent.Mode)" | Should -Be 'Permanent'
        $permanent.BoundListen | Should -Be $before.BoundListen
        Wait-Until { "$((Get-QmTunnel plain).State)" -eq 'Established' } 'plain is held up'
        $lazy = Set-QmTunnel plain -OnDemand -IdleTimeout 30 -PassThru
        "$($lazy.Mode)" | Should -Be 'OnDemand'
        "$($lazy.State)" | Should -Be 'Idle' -Because 'no client is connected'
        $lazy.BoundListen | Should -Be $before.BoundListen
        $back = Set-QmTunnel plain -OnDemand:$false -PassThru
        "$($back.Mode)" | Should -Be 'PerConnection'
        "$($back.State)" | Should -BeIn @('Listening', 'Established')
        $back.IdleTimeout | Should -Be ([TimeSpan]::FromSeconds(30)) -Because 'the idle timeout is kept for the next time it is on demand'
    }

    It 'the modes and timeouts are kept across a restart, and a started permanent tunnel comes up again without a client' {
        Stop-QmTunnelServer
        $null = Start-QmTunnelServer -Port $port -DataPath $dataPath
        $held = Get-QmTunnel held
        "$($held.Mode)" | Should -Be 'Permanent'
        $held.FailureTolerance | Should -Be ([TimeSpan]::FromSeconds(90))
        (Get-QmTunnel lazy).IdleTimeout | Should -Be ([TimeSpan]::FromSeconds(90))
        Wait-Until { "$((Get-QmTunnel held).State)" -eq 'Established' } 'the permanent tunnel is Established again'
        "$((Get-QmTunnel lazy).State)" | Should -Be 'Idle'
    }

    It 'Format-List shows the mode and both timeouts; the table keeps the state within 80 columns' {
        $list = (Get-QmTunnel held | Format-List | Out-String -Width 120) -split '\r?\n'
        ($list | Where-Object { $_ -match '^Mode\s+: Permanent$' }) | Should -Not -BeNullOrEmpty
        ($list | Where-Object { $_ -match '^IdleTimeout\s+: 00:05:00$' }) | Should -Not -BeNullOrEmpty
        ($list | Where-Object { $_ -match '^FailureTolerance\s+: 00:01:30$' }) | Should -Not -BeNullOrEmpty
        $table = (Get-QmTunnel held, lazy | Format-Table | Out-String -Width 80) -split '\r?\n'
        ($table | Where-Object { $_ -match '^held\s+Established\s' }) | Should -Not -BeNullOrEmpty
        ($table | Where-Object { $_ -match '^lazy\s+Idle\s' }) | Should -Not -BeNullOrEmpty
        $table | ForEach-Object { $_.Length | Should -BeLessOrEqual 80 }
    }
}

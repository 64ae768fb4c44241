#Requires -Version 7.4
<#
    The link timing of a hop through the BUILT module: New-QmTunnelHop's six timing parameters (plain numbers are
    seconds, on qmt:// and qmt+plain:// hops), the text form they write (only what differs from the default), the hop's
    views, errors that name the parameter or the address option and the range, and a chain whose gateway (a
    qmtunnel-server daemon) reads the timing of its next hop from the route it is sent.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule
}

Describe 'New-QmTunnelHop timing parameters' {
    It 'takes plain numbers as seconds and writes only the settings given into the text form' {
        $hop = New-QmTunnelHop qmt://hostb:9200 -HeartbeatInterval 5 -ReceiveTimeout 20 -ConnectTimeout 3 -ReconnectInterval 0.2 -ReconnectMultiplier 2 -MaxReconnectInterval 30
        "$hop" | Should -Be 'qmt://hostb:9200?heartbeat=5s&receive-timeout=20s&connect-timeout=3s&reconnect=200ms&reconnect-multiplier=2&reconnect-max=30s'
        $hop.HeartbeatInterval | Should -Be ([TimeSpan]::FromSeconds(5))
        $hop.ReceiveTimeout | Should -Be ([TimeSpan]::FromSeconds(20))
        $hop.ConnectTimeout | Should -Be ([TimeSpan]::FromSeconds(3))
        $hop.ReconnectInterval | Should -Be ([TimeSpan]::FromMilliseconds(200))
        $hop.ReconnectMultiplier | Should -Be 2
        $hop.MaxReconnectInterval | Should -Be ([TimeSpan]::FromSeconds(30))
        $hop.Timing | Should -Be $hop.Uri.Timing

        $one = New-QmTunnelHop qmt://hostb -ReconnectInterval '00:00:00.5'
        "$one" | Should -Be 'qmt://hostb:9200?reconnect=500ms'
        $one.HeartbeatInterval | Should -Be ([TimeSpan]::FromSeconds(10)) -Because 'a setting not given keeps its default'
        $one.ReceiveTimeout | Should -Be ([TimeSpan]::FromSeconds(15))
        $one.ReconnectMultiplier | Should -Be 1.5
        "$(New-QmTunnelHop qmt://hostb)" | Should -Be 'qmt://hostb:9200'
        (New-QmTunnelHop qmt://hostb).Timing | Should -Be ([QmTunnel.Engine.Links.LinkTiming]::Default)
    }

    It 'works on a qmt+plain:// hop, and 0 turns heartbeats and the receive timeout off' {
        $hop = New-QmTunnelHop qmt+plain://hostb:9300 -HeartbeatInterval 0 -ReceiveTimeout 0 -Credential $QmTestAdmin
        "$hop" | Should -Be 'qmt+plain://admin@hostb:9300?heartbeat=off&receive-timeout=off'
        $hop.HeartbeatInterval | Should -Be ([TimeSpan]::Zero)
        $hop.Login | Should -Be 'Password'
    }

    It 'keeps the timing an address gives, lets a parameter replace one value, and joins it with the TLS options' {
        $hop = New-QmTunnelHop 'qmt://hostb?heartbeat=4s&reconnect-max=1m' -ReceiveTimeout 12 -MinimumTlsVersion Tls13 -CertificateThumbprint ('ab' * 32) -Credential $QmTestAdmin
        "$hop" | Should -Be "qmt://admin@hostb:9200?sha256=$('AB' * 32)&tls=1.3&heartbeat=4s&receive-timeout=12s&reconnect-max=1m"
        $hop.HeartbeatInterval | Should -Be ([TimeSpan]::FromSeconds(4))
        "$(New-QmTunnelHop 'qmt://hostb?heartbeat=4s' -HeartbeatInterval 6)" | Should -Be 'qmt://hostb:9200?heartbeat=6s'
        "$(New-QmTunnelHop 'qmt://hostb?heartbeat=4s' -HeartbeatInterval 10)" | Should -Be 'qmt://hostb:9200' -Because 'a value equal to the default is not written'
    }

    It 'refuses a value out of range with TunnelSettingInvalid naming the parameter, its range and every problem at once' {
        $err = $null
        $hop = New-QmTunnelHop qmt://hostb -HeartbeatInterval 0.05 -ConnectTimeout 600 -ReconnectMultiplier 0.5 -ErrorVariable err -ErrorAction SilentlyContinue
        $hop | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        "$($err[0].CategoryInfo.Category)" | Should -Be 'InvalidArgument'
        $message = $err[0].Exception.Message
        $message | Should -Match '-HeartbeatInterval 50ms is out of range: give 0 \(off\) or 100ms to 1h'
        $message | Should -Match '-ConnectTimeout 10m is out of range: give 100ms to 5m'
        $message | Should -Match '-ReconnectMultiplier 0.5 is out of range: give 1 \(always the same wait\) to 10'
        $message | Should -Match 'A number is seconds'
    }

    It 'names the address option when the conflict is with a value the address gave' {
        $err = $null
        $null = New-QmTunnelHop 'qmt+plain://hostb?heartbeat=20s&receive-timeout=off' -ReceiveTimeout 15 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        $err[0].Exception.Message | Should -Match '-ReceiveTimeout 15s is not longer than heartbeat=20s'

        $null = New-QmTunnelHop qmt://hostb -ReconnectInterval 20 -MaxReconnectInterval 5 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match '-MaxReconnectInterval 5s is shorter than -ReconnectInterval 20s'
    }

    It 'refuses a bad timing option in the address with EndpointUriInvalid naming the option and how to write it' {
        $err = $null
        $null = New-QmTunnelHop 'qmt://hostb?heartbeat=5sec' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'EndpointUriInvalid,*'
        $err[0].Exception.Message | Should -Match 'heartbeat=5sec is not a duration\. Write a whole number and a unit: heartbeat=500ms, heartbeat=10s'

        $null = New-QmTunnelHop 'qmt://hostb?receive-timeout=2h' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match 'receive-timeout=2h is out of range'
    }

    It 'shows whether the timing is the default in its table, and each setting in its list' {
        $default = New-QmTunnelHop qmt://127.0.0.1:9 -Credential $QmTestAdmin | Out-String -Width 80
        $default | Should -Match 'Timing'
        $default | Should -Match 'qmt://admin@127\.0\.0\.1:9\s+Password\s+1\.2\s+default\s+\(first use\)'
        $custom = New-QmTunnelHop qmt://127.0.0.1:9 -HeartbeatInterval 0 -ReconnectMultiplier 3 -Credential $QmTestAdmin
        ($custom | Out-String -Width 80) | Should -Match '1\.2\s+custom'
        $list = $custom | Format-List | Out-String -Width 80
        $list | Should -Match 'HeartbeatInterval\s+:\s+off'
        $list | Should -Match 'ReceiveTimeout\s+:\s+00:00:15'
        $list | Should -Match 'ReconnectMultiplier\s+:\s+3'
        $list | Should -Match 'MaxReconnectInterval\s+:\s+00:00:10'
    }

    It 'Connect-QmTunnelServer -CertificateThumbprint joins the pin to the options an address already has' {
        $deadPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $captured = Invoke-Capture {
            Connect-QmTunnelServer "qmt://127.0.0.1:${deadPort}?cipher=chacha20&heartbeat=5s" -CertificateThumbprint ('AB' * 32) -Credential $QmTestAdmin -ConnectTimeout 5
        }
        $captured.Errors.Count | Should -Be 1
        $captured.Errors[0].FullyQualifiedErrorId | Should -Not -BeLike 'EndpointUriInvalid,*' -Because "the address is valid: $($captured.Errors[0].Exception.Message)"
        $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'HopConnectFailed,*'
    }
}

Describe 'A chain carries each hop''s timing to the server that dials it' {
    BeforeAll {
        $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
        $base = Join-Path ([IO.Path]::GetTempPath()) "qmt-hoptiming-$run"
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
        $serverC = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'c')
        $null = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a')
    }

    AfterAll {
        Get-QmTunnelServer | Stop-QmTunnelServer -Confirm:$false -ErrorAction SilentlyContinue
        if ($echo) { $echo.Dispose() }
        Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
    }

    It 'moves data through a gateway told the timing of its next hop, and the tunnel keeps each hop''s text form' {
        $b = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -HeartbeatInterval 4 -Credential $QmTestAdmin
        $c = New-QmTunnelHop "qmt://127.0.0.1:$($serverC.Port)" -HeartbeatInterval 5 -ReceiveTimeout 20 -ReconnectMultiplier 2 -Credential $QmTestAdmin
        $tunnel = New-QmTunnel timed -Listen tcp://127.0.0.1:0 -Via $b, $c -Target $echo.Uri | Start-QmTunnel -PassThru
        @($tunnel.Via) | Should -Be @("$b", "$c")
        "$c" | Should -BeLike '*?heartbeat=5s&receive-timeout=20s&reconnect-multiplier=2'
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)).Intact | Should -BeTrue
    }

    It 'the gateway answers with the next hop as it read it from the route, timing included' {
        # The gateway B cannot reach the next hop; its error names that hop as B parsed it from the route and wrote it back.
        $deadPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $far = New-QmTunnelHop "qmt://127.0.0.1:$deadPort" -HeartbeatInterval 3 -ReceiveTimeout 9 -ConnectTimeout 2 -MaxReconnectInterval 60 -Credential $QmTestAdmin
        $captured = Invoke-Capture { New-QmTunnel unreachable -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"), $far -Target $echo.Uri }
        $captured.Errors.Count | Should -Be 1
        $message = $captured.Errors[0].Exception.Message
        $message | Should -Match ([regex]::Escape("qmt://admin@127.0.0.1:${deadPort}?heartbeat=3s&receive-timeout=9s&connect-timeout=2s&reconnect-max=1m"))
        $message | Should -Match 'Cannot reach the tunnel server'
        Get-QmTunnel unreachable -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}

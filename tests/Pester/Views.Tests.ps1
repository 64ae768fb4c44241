#Requires -Version 7.4
<#
    The default views of the BUILT module's objects (module/qmTunnel.format.ps1xml) in an 80-column console: every
    table keeps all its columns (PowerShell drops the columns that do not fit), and no line is wider than 80. The
    objects are real ones, from a server of this process with a tunnel, connections, a pin, a user, a group, a session.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmt-views-$run"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $server = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    $tunnel = New-QmTunnel a-tunnel-with-a-long-name -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($server.Port)") -Target $echo.Uri |
        Start-QmTunnel -PassThru
    $null = [QmTunnel.PesterTools.EchoClient]::RunMany($tunnel.BoundListen, 3, 2MB, 0, 30)
    $null = New-QmTunnelGroup Operators -Rights CreateTunnels, AdministerGroupTunnels -AllowRule 'L#127.0.0.1:*#*#*.lab.example.net:*'
    $null = New-QmTunnelUser alice Operators -Password (ConvertTo-SecureString 'alice-password-1' -AsPlainText -Force)
    $session = Connect-QmTunnelServer $server.Address -Credential $QmTestAdmin -CertificateThumbprint $server.CertificateThumbprint

    # The labels of a table view of the format file, in order.
    [xml]$format = Get-Content -LiteralPath (Join-Path (Split-Path -Parent (Get-QmTestModulePath)) 'qmTunnel.format.ps1xml') -Raw
    function Get-ViewLabel([string]$TypeName) {
        $view = $format.Configuration.ViewDefinitions.View | Where-Object { $_.ViewSelectedBy.TypeName -eq $TypeName -and $_.TableControl } | Select-Object -First 1
        @($view.TableControl.TableHeaders.TableColumnHeader | ForEach-Object Label)
    }
}

AfterAll {
    Get-QmTunnelSession | Disconnect-QmTunnelServer -ErrorAction SilentlyContinue
    Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'The table of <TypeName> at 80 columns' -ForEach @(
    @{ TypeName = 'QmTunnel.Engine.Management.TunnelInfo'; Get = { Get-QmTunnel } }
    @{ TypeName = 'QmTunnel.Engine.Management.TunnelStats'; Get = { Get-QmTunnelStats } }
    @{ TypeName = 'QmTunnel.Engine.Management.TunnelHopStats'; Get = { (Get-QmTunnelStats).Hops } }
    @{ TypeName = 'QmTunnel.Engine.Management.ConnectionInfo'; Get = { Get-QmTunnelConnection } }
    @{ TypeName = 'QmTunnel.Engine.Management.ServerInfo'; Get = { Get-QmTunnelServer } }
    @{ TypeName = 'QmTunnel.Engine.Security.KnownServer'; Get = { Get-QmTunnelKnownServer } }
    @{ TypeName = 'QmTunnel.Engine.Management.UserInfo'; Get = { Get-QmTunnelUser } }
    @{ TypeName = 'QmTunnel.Engine.Management.GroupInfo'; Get = { Get-QmTunnelGroup } }
    @{ TypeName = 'QmTunnel.Engine.Management.Remote.QmTunnelSession'; Get = { Get-QmTunnelSession } }
    @{ TypeName = 'QmTunnel.PowerShell.QmTunnelHop'; Get = { New-QmTunnelHop 'qmt://a-long-host-name.lab.example.net:9200?tls=1.3' -Credential $QmTestAdmin } }
    @{ TypeName = 'QmTunnel.Engine.Endpoints.EndpointUri'; Get = { (New-QmTunnelHop 'qmt://host.lab.example.net:9200?tls=1.3').Uri } }
) {
    BeforeAll {
        $objects = @(& $Get)
        $labels = Get-ViewLabel $TypeName
        $text = $objects | Format-Table | Out-String -Width 80
        $lines = @($text -split "`r?`n" | Where-Object { $_.Trim() })
        $header = $lines | Where-Object { $_ -match '^\s*-' } | Select-Object -First 1
        $headerIndex = [array]::IndexOf($lines, $header) - 1
    }

    It 'has objects and a table view' {
        $objects.Count | Should -BeGreaterOrEqual 1
        $objects[0].PSObject.TypeNames[0] | Should -Be $TypeName
        $labels.Count | Should -BeGreaterOrEqual 2
    }

    It 'keeps every column' {
        $names = @($lines[$headerIndex] -split '\s+' | Where-Object { $_ })
        $names | Should -Be $labels -Because "the table at 80 columns was:`n$text"
    }

    It 'fits 80 columns' {
        foreach ($line in $lines) { $line.TrimEnd().Length | Should -BeLessOrEqual 80 -Because "'$line'" }
    }
}

Describe 'The list of a connection' {
    It 'shows the datagram counts only for a UDP association' {
        $tcp = Get-QmTunnelConnection a-tunnel-with-a-long-name | Select-Object -First 1
        $tcpText = $tcp | Format-List | Out-String
        $tcpText | Should -Match 'BytesFromClient\s+: 2097152'
        $tcpText | Should -Not -Match 'Datagrams'

        $udp = [QmTunnel.Engine.Management.ConnectionInfo]@{
            Id = 9; Tunnel = 'dns'; Client = '127.0.0.1:5300'; Target = 'udp://10.0.0.2:53'; State = 'Open'
            DatagramsFromClient = 3; DatagramsToClient = 2; DatagramsDropped = 1; ConnectedAt = [DateTimeOffset]::UtcNow
        }
        $udpText = $udp | Format-List | Out-String
        $udpText | Should -Match 'DatagramsFromClient\s+: 3'
        $udpText | Should -Match 'DatagramsDropped\s+: 1'
    }
}

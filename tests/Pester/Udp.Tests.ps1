#Requires -Version 7.4
<#
    UDP tunnels through the BUILT module: New-QmTunnel with udp:// ends through an in-process server (a hop to its
    own port) and datagram round trips from pwsh (the target is a UdpClient of this test: it receives the datagram the
    tunnel's last server sends and answers it with the datagram reversed), -UdpIdleTimeout (default, given, range), the datagram counts of
    Get-QmTunnelStats and Get-QmTunnelConnection, and Set-QmTunnelServerConfig -UdpPortRange.
    Helpers: TestCommon.ps1.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    $base, $isolated = New-QmTestSandbox -Name 'Udp' -ModulePath $modulePath
    if (@(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon })) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }

    $port = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
    $null = Start-QmTunnelServer -Port $port -DataPath (Join-Path $base 'server') -PassThru
    $self = New-QmTestHop "qmt://127.0.0.1:$port"
    $target = [System.Net.Sockets.UdpClient]::new([System.Net.IPEndPoint]::new([System.Net.IPAddress]::Loopback, 0))
    $target.Client.ReceiveTimeout = 10000
    $targetPort = ([System.Net.IPEndPoint]$target.Client.LocalEndPoint).Port

    # One datagram through the tunnel and its answer back: the client sends, the target receives it from the tunnel's
    # last server and answers that address, the client receives the answer. Returns both as the target and client saw them.
    function Invoke-UdpRoundTrip([System.Net.Sockets.UdpClient]$Client, [byte[]]$Datagram) {
        $null = $Client.Send($Datagram, $Datagram.Length)
        $from = [System.Net.IPEndPoint]::new([System.Net.IPAddress]::Any, 0)
        $atTarget = $target.Receive([ref]$from)
        $answer = [byte[]]$atTarget.Clone()
        [Array]::Reverse($answer)
        $null = $target.Send($answer, $answer.Length, $from)
        $back = [System.Net.IPEndPoint]::new([System.Net.IPAddress]::Any, 0)
        [pscustomobject]@{ AtTarget = $atTarget; Answer = $Client.Receive([ref]$back); From = $from }
    }
}

AfterAll {
    Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($target) { $target.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'UDP tunnels' {
    It 'New-QmTunnel takes udp:// ends; an association idles out after 60 s unless -UdpIdleTimeout says otherwise' {
        $dns = New-QmTunnel dns -Listen udp://127.0.0.1:0 -Via $self -Target "udp://127.0.0.1:$targetPort" -UdpIdleTimeout 30
        $dns.UdpIdleTimeout | Should -Be ([TimeSpan]::FromSeconds(30)) -Because 'a plain number is seconds'
        (New-QmTunnel other -Listen udp://127.0.0.1:0 -Via $self -Target "udp://127.0.0.1:$targetPort").UdpIdleTimeout | Should -Be ([TimeSpan]::FromSeconds(60))
        Remove-QmTunnel other -Confirm:$false
    }

    It 'carries datagrams of 1, 1500 and 65507 bytes both ways, whole, from pwsh' {
        $tunnel = Start-QmTunnel dns -PassThru
        $listen = [uri]$tunnel.BoundListen
        $client = [System.Net.Sockets.UdpClient]::new([System.Net.IPEndPoint]::new([System.Net.IPAddress]::Loopback, 0))
        try {
            $client.Client.ReceiveTimeout = 10000
            $client.Connect('127.0.0.1', $listen.Port)
            foreach ($size in 1, 1500, 65507) {
                $datagram = [byte[]]::new($size)
                [System.Security.Cryptography.RandomNumberGenerator]::Fill($datagram)
                $trip = Invoke-UdpRoundTrip $client $datagram
                $trip.AtTarget.Length | Should -Be $size
                [Convert]::ToBase64String($trip.AtTarget) | Should -Be ([Convert]::ToBase64String($datagram))
                [Array]::Reverse($trip.Answer)
                [Convert]::ToBase64String($trip.Answer) | Should -Be ([Convert]::ToBase64String($datagram)) -Because 'the answer is the datagram reversed, whole'
            }
            $script:clientAddress = $client.Client.LocalEndPoint.ToString()
        }
        finally {
            $client.Dispose()
        }
    }

    It 'Get-QmTunnelStats counts the datagrams and their bytes each way; Get-QmTunnelConnection shows the client address' {
        Wait-Until { (Get-QmTunnelStats dns).DatagramsToClients -eq 3 } 'three datagrams counted to the client'
        $stats = Get-QmTunnelStats dns
        $stats.DatagramsFromClients | Should -Be 3
        $stats.BytesFromClients | Should -Be (1 + 1500 + 65507)
        $stats.DatagramsDropped | Should -Be 0
        $connection = Get-QmTunnelConnection -Name dns | Select-Object -First 1
        $connection.Client | Should -Be $clientAddress
        $connection.DatagramsFromClient | Should -Be 3
    }

    It 'Set-QmTunnel -UdpIdleTimeout 0.5 is refused with the range' {
        { Set-QmTunnel dns -UdpIdleTimeout 0.5 -ErrorAction Stop } | Should -Throw '*UdpIdleTimeout*00:00:01 to 1.00:00:00*'
        (Get-QmTunnel dns).UdpIdleTimeout | Should -Be ([TimeSpan]::FromSeconds(30))
    }

    It 'Set-QmTunnelServerConfig -UdpPortRange sets the outgoing port range, and refuses one that is not a range' {
        (Set-QmTunnelServerConfig -UdpPortRange 40000-40999 -PassThru).UdpPortRange | Should -Be '40000-40999'
        (Get-QmTunnelServerConfig).UdpPortRange | Should -Be '40000-40999'
        { Set-QmTunnelServerConfig -UdpPortRange 63000-33001 -ErrorAction Stop } | Should -Throw '*lower port first*'
        $null = Set-QmTunnelServerConfig -UdpPortRange 33001-63000
    }
}

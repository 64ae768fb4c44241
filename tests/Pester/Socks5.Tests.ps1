#Requires -Version 7.4
<#
    SOCKS5 dynamic forwarding through the BUILT module: New-QmTunnel -Listen socks5://... without -Target (and the
    refusals: -Target with socks5, none with tcp), Get-QmTunnel showing the target as "(per connection)", a request
    from pwsh through the tunnel with a SOCKS5 client written here (a name resolved at the last server, bytes both ways
    checked with SHA-256), a refusal by the allow-rules as SOCKS reply 0x02, Get-QmTunnelConnection showing each
    client's target, and curl --socks5-hostname when curl is installed. One in-process server whose tunnels go through
    itself (a hop to its own port).
    Helpers: TestCommon.ps1, TestTools.cs (echo server, free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    $base, $isolated = New-QmTestSandbox -Name 'Socks5' -ModulePath $modulePath
    if (@(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon })) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }

    $port = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
    $null = Start-QmTunnelServer -Port $port -DataPath (Join-Path $base 'server')
    $self = New-QmTestHop "qmt://127.0.0.1:$port"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()

    # A SOCKS5 client: greeting (no authentication), CONNECT to $Hostname:$TargetPort (a name: ATYP 3), the reply code.
    # Returns the client and the code; the caller disposes the client.
    function Connect-Socks5([int]$ProxyPort, [string]$Hostname, [int]$TargetPort) {
        $client = [Net.Sockets.TcpClient]::new()
        $client.Connect([Net.IPAddress]::Loopback, $ProxyPort)
        $client.ReceiveTimeout = 30000
        $stream = $client.GetStream()
        $stream.Write([byte[]](5, 1, 0), 0, 3)
        $choice = Read-Exactly $stream 2
        if ($choice[0] -ne 5 -or $choice[1] -ne 0) { throw "the proxy chose method $($choice[1])" }
        $name = [Text.Encoding]::ASCII.GetBytes($Hostname)
        [byte[]]$request = @(5, 1, 0, 3, $name.Length) + $name + @([byte]($TargetPort -shr 8), [byte]($TargetPort -band 255))
        $stream.Write($request, 0, $request.Length)
        $reply = Read-Exactly $stream 10
        $client, $reply[1]
    }

    function Read-Exactly($Stream, [int]$Count) {
        $buffer = [byte[]]::new($Count)
        $read = 0
        while ($read -lt $Count) {
            $n = $Stream.Read($buffer, $read, $Count - $read)
            if ($n -eq 0) { throw "the proxy closed after $read of $Count bytes" }
            $read += $n
        }
        , $buffer
    }
}

AfterAll {
    Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'SOCKS5 dynamic forwarding' {
    It 'New-QmTunnel -Listen socks5:// takes no -Target, and Get-QmTunnel shows the target as (per connection)' {
        $proxy = New-QmTunnel proxy -Listen socks5://127.0.0.1:0 -Via $self
        $proxy.Target | Should -Be ''
        $proxy.Listen | Should -Be 'socks5://127.0.0.1:0'
        ($proxy | Format-Table | Out-String -Width 250) | Should -Match '\(per connection\)'
        ($proxy | Format-List | Out-String -Width 250) | Should -Match 'Target\s+: \(per connection\)'
    }

    It 'warns that a socks5:// listener on an address other hosts reach takes anyone, and not for the loopback' {
        $null = New-QmTunnel open-proxy -Listen socks5://0.0.0.0:0 -Via $self -Persistent:$false -WarningVariable open -WarningAction SilentlyContinue
        "$open" | Should -Match "without a password: anyone who reaches that address.*socks5://127\.0\.0\.1:0"
        $null = New-QmTunnel local-proxy -Listen socks5://127.0.0.1:0 -Via $self -Persistent:$false -WarningVariable local -WarningAction SilentlyContinue
        $local | Should -BeNullOrEmpty
        Remove-QmTunnel open-proxy, local-proxy -Confirm:$false
    }

    It 'refuses -Target with a socks5:// listener, and a tcp:// listener without -Target, naming the fix' {
        { New-QmTunnel bad1 -Listen socks5://127.0.0.1:0 -Via $self -Target $echo.Uri -ErrorAction Stop } |
            Should -Throw -ErrorId 'EndpointUriInvalid,QmTunnel.PowerShell.Commands.NewQmTunnelCommand' -ExpectedMessage '*takes no -Target*Leave -Target out*'
        { New-QmTunnel bad2 -Listen tcp://127.0.0.1:0 -Via $self -ErrorAction Stop } |
            Should -Throw -ErrorId 'EndpointUriInvalid,QmTunnel.PowerShell.Commands.NewQmTunnelCommand' -ExpectedMessage '*needs a -Target*socks5://*'
        @(Get-QmTunnel | Where-Object Name -like 'bad*') | Should -HaveCount 0
    }

    It 'carries a request from pwsh to the target the client named (resolved at the last server), bytes intact both ways' {
        $running = Start-QmTunnel proxy -PassThru
        $proxyPort = [int]($running.BoundListen -replace '^.*:', '')
        $client, $code = Connect-Socks5 $proxyPort 'localhost' $echo.Port
        try {
            $code | Should -Be 0
            $payload = [byte[]]::new(1MB + 3)
            [Security.Cryptography.RandomNumberGenerator]::Fill($payload)
            $stream = $client.GetStream()
            $reading = $stream.CopyToAsync(($back = [IO.MemoryStream]::new()))
            $stream.Write($payload, 0, $payload.Length)
            $client.Client.Shutdown([Net.Sockets.SocketShutdown]::Send)
            $reading.Wait(30000) | Should -BeTrue
            [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($back.ToArray())) |
                Should -Be ([Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($payload)))
        }
        finally { $client.Dispose() }
        $connection = @(Get-QmTunnelConnection proxy)[0]
        $connection.Target | Should -Be "tcp://localhost:$($echo.Port)"
    }

    It 'answers SOCKS reply 0x02 when the allow-rules refuse the target a client names' {
        # a tunnel owned by the in-process host (admin): the server it passes refuses this user's target by rule
        $null = New-QmTunnelGroup Narrow -Rights CreateTunnels -AllowRule "L#*:*#*#127.0.0.1:$($echo.Port)"
        $password = ConvertTo-SecureString 'narrow-password' -AsPlainText -Force
        $null = New-QmTunnelUser narrow -Group Narrow -Password $password
        $hop = New-QmTunnelHop "qmt://127.0.0.1:$port" -Credential ([pscredential]::new('narrow', $password))
        $narrow = New-QmTunnel narrow -Listen socks5://127.0.0.1:0 -Via $hop | Start-QmTunnel -PassThru
        $proxyPort = [int]($narrow.BoundListen -replace '^.*:', '')
        $client, $code = Connect-Socks5 $proxyPort 'localhost' $echo.Port
        $client.Dispose()
        $code | Should -Be 2
        Wait-Until { (Get-QmTunnel narrow).LastError } 'the refusal to be recorded'
        (Get-QmTunnel narrow).LastError | Should -Match "allow-rules of group 'Narrow'"
        $client, $code = Connect-Socks5 $proxyPort '127.0.0.1' $echo.Port
        $client.Dispose()
        $code | Should -Be 0
    }

    It 'curl --socks5-hostname reaches a web server through the tunnel' {
        if (-not (Get-Command curl -CommandType Application -ErrorAction SilentlyContinue)) {
            Set-ItResult -Skipped -Because 'curl is not installed (./build.ps1 test installs it with apt-get)'
            return
        }
        $web = [Net.HttpListener]::new()
        $webPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $web.Prefixes.Add("http://localhost:$webPort/")
        $web.Start()
        try {
            $serving = $web.GetContextAsync()
            $proxyPort = [int]((Get-QmTunnel proxy).BoundListen -replace '^.*:', '')
            $job = Start-ThreadJob { & curl -sS --max-time 30 --socks5-hostname "127.0.0.1:$using:proxyPort" "http://localhost:$using:webPort/hello" 2>&1 }
            $serving.Wait(30000) | Should -BeTrue
            $context = $serving.Result
            $context.Request.Url.AbsolutePath | Should -Be '/hello'
            $body = [Text.Encoding]::UTF8.GetBytes('hello from pester')
            $context.Response.OutputStream.Write($body, 0, $body.Length)
            $context.Response.Close()
            ($job | Wait-Job -Timeout 60 | Receive-Job) -join "`n" | Should -Be 'hello from pester'
        }
        finally {
            $web.Stop()
            Get-Job | Remove-Job -Force
        }
        @(Get-QmTunnelConnection proxy).Target | Should -Contain "tcp://localhost:$webPort"
    }
}

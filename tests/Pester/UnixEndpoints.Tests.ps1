#Requires -Version 7.4
<#
    Unix domain socket and named pipe ends through the BUILT module: an in-process server A and a daemon B, tunnels
    unix socket -> A -> B -> TCP echo and TCP -> A -> B -> unix socket echo, data checked by SHA-256; what
    Get-QmTunnelConnection and its table show for a unix client (pid and uid) and a path target; allow-rules with path
    fields at B; clear errors for unix:// and pipe:// URIs that are not valid. Linux and macOS (Unix sockets as files).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule
    Add-Type -Path (Join-Path $PSScriptRoot 'UnixTools.cs') -ErrorAction Stop

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmt-unix-$run"
    $sockets = (New-Item -ItemType Directory -Path (Join-Path $base 'sock') -Force).FullName
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $unixEcho = [QmTunnel.PesterTools.UnixEchoServer]::new((Join-Path $sockets 'echo.sock'))
    $serverA = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
    $via = New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)"
}

AfterAll {
    Get-QmTunnelSession | Disconnect-QmTunnelServer -ErrorAction SilentlyContinue
    Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq (Join-Path $base 'a') } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    if ($serverB -and $serverB.ProcessId) {
        Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
        Stop-Process -Id $serverB.ProcessId -Force -ErrorAction SilentlyContinue
    }
    foreach ($server in @($echo, $unixEcho)) { if ($server) { $server.Dispose() } }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Unix socket and pipe ends' -Skip:$IsWindows {
    Context 'unix socket listener -> TCP target' {
        BeforeAll {
            $listen = Join-Path $sockets 'in.sock'
            $tunnel = New-QmTunnel unix-in -Listen "unix://$listen`?mode=0660" -Via $via -Target $echo.Uri | Start-QmTunnel -PassThru
            $failure = [QmTunnel.PesterTools.UnixEchoClient]::Run($listen, 3MB + 11, 60)
            Wait-Until { (Get-QmTunnelStats unix-in).ConnectionsCurrent -eq 0 } 'the connection of unix-in is closed'
            $connection = @(Get-QmTunnelConnection unix-in)
        }

        It 'listens on the socket path with the mode asked for' {
            $tunnel.BoundListen | Should -Be "unix://$listen`?mode=0660"
            (Get-Item -LiteralPath $listen).UnixFileMode | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, GroupRead, GroupWrite')
        }

        It 'carries 3 MiB there and back, SHA-256 equal' {
            $failure | Should -BeNullOrEmpty
        }

        It 'Get-QmTunnelConnection shows the socket path, the client''s pid and uid, and the TCP target' {
            $connection.Count | Should -Be 1
            $connection[0].Client | Should -Be "unix://$listen`?mode=0660 (pid $PID, uid $(id -u))"
            $connection[0].Target | Should -Be $echo.Uri
            $connection[0].State | Should -Be 'Closed'
            $connection[0].BytesFromClient | Should -Be (3MB + 11)
        }

        It 'the table shows the client as its pid and uid, readable at 80 columns' {
            $text = $connection | Format-Table | Out-String -Width 80
            $text | Should -Match "pid $PID uid $(id -u)"
            $text | Should -Not -Match '…'
        }

        It 'removes its socket file when stopped' {
            Stop-QmTunnel unix-in
            $listen | Should -Not -Exist
        }
    }

    Context 'TCP listener -> unix socket target' {
        BeforeAll {
            $tunnel = New-QmTunnel unix-out -Listen tcp://127.0.0.1:0 -Via $via -Target $unixEcho.Uri | Start-QmTunnel -PassThru
            $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 3MB + 7, 60)
            Wait-Until { (Get-QmTunnelStats unix-out).ConnectionsCurrent -eq 0 } 'the connection of unix-out is closed'
            $connection = @(Get-QmTunnelConnection unix-out)
        }

        It 'carries 3 MiB there and back through the unix socket, SHA-256 equal, half-close included' {
            $result.Intact | Should -BeTrue -Because $result.ToString()
            $unixEcho.ConnectionsAccepted | Should -BeGreaterOrEqual 1
        }

        It 'Get-QmTunnelConnection shows the socket path as the target' {
            $connection.Count | Should -Be 1
            $connection[0].Target | Should -Be $unixEcho.Uri
            $connection[0].Client | Should -Match '^127\.0\.0\.1:\d+$'
            ($connection | Format-List | Out-String) | Should -Match ([regex]::Escape("Target          : $($unixEcho.Uri)"))
        }
    }

    Context 'pipe listener' {
        It 'serves the pipe at Path.GetTempPath()/CoreFxPipe_<name>, where a plain Unix-socket client gets through' {
            $name = "qmt-pester-$run"
            $null = New-QmTunnel pipe-in -Listen "pipe://$name" -Via $via -Target $echo.Uri | Start-QmTunnel
            $path = Join-Path ([IO.Path]::GetTempPath()) "CoreFxPipe_$name"
            $path | Should -Exist
            [QmTunnel.PesterTools.UnixEchoClient]::Run($path, 1MB, 60) | Should -BeNullOrEmpty
            Stop-QmTunnel pipe-in
            $path | Should -Not -Exist
        }
    }

    Context 'allow-rules with paths at the last server' {
        BeforeAll {
            $session = Connect-QmTunnelServer "qmt://127.0.0.1:$($serverB.Port)" -Credential $QmTestAdmin -CertificateThumbprint $serverB.CertificateThumbprint
            $null = New-QmTunnelGroup Sockets -Rights CreateTunnels -AllowRule "L#unix://$sockets/*#*#$($echo.Uri.Substring(6))" -Session $session
            $password = ConvertTo-SecureString 'sockets-password-1' -AsPlainText -Force
            $null = New-QmTunnelUser sockuser Sockets -Password $password -Session $session
            $sockHop = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Credential ([pscredential]::new('sockuser', $password))
        }

        It 'allows a unix listener under the allowed directory' {
            $tunnel = New-QmTunnel rule-unix -Listen "unix://$sockets/ruled.sock" -Via $sockHop -Target $echo.Uri | Start-QmTunnel -PassThru
            [QmTunnel.PesterTools.UnixEchoClient]::Run("$sockets/ruled.sock", 64KB, 60) | Should -BeNullOrEmpty
            $tunnel | Stop-QmTunnel
        }

        It 'refuses a TCP listener, naming the rule set and the tunnel as a rule' {
            $captured = Invoke-Capture { New-QmTunnel rule-tcp -Listen tcp://127.0.0.1:0 -Via $sockHop -Target $echo.Uri }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'PermissionDenied,*'
            "$($captured.Errors[0])" | Should -Match "allow-rules of group 'Sockets'"
            "$($captured.Errors[0])" | Should -Match 'Ask an administrator to add a rule'
            "$($captured.Errors[0])" | Should -Match 'written as a rule is L#127\.0\.0\.1:0#'
        }
    }

    Context 'URIs that are not valid' {
        It '<Case>' -ForEach @(
            @{ Case = 'a relative unix path'; Listen = 'unix://run/app.sock'; Target = $null; Pattern = 'three slashes' }
            @{ Case = 'a unix path with ..'; Listen = 'unix:///run/../etc/x.sock'; Target = $null; Pattern = "'\.\.'" }
            @{ Case = 'a mode that is not octal'; Listen = 'unix:///run/a.sock?mode=0999'; Target = $null; Pattern = 'octal' }
            @{ Case = 'a mode on a target'; Listen = $null; Target = 'unix:///run/a.sock?mode=0660'; Pattern = 'applies to -Listen only' }
            @{ Case = 'a pipe name with a slash'; Listen = 'pipe://a/b'; Target = $null; Pattern = 'a pipe name is' }
            @{ Case = 'a pipe with a query'; Listen = $null; Target = 'pipe://sql?mode=0600'; Pattern = 'takes no query' }
        ) {
            $listen = if ($Listen) { $Listen } else { 'tcp://127.0.0.1:0' }
            $target = if ($Target) { $Target } else { $echo.Uri }
            $captured = Invoke-Capture { New-QmTunnel bad-uri -Listen $listen -Via $via -Target $target }
            $captured.Errors.Count | Should -Be 1
            $captured.Errors[0].FullyQualifiedErrorId | Should -BeLike 'EndpointUriInvalid,*'
            "$($captured.Errors[0])" | Should -Match $Pattern
            Get-QmTunnel bad-uri -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }
}

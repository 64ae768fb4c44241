#Requires -Version 7.4
<#
    TLS between servers, through the BUILT module with real sockets and a real daemon:
    - the thumbprint a server reports is the SHA-256 fingerprint openssl s_client sees on its port;
    - a tunnel over qmt:// moves 50 MiB intact and A pins B's certificate (Get-QmTunnelKnownServer);
    - a plain link (qmt+plain://) is refused by a server that was not started with -AllowPlainLinks, with a reason
      that says what to do, and accepted by one that was;
    - a changed certificate is refused (CertificateMismatch, both fingerprints shown) until the pin is removed.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule


    # The SHA-256 fingerprint openssl sees on a port, as 64 upper-case hex digits.
    function Get-OpensslFingerprint([int]$Port) {
        $pem = '' | & openssl s_client -connect "127.0.0.1:$Port" 2>$null
        $fingerprint = ($pem | & openssl x509 -noout -fingerprint -sha256 2>$null) -join ''
        if ($fingerprint -notmatch '=([0-9A-Fa-f:]+)') { throw "openssl printed no fingerprint for port ${Port}: $fingerprint" }
        $Matches[1].Replace(':', '').ToUpperInvariant()
    }

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-tls-$run"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $serverA = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'b')
    $serverP = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'p') -AllowPlainLinks
}

AfterAll {
    Get-QmTunnel -ErrorAction SilentlyContinue | Remove-QmTunnel -ErrorAction SilentlyContinue
    foreach ($daemon in @($serverB, $serverP, $script:serverPNew)) {
        if ($daemon) { $daemon | Stop-QmTunnelServer -ErrorAction SilentlyContinue }
    }
    if ($serverA) { Stop-QmTunnelServer -ErrorAction SilentlyContinue }
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'TLS links between servers' {
    It 'openssl s_client sees the thumbprint the in-process server reports' -Skip:(-not (Get-Command openssl -ErrorAction Ignore)) {
        $serverA.CertificateThumbprint | Should -Match '^[0-9A-F]{64}$'
        Get-OpensslFingerprint $serverA.Port | Should -Be $serverA.CertificateThumbprint
    }

    It 'openssl s_client sees the thumbprint the daemon reports' -Skip:(-not (Get-Command openssl -ErrorAction Ignore)) {
        $serverB.CertificateThumbprint | Should -Match '^[0-9A-F]{64}$'
        Get-OpensslFingerprint $serverB.Port | Should -Be $serverB.CertificateThumbprint
    }

    It 'a tunnel over qmt:// moves 50 MiB intact, and A pins B''s certificate on first use' {
        $tunnel = New-QmTunnel tls50 -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($serverB.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
        $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 50MB, 120)
        $result.Intact | Should -BeTrue -Because $result.ToString()
        $result.SentSha256 | Should -Be $result.ReceivedSha256
        $pin = Get-QmTunnelKnownServer "127.0.0.1:$($serverB.Port)"
        $pin.Thumbprint | Should -Be $serverB.CertificateThumbprint
    }

    It 'a plain link is refused by a server without -AllowPlainLinks, with a reason that says what to do' {
        # Refused when the tunnel is created (the hop's login needs the link), and nothing is saved.
        $err = $null
        $tunnel = New-QmTunnel plainrefused -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt+plain://127.0.0.1:$($serverB.Port)") -Target $echo.Uri -ErrorVariable err -ErrorAction SilentlyContinue
        $tunnel | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'PlainLinkRefused,*'
        $err[0].CategoryInfo.Category | Should -Be 'SecurityError'
        $err[0].Exception.Message | Should -Match 'refused an unencrypted link'
        $err[0].Exception.Message | Should -Match '-AllowPlainLinks'
        Get-QmTunnel plainrefused -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'a plain link is accepted by a server started with -AllowPlainLinks' {
        $serverP.AllowPlainLinks | Should -BeTrue
        $tunnel = New-QmTunnel plainok -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt+plain://127.0.0.1:$($serverP.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
        $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 4MB, 60)
        $result.Intact | Should -BeTrue -Because $result.ToString()
    }

    It 'a changed certificate is refused with CertificateMismatch until the pin is removed' {
        $tunnel = New-QmTunnel changed -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($serverP.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)).Intact | Should -BeTrue
        $old = $serverP.CertificateThumbprint

        # P restarts on the same port and data path with a new certificate.
        $port = $serverP.Port
        $serverP | Stop-QmTunnelServer
        Remove-Item -LiteralPath (Join-Path $base 'p' 'server.pfx')
        # (a new variable: an It cannot reassign what BeforeAll defined; AfterAll stops it)
        $serverP = $script:serverPNew = Start-QmTunnelServer -Daemon -Port $port -DataPath (Join-Path $base 'p')
        $serverP.CertificateThumbprint | Should -Not -Be $old

        [QmTunnel.PesterTools.EchoClient]::Probe($tunnel.BoundListen, 100, 10) | Should -Match 'Reset|End'
        Wait-Until { (Get-QmTunnelStats changed).LastError -match 'not the expected one' } 'the mismatch is recorded'
        $message = (Get-QmTunnelStats changed).LastError
        $message | Should -Match $old
        $message | Should -Match $serverP.CertificateThumbprint
        $message | Should -Match 'Remove-QmTunnelKnownServer'

        Remove-QmTunnelKnownServer "127.0.0.1:$port"
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)).Intact | Should -BeTrue
        (Get-QmTunnelKnownServer "127.0.0.1:$port").Thumbprint | Should -Be $serverP.CertificateThumbprint
    }

    It 'a daemon given -CertificatePath serves that certificate, reports its thumbprint, and shows its password neither on its command line nor in its environment' {
        $key = [System.Security.Cryptography.ECDsa]::Create([System.Security.Cryptography.ECCurve+NamedCurves]::nistP256)
        $request = [System.Security.Cryptography.X509Certificates.CertificateRequest]::new('CN=own.test', $key, [System.Security.Cryptography.HashAlgorithmName]::SHA256)
        $own = $request.CreateSelfSigned([DateTimeOffset]::UtcNow.AddDays(-1), [DateTimeOffset]::UtcNow.AddDays(7))
        $pfx = Join-Path $base 'own.pfx'
        $secret = "pw-$run"
        [IO.File]::WriteAllBytes($pfx, $own.Export([System.Security.Cryptography.X509Certificates.X509ContentType]::Pkcs12, $secret))
        $expected = [Convert]::ToHexString([System.Security.Cryptography.SHA256]::HashData($own.RawData))

        $script:serverOwn = Start-QmTunnelServer -Daemon -Port 0 -DataPath (Join-Path $base 'own') -CertificatePath $pfx -CertificatePassword (ConvertTo-SecureString $secret -AsPlainText -Force)
        try {
            $serverOwn.CertificateThumbprint | Should -Be $expected
            if (Get-Command openssl -ErrorAction Ignore) { Get-OpensslFingerprint $serverOwn.Port | Should -Be $expected }
            if ($IsLinux) {
                # Not behind Test-Path: a missing process id would skip the check and pass.
                $serverOwn.ProcessId | Should -BeGreaterThan 0
                foreach ($file in 'cmdline', 'environ') {
                    $text = [Text.Encoding]::UTF8.GetString([IO.File]::ReadAllBytes("/proc/$($serverOwn.ProcessId)/$file"))
                    $text | Should -Not -BeNullOrEmpty
                    $text.Contains($secret) | Should -BeFalse -Because "/proc/PID/$file must not show the certificate's password"
                }
            }
        }
        finally {
            $serverOwn | Stop-QmTunnelServer
        }
    }

    It 'New-QmTunnelHop with B''s thumbprint and TLS 1.3 links and carries data; a wrong thumbprint is refused' {
        $hop = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -CertificateThumbprint $serverB.CertificateThumbprint.ToLowerInvariant() -MinimumTlsVersion Tls13 -Credential $QmTestAdmin
        $hop.CertificateThumbprint | Should -Be $serverB.CertificateThumbprint
        "$hop" | Should -Be "qmt://admin@127.0.0.1:$($serverB.Port)?sha256=$($serverB.CertificateThumbprint)&tls=1.3"
        $hop.Login | Should -Be 'Password'
        "$hop" | Should -Not -Match $QmTestAdminPassword
        $tunnel = New-QmTunnel hopped -Listen tcp://127.0.0.1:0 -Via $hop -Target $echo.Uri | Start-QmTunnel -PassThru
        $tunnel.Via | Should -Be "$hop"
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 2MB, 60)).Intact | Should -BeTrue

        $chacha = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Cipher ChaCha20Poly1305, Aes256Gcm -Credential $QmTestAdmin
        "$chacha" | Should -Be "qmt://admin@127.0.0.1:$($serverB.Port)?cipher=chacha20,aes256gcm"
        @($chacha.Cipher) | Should -Be @('ChaCha20Poly1305', 'Aes256Gcm')
        $tunnel = New-QmTunnel chacha -Listen tcp://127.0.0.1:0 -Via $chacha -Target $echo.Uri | Start-QmTunnel -PassThru
        ([QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)).Intact | Should -BeTrue
        { New-QmTunnelHop qmt://hostB -Cipher Aes128Gcm, 'Rc4' } | Should -Throw '*Aes128Gcm*ChaCha20Poly1305*Aes256Gcm*'

        $wrong = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -CertificateThumbprint ('AB' * 32) -Credential $QmTestAdmin
        $err = $null
        $bad = New-QmTunnel wronghop -Listen tcp://127.0.0.1:0 -Via $wrong -Target $echo.Uri -ErrorVariable err -ErrorAction SilentlyContinue
        $bad | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'CertificateMismatch,*'
        $err[0].Exception.Message | Should -Match 'given for this hop'

        $err = $null
        New-QmTunnelHop qmt://hostB -CertificateThumbprint 1234 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'EndpointUriInvalid*'
    }
}

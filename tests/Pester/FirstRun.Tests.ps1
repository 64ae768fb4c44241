#Requires -Version 7.4
<#
    What an administrator meets on a first run, through the BUILT module: the banner of build.ps1 start and the
    README's one-host trial run as written (in a child pwsh and in a runspace whose host answers the password
    prompts as a person would), on data folders, HOME and TMPDIR of their own (never the real default data path).
    Helpers: TestCommon.ps1, TestHost.cs (recording host), TestTools.cs (free port).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    Import-QmTestHost
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $base, $isolated = New-QmTestSandbox -Name 'first' -ModulePath $modulePath

    function Get-InProcessServer { @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }) }
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'The banner of build.ps1 start' {
    BeforeAll {
        if (Get-InProcessServer) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }
        $tunnelPort = [QmTunnel.PesterTools.NetTools]::FreeTcpPort()
        $build = Join-Path $repoRoot 'src' 'Build' 'QmTunnel.Build.psm1'
        # As build.ps1 start does by default: the dev server uses the default data path, here $isolated.QMTUNNEL_DATA,
        # which the banner's commands below also see as theirs (so a second server there would find it locked).
        $devData = $isolated.QMTUNNEL_DATA
        # build.ps1 start runs Start-QmDevServer after building; the module is built already, so run it directly.
        $dev = Start-QmTestPwsh -Environment $isolated -Command @"
Import-Module '$build'
Start-QmDevServer -Port 0 -TunnelPort $tunnelPort -ManifestPath '$modulePath'
"@
        Wait-Until { (Get-QmTestPwshOutput $dev) -match 'Press Ctrl\+C' -or $dev.Process.HasExited } 'the dev server printed its banner' 90
        $printed = Get-QmTestPwshOutput $dev
        $thumbprint = ($printed | Select-String 'certificate SHA256 ([0-9A-F]{64})' | Select-Object -First 1).Matches[0].Groups[1].Value
        $password = ($printed | Select-String 'generated password (\S+) \.' | Select-Object -First 1).Matches[0].Groups[1].Value
        # The commands: the lines indented by two spaces after the "Create your first tunnel" paragraph, up to the blank line.
        $banner = @()
        $inBlock = $false
        foreach ($line in $printed) {
            if ($line -match '^Create your first tunnel') { $inBlock = $true; continue }
            if ($inBlock -and $line -match '^  (?<command>\S.*)$') { $banner += $Matches.command; continue }
            if ($inBlock -and $banner.Count -gt 0 -and $line -eq '') { break }
        }
        # The same default data path as the dev server's (never the real one).
        $savedData = $env:QMTUNNEL_DATA
        $env:QMTUNNEL_DATA = $isolated.QMTUNNEL_DATA
        $session = New-QmTestRunspace
        # As a person would: the password the dev server showed at its first start, typed at each prompt.
        $session.UI.Passwords['admin'] = $password
    }

    AfterAll {
        if ($session) {
            $null = Invoke-QmTestLine $session 'Stop-QmTunnelServer -ErrorAction SilentlyContinue'
            Close-QmTestRunspace $session
        }
        Stop-QmTestPwsh $dev
        $env:QMTUNNEL_DATA = $savedData
    }

    It 'starts the dev server and prints its thumbprint, its first admin password and the commands' {
        $dev.Process.HasExited | Should -BeFalse -Because ($printed -join "`n")
        ($printed -match [regex]::Escape("(data: $devData)")) | Should -Not -BeNullOrEmpty -Because 'the dev server uses the default data path'
        $thumbprint | Should -Match '^[0-9A-F]{64}$'
        $password | Should -Not -BeNullOrEmpty
        $banner.Count | Should -BeGreaterOrEqual 5
    }

    It 'gives the second server a data folder of its own, never the dev server''s or the default one' {
        $start = @($banner | Where-Object { $_ -match '^Start-QmTunnelServer' })
        $start.Count | Should -Be 1
        $start[0] | Should -Match '-DataPath'
        $start[0] | Should -Not -Match ([regex]::Escape($devData))
        $start[0] | Should -Match ([regex]::Escape($isolated.TMPDIR))
    }

    It 'gives the hop a login' {
        ($banner | Where-Object { $_ -match 'New-QmTunnelHop' }) | Should -Match '-Credential admin'
    }

    It 'runs as written, and the tunnel carries a TLS handshake to the dev server and back' {
        $results = foreach ($line in $banner) {
            $result = Invoke-QmTestLine $session $line
            $result.Errors | Should -BeNullOrEmpty -Because "'$line' must run as written: $($result.Errors -join '; ')"
            $result
        }
        # The TLS client's line prints the certificate the dev server presented, through the tunnel.
        $seen = $results | Where-Object { $_.Line -match 'SslStream' } | ForEach-Object Output
        "$seen" | Should -Be $thumbprint
        $stats = ($results | Where-Object { $_.Line -match '^Get-QmTunnelStats' }).Output[0]
        $stats.ConnectionsTotal | Should -Be 1
        $stats.FailedConnections | Should -Be 0
        $stats.BytesToClients | Should -BeGreaterThan 100 -Because 'the server hello and certificate came back through the tunnel'
        $session.UI.Prompts | Should -Be @('admin') -Because 'the only prompt is the hop''s login'
    }
}

Describe "README's quick start on one host" {
    BeforeAll {
        if (Get-InProcessServer) { throw 'An in-process server is already running in this process: a test file before this one did not stop it.' }
        $readme = Get-Content -LiteralPath (Join-Path $repoRoot 'README.md') -Raw
        $section = $readme.Substring($readme.IndexOf('### On one host'))
        $block = [regex]::Match($section, '(?s)```powershell\r?\n(?<code>.*?)```').Groups['code'].Value
        $lines = @($block -split '\r?\n' | Where-Object { $_.Trim() })
        # The ports the block names, which must be free here (run the tests in a network namespace of their own).
        $ports = @([regex]::Matches($block, '(?:-Port |127\.0\.0\.1:)(\d{4,5})') | ForEach-Object { [int]$_.Groups[1].Value } | Sort-Object -Unique)
        $busy = @($ports | Where-Object {
                $probe = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, $_)
                try { $probe.Start(); $false } catch { $true } finally { $probe.Stop() }
            })
        # Run from a folder laid out like the repository (out/qmTunnel is the module under test), with a temp folder of its own.
        $tree = Join-Path $base 'readme'
        $null = New-Item -ItemType Directory -Path (Join-Path $tree 'out') -Force
        $null = New-Item -ItemType SymbolicLink -Path (Join-Path $tree 'out' 'qmTunnel') -Target (Split-Path -Parent $modulePath)
        $saved = @{ TMPDIR = $env:TMPDIR; QMTUNNEL_DATA = $env:QMTUNNEL_DATA }
        $env:TMPDIR = Join-Path $base 'readme-tmp'
        $env:QMTUNNEL_DATA = Join-Path $base 'readme-default-data'
        $null = New-Item -ItemType Directory -Path $env:TMPDIR -Force
        $session = New-QmTestRunspace
        $session.UI.Passwords['admin'] = 'readme-admin-password'
        $null = Invoke-QmTestLine $session "Set-Location -LiteralPath '$tree'"
        # The session's defaults of the other test files do not apply here: the block runs as written.
        $null = Invoke-QmTestLine $session '$PSDefaultParameterValues.Clear()'
    }

    AfterAll {
        if ($session) {
            $null = Invoke-QmTestLine $session 'Get-QmTunnelServer | Stop-QmTunnelServer -ErrorAction SilentlyContinue'
            Close-QmTestRunspace $session
        }
        $env:TMPDIR = $saved.TMPDIR
        $env:QMTUNNEL_DATA = $saved.QMTUNNEL_DATA
    }

    It 'names free ports' {
        $ports.Count | Should -BeGreaterOrEqual 3
        $busy | Should -BeNullOrEmpty -Because 'the README block uses fixed ports; another program holds them here'
    }

    It 'runs as written: the client reaches host B through host A''s tunnel, and everything stops' {
        $results = foreach ($line in $lines) {
            $result = Invoke-QmTestLine $session $line
            $result.Errors | Should -BeNullOrEmpty -Because "'$line' must run as written: $($result.Errors -join '; ')"
            $result
        }
        $stats = ($results | Where-Object { $_.Line -match '^Get-QmTunnelStats' }).Output[0]
        $stats.ConnectionsTotal | Should -Be 1
        $stats.FailedConnections | Should -Be 0
        $stats.BytesFromClients | Should -BeGreaterThan 0
        $stats.BytesToClients | Should -BeGreaterThan 0
        Get-InProcessServer | Should -BeNullOrEmpty
        @(Get-QmTunnelServer | Where-Object DataPath -Like "$($env:TMPDIR)*") | Should -BeNullOrEmpty
    }
}

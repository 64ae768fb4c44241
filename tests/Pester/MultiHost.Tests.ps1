#Requires -Version 7.4
<#
    docs/multi-host.md, "Try it on one Linux machine", run as written against the BUILT module: its bash script makes
    five network namespaces (A, G1, G2, B, T in a line), a daemon in G1, G2 and B, services in B and T, and on A the
    tunnels of figures 5 (a chain of gateways) and 2 (a LAN behind it), then deletes everything. Skipped, saying why,
    where it cannot run (not Linux, not root, ip, socat or openssl missing).
#>

Describe 'docs/multi-host.md: the chain of gateways and the LAN behind it, on one machine' {
    BeforeAll {
        . (Join-Path $PSScriptRoot 'TestCommon.ps1')
        $whyNot = if (-not $IsLinux) { 'Linux only: network namespaces' }
        elseif ((& id -u) -ne '0') { 'needs root: ip netns add' }
        else {
            $missing = @('ip', 'socat', 'openssl' | Where-Object { -not (Get-Command $_ -CommandType Application -ErrorAction Ignore) })
            if ($missing) { "not installed: $($missing -join ', ') (apt-get install iproute2 socat openssl)" }
        }
        if (-not $whyNot) {
            $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
            $page = Get-Content -LiteralPath (Join-Path $repoRoot 'docs' 'multi-host.md') -Raw
            $bash = [regex]::Match($page, '(?s)```bash\n(?<script>.*?)```').Groups['script'].Value
            $pwsh = Get-QmTestPwsh
            $start = [System.Diagnostics.ProcessStartInfo]::new('bash')
            foreach ($a in '-c', $bash) { $start.ArgumentList.Add($a) }
            $start.WorkingDirectory = $repoRoot
            $start.UseShellExecute = $false
            $start.RedirectStandardOutput = $true
            $start.RedirectStandardError = $true
            $start.Environment['MODULE'] = Get-QmTestModulePath
            $prefix = "mh-demo-$PID"   # namespace names are the machine's: another run at once has its own
            $start.Environment['N'] = $prefix
            $start.Environment['PWSH'] = (@($pwsh.FilePath) + $pwsh.Prefix) -join ' '
            $process = [System.Diagnostics.Process]::Start($start)
            $stderr = $process.StandardError.ReadToEndAsync()
            $stdout = $process.StandardOutput.ReadToEndAsync()
            $finished = $process.WaitForExit(240000)
            if (-not $finished) { $process.Kill($true) }
            $process.WaitForExit()
            $output = $stdout.Result + "`n" + $stderr.Result
            $exitCode = $process.ExitCode
        }
    }

    It 'answers from B and from T through the chain, shows three hops up, and A cannot reach B directly' {
        if ($whyNot) { Set-ItResult -Skipped -Because $whyNot; return }
        $finished | Should -BeTrue -Because 'the script must end within 4 minutes'
        $exitCode | Should -Be 0 -Because $output
        $output | Should -Match '(?m)^served by B$'
        $output | Should -Match '(?m)^served by T behind B$'
        foreach ($hop in '1 qmt://198\.51\.100\.2:9200', '2 qmt://198\.51\.100\.6:9200', '3 qmt://198\.51\.100\.10:9200') {
            $output | Should -Match "$hop\s+Up"
        }
        $output | Should -Match 'A cannot reach B directly'
    }

    It 'leaves no namespace behind' {
        if ($whyNot) { Set-ItResult -Skipped -Because $whyNot; return }
        (& ip netns list) -match "^$prefix-" | Should -BeNullOrEmpty
    }
}

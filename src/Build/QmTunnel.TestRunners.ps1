# The test runners of build.ps1 test (dot-sourced by QmTunnel.Build.psm1, which exports them): xunit and Pester, each
# counted from its own result file, and the summary whose last line CI reads.

function New-QmRunnerResult {
    param([string]$Runner)
    [pscustomobject]@{ Runner = $Runner; Passed = 0; Failed = 0; Skipped = 0; Total = 0; Crashed = $false; Message = ''; FailedTests = @() }
}

<#
.SYNOPSIS
dotnet test of the engine tests (already built) with a trx logger; counts read from the trx.
#>
function Invoke-QmXunit {
    param([string]$Configuration = 'Release')
    $result = New-QmRunnerResult -Runner 'xunit'
    Push-Location $script:RepoRoot
    try {
        Write-QmStep 'xunit: tests/QmTunnel.Engine.Tests'
        $null = New-Item -ItemType Directory -Path $script:TestResultsDir -Force
        $trx = Join-Path $script:TestResultsDir 'QmTunnel.Engine.Tests.trx'
        if (Test-Path -LiteralPath $trx) { Remove-Item -LiteralPath $trx -Force }
        $arguments = @('test', 'tests/QmTunnel.Engine.Tests/QmTunnel.Engine.Tests.csproj', '-c', $Configuration, '--no-build', '--nologo',
            '--logger', 'trx;LogFileName=QmTunnel.Engine.Tests.trx', '--logger', 'console;verbosity=normal',
            '--results-directory', $script:TestResultsDir,
            '--blame-hang-timeout', '15m', '--blame-hang-dump-type', 'none')
        Write-Host "   dotnet $($arguments -join ' ')" -ForegroundColor DarkGray
        & dotnet @arguments | Out-Host
        $exitCode = $LASTEXITCODE
        if (-not (Test-Path -LiteralPath $trx)) {
            $result.Crashed = $true
            $result.Message = "dotnet test exited with $exitCode and wrote no $trx"
            return $result
        }
        [xml]$doc = Get-Content -LiteralPath $trx -Raw
        $counters = $doc.TestRun.ResultSummary.Counters
        $result.Total = [int]$counters.total
        $result.Passed = [int]$counters.passed
        $result.Failed = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted
        $result.Skipped = [int]$counters.notExecuted
        $result.FailedTests = @($doc.TestRun.Results.UnitTestResult | Where-Object { $_ -and $_.outcome -ne 'Passed' -and $_.outcome -ne 'NotExecuted' } |
                ForEach-Object testName)
        if ($doc.TestRun.ResultSummary.outcome -eq 'Aborted' -or ($exitCode -ne 0 -and $result.Failed -eq 0)) {
            $result.Crashed = $true
            $result.Message = "dotnet test exited with $exitCode (run outcome: $($doc.TestRun.ResultSummary.outcome))"
        }
        return $result
    }
    finally {
        Pop-Location
    }
}

<#
.SYNOPSIS
Pester over tests/Pester in a child pwsh (so the built module never loads into this process), against the staged
module given by QMTUNNEL_MODULE_PATH; the child writes its counts to a json file read here.
#>
function Invoke-QmPester {
    param(
        [Parameter(Mandatory)][string]$PesterPath,
        [TimeSpan]$Timeout = [TimeSpan]::FromMinutes(40)
    )
    $result = New-QmRunnerResult -Runner 'Pester'
    Write-QmStep 'Pester: tests/Pester (child pwsh, staged module)'
    $null = New-Item -ItemType Directory -Path $script:TestResultsDir -Force
    $json = Join-Path $script:TestResultsDir 'pester.json'
    $xml = Join-Path $script:TestResultsDir 'pester.xml'
    foreach ($file in $json, $xml) { if (Test-Path -LiteralPath $file) { Remove-Item -LiteralPath $file -Force } }

    $start = [System.Diagnostics.ProcessStartInfo]::new('dotnet')
    $start.UseShellExecute = $false
    $start.WorkingDirectory = $script:RepoRoot
    foreach ($arg in @('pwsh', '-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot 'Invoke-QmPester.ps1'),
            '-PesterPath', $PesterPath, '-TestPath', (Join-Path $script:RepoRoot 'tests' 'Pester'), '-ResultPath', $json, '-XmlPath', $xml)) {
        $start.ArgumentList.Add($arg)
    }
    $start.Environment['QMTUNNEL_MODULE_PATH'] = Get-QmStagedManifestPath
    Write-Host "   QMTUNNEL_MODULE_PATH=$(Get-QmStagedManifestPath) dotnet $($start.ArgumentList -join ' ')" -ForegroundColor DarkGray
    $process = [System.Diagnostics.Process]::Start($start)
    try {
        if (-not $process.WaitForExit([int]$Timeout.TotalMilliseconds)) {
            $process.Kill($true)
            $process.WaitForExit()
            $result.Crashed = $true
            $result.Message = "Pester did not finish within $Timeout and was killed"
        }
        $process.WaitForExit()
        $exitCode = $process.ExitCode
    }
    finally {
        $process.Dispose()
    }
    if (-not (Test-Path -LiteralPath $json)) {
        $result.Crashed = $true
        if (-not $result.Message) { $result.Message = "the Pester child exited with $exitCode and wrote no $json" }
        return $result
    }
    $counts = Get-Content -LiteralPath $json -Raw | ConvertFrom-Json
    $result.Passed = [int]$counts.passed
    $result.Skipped = [int]$counts.skipped + [int]$counts.notRun
    # A failed BeforeAll / container is a failure even when it leaves no test marked failed.
    $result.Failed = [int]$counts.failed + [int]$counts.failedBlocks + [int]$counts.failedContainers
    $result.Total = [int]$counts.total
    $result.FailedTests = @($counts.failedTests) + @($counts.failedBlockNames) + @($counts.failedContainerNames) | Where-Object { $_ }
    if ($exitCode -ne 0 -and -not $result.Message) {
        $result.Crashed = $true
        $result.Message = "the Pester child exited with $exitCode"
    }
    $result
}

<#
.SYNOPSIS
Prints the per-runner summary and, as the very last line, "N passed, N failed". Returns the process exit code.
#>
function Write-QmTestSummary {
    param([object[]]$Results, [string[]]$Problems = @())
    $problemList = [System.Collections.Generic.List[string]]::new()
    foreach ($p in $Problems) { if ($p) { $problemList.Add($p) } }
    Write-Host ''
    Write-Host '==> Test summary' -ForegroundColor Cyan
    foreach ($r in $Results) {
        $line = '   {0,-7} {1,5} passed, {2,4} failed, {3,4} skipped' -f $r.Runner, $r.Passed, $r.Failed, $r.Skipped
        if ($r.Crashed) { $line += "   CRASHED: $($r.Message)"; $problemList.Add("$($r.Runner): $($r.Message)") }
        elseif ($r.Total -eq 0) { $line += '   RAN NO TEST'; $problemList.Add("$($r.Runner) ran no test") }
        Write-Host $line -ForegroundColor ($(if ($r.Failed -gt 0 -or $r.Crashed -or $r.Total -eq 0) { 'Red' } else { 'Green' }))
        foreach ($t in $r.FailedTests) { Write-Host "      failed: $t" -ForegroundColor Red }
    }
    foreach ($p in $problemList) { Write-Host "   problem: $p" -ForegroundColor Red }
    # No runner at all (a prerequisite failed): Measure-Object then has no Sum.
    $passed = if ($Results) { ($Results | Measure-Object -Property Passed -Sum).Sum } else { 0 }
    $failed = if ($Results) { ($Results | Measure-Object -Property Failed -Sum).Sum } else { 0 }
    if ($null -eq $passed) { $passed = 0 }
    if ($null -eq $failed) { $failed = 0 }
    $exitCode = if ($failed -gt 0 -or $problemList.Count -gt 0 -or $passed -eq 0) { 1 } else { 0 }
    # The very last line (read by CI): xunit + Pester totals.
    Write-Host "$passed passed, $failed failed"
    $exitCode
}

<#
.SYNOPSIS
The fuzz task: builds tests/QmTunnel.Fuzz and runs qmtunnel-fuzz over the parsers a peer or a user reaches (frame,
control, control-write, management, management-answer, handshake; docs/protocol.md, "Fuzzing"). Prints per target the
inputs, exec/s, how the cases ended and the findings; failing inputs go to out/fuzz/<target>/. Returns its exit code
(1 on any finding).
#>
function Invoke-QmFuzz {
    param(
        [string]$Configuration = 'Release',
        [long]$Iterations = 1000000,
        [Nullable[ulong]]$Seed,
        [string[]]$Target,
        [Nullable[long]]$Case
    )
    Push-Location $script:RepoRoot
    try {
        Write-QmStep 'Building the fuzz harness (tests/QmTunnel.Fuzz)'
        Invoke-QmNative -What 'dotnet build (fuzz harness)' -FilePath dotnet -ArgumentList @(
            'build', 'tests/QmTunnel.Fuzz/QmTunnel.Fuzz.csproj', '-c', $Configuration, '--nologo', '-v', 'q')
        $harness = Join-Path $script:RepoRoot 'tests' 'QmTunnel.Fuzz' 'bin' $Configuration 'net10.0' 'qmtunnel-fuzz.dll'
        $arguments = @($harness, '--iterations', $Iterations, '--corpus', (Join-Path $script:RepoRoot 'tests' 'QmTunnel.Fuzz' 'corpus'),
            '--failures', (Join-Path $script:RepoRoot 'out' 'fuzz'))
        if ($null -ne $Seed) { $arguments += @('--seed', $Seed) }
        if ($Target) { $arguments += @('--target', ($Target -join ',')) }
        if ($null -ne $Case) { $arguments += @('--case', $Case) }
        Write-QmStep "Fuzzing: dotnet $($arguments -join ' ')"
        & dotnet @arguments | Out-Host
        $LASTEXITCODE
    }
    finally {
        Pop-Location
    }
}

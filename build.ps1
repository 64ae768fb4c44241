<#
.SYNOPSIS
Builds, tests, runs and benchmarks qmTunnel for PowerShell.

.DESCRIPTION
Tasks:
  build  dotnet build qmTunnel.sln, then stage the module in out/qmTunnel (manifest, format file, help XML, dlls,
         daemon/qmtunnel-server).
  test   install what the tests need (socat, iperf3, iproute2 and nftables with apt-get when missing, Pester 5.7.1
         from NuGet), build, run the xunit tests and the Pester tests (in a child pwsh, against the staged module); the
         last line printed is "N passed, N failed"; the exit code is 1 when anything failed.
  start  build, then run a qmTunnel server in this process on port 9200 until Ctrl+C.
  bench  build, then run bench/Invoke-QmTunnelBench.ps1 (writes bench/results/latest.md).
  clean  remove out/ and the projects' bin/ and obj/.
The helpers live in src/Build/QmTunnel.Build.psm1.

.EXAMPLE
dotnet tool restore && dotnet pwsh ./build.ps1 test

.EXAMPLE
dotnet tool restore && dotnet pwsh ./build.ps1 start
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('build', 'test', 'start', 'bench', 'clean')]
    [string]$Task = 'build',

    [ValidateSet('Release', 'Debug')]
    [string]$Configuration = 'Release',

    # start: the address the server listens on.
    [string]$ListenAddress = '127.0.0.1',

    # start: the port the server listens on.
    [ValidateRange(0, 65535)]
    [int]$Port = 9200,

    # start: the server's data folder (default: the engine's default data path).
    [string]$DataPath
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

Import-Module (Join-Path $PSScriptRoot 'src' 'Build' 'QmTunnel.Build.psm1') -Force
Push-Location $PSScriptRoot
try {
    switch ($Task) {
        'build' {
            Invoke-QmBuild -Configuration $Configuration
        }
        'test' {
            $exitCode = Invoke-QmTest -Configuration $Configuration
            exit $exitCode
        }
        'start' {
            Invoke-QmBuild -Configuration $Configuration
            $startParameters = @{ Port = $Port; ListenAddress = $ListenAddress }
            if ($DataPath) { $startParameters.DataPath = $DataPath }
            Start-QmDevServer @startParameters
        }
        'bench' {
            Invoke-QmBuild -Configuration $Configuration
            exit (Invoke-QmBench -Configuration $Configuration)
        }
        'clean' {
            Remove-QmBuildOutput
        }
    }
}
catch {
    Write-Host "build.ps1 $Task failed: $($_.Exception.Message)" -ForegroundColor Red
    if ($_.ScriptStackTrace) { Write-Host $_.ScriptStackTrace -ForegroundColor DarkGray }
    exit 1
}
finally {
    Pop-Location
}

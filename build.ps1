<#
.SYNOPSIS
Builds, tests, runs and benchmarks qmTunnel for PowerShell.

.DESCRIPTION
Tasks:
  build  dotnet build qmTunnel.sln, then stage the module in out/qmTunnel (manifest, format file, help XML, dlls,
         daemon/qmtunnel-server).
  test   install what the tests need (socat, iperf3, iproute2, nftables, curl, dnsmasq-base and dnsutils with apt-get
         when missing, Pester 5.7.1 from NuGet), build, run the xunit tests and the Pester tests (in a child pwsh, against
         the staged module); the last line printed is "N passed, N failed"; the exit code is 1 when anything failed.
  start  build, then run a qmTunnel server in this process on port 9200 until Ctrl+C.
  bench  build, then run bench/Invoke-QmTunnelBench.ps1 (writes bench/results/latest.md).
  fuzz   build the fuzz harness (tests/QmTunnel.Fuzz) and run -Iterations inputs (1,000,000 by default) over the frame,
         control, management and handshake parsers with -Seed (random when not given; printed), or one -Target; -Case
         runs one case of a seed again. Prints inputs, exec/s and findings per target; exit code 1 on any finding
         (the failing inputs are in out/fuzz/<target>/: check them in under tests/QmTunnel.Fuzz/corpus/<target>/).
  clean  remove out/ and the projects' bin/ and obj/.
The helpers live in src/Build/QmTunnel.Build.psm1.

.EXAMPLE
dotnet tool restore && dotnet pwsh ./build.ps1 test

.EXAMPLE
dotnet tool restore && dotnet pwsh ./build.ps1 start

.EXAMPLE
dotnet tool restore && dotnet pwsh ./build.ps1 fuzz -Iterations 2000000 -Seed 42
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('build', 'test', 'start', 'bench', 'fuzz', 'clean')]
    [string]$Task = 'build',

    [ValidateSet('Release', 'Debug')]
    [string]$Configuration = 'Release',

    # start: the address the server listens on.
    [string]$ListenAddress = '127.0.0.1',

    # start: the port the server listens on.
    [ValidateRange(0, 65535)]
    [int]$Port = 9200,

    # start: the server's data folder (default: the engine's default data path).
    [string]$DataPath,

    # fuzz: inputs in all, shared among the targets (the handshake, a connection per case, gets 1/20 of a share).
    [ValidateRange(0, [long]::MaxValue)]
    [long]$Iterations = 1000000,

    # fuzz: the seed of the run (random when not given); with -Case, the seed of the case to run again.
    [Nullable[ulong]]$Seed,

    # fuzz: only these targets (frame, control, control-write, management, management-answer, handshake).
    [ValidateSet('frame', 'control', 'control-write', 'management', 'management-answer', 'handshake')]
    [string[]]$Target,

    # fuzz: run this one case of -Seed again (its input is written to out/fuzz/<target>/).
    [Nullable[long]]$Case
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
        'fuzz' {
            $fuzzParameters = @{ Configuration = $Configuration; Iterations = $Iterations; Seed = $Seed; Case = $Case }
            if ($Target) { $fuzzParameters.Target = $Target }
            exit (Invoke-QmFuzz @fuzzParameters)
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

<#
.SYNOPSIS
Runs Pester over the given tests and writes the counts to a json file. Started by build.ps1 test in a child pwsh, so
the built module (found by the tests through $env:QMTUNNEL_MODULE_PATH) never loads into the build's process.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$PesterPath,
    [Parameter(Mandatory)][string]$TestPath,
    [Parameter(Mandatory)][string]$ResultPath,
    [string]$XmlPath
)
$ErrorActionPreference = 'Stop'
Import-Module -Name $PesterPath -Force

$config = New-PesterConfiguration
$config.Run.Path = $TestPath
$config.Run.PassThru = $true
$config.Run.Exit = $false
$config.Output.Verbosity = 'Detailed'
if ($XmlPath) {
    $config.TestResult.Enabled = $true
    $config.TestResult.OutputFormat = 'NUnitXml'
    $config.TestResult.OutputPath = $XmlPath
}

$run = Invoke-Pester -Configuration $config

# A block whose BeforeAll failed already marks its tests failed; only a failed block with no failed test in it (an
# AfterAll failure, say) adds a failure of its own, so nothing is counted twice.
function Test-HasFailedTest($Block) {
    if ($null -eq $Block) { return $false }
    if (@($Block.Tests | Where-Object { $_.Result -eq 'Failed' }).Count -gt 0) { return $true }
    foreach ($child in @($Block.Blocks | Where-Object { $null -ne $_ })) { if (Test-HasFailedTest $child) { return $true } }
    $false
}
$extraBlocks = @($run.FailedBlocks | Where-Object { -not (Test-HasFailedTest $_) })

$summary = [ordered]@{
    result               = [string]$run.Result
    total                = $run.TotalCount
    passed               = $run.PassedCount
    failed               = $run.FailedCount
    skipped              = $run.SkippedCount
    notRun               = $run.NotRunCount
    failedBlocks         = $extraBlocks.Count
    failedContainers     = $run.FailedContainersCount
    failedTests          = @($run.Failed | ForEach-Object { $_.ExpandedPath })
    failedBlockNames     = @($extraBlocks | ForEach-Object { "block: $($_.ExpandedPath)" })
    failedContainerNames = @($run.FailedContainers | ForEach-Object { "file: $($_.Item)" })
}
$summary | ConvertTo-Json -Depth 4 | Set-Content -LiteralPath $ResultPath -Encoding utf8NoBOM

<#
.SYNOPSIS
Runs the commands of one help example as a person would type them, in a runspace behind the test host (TestHost.cs),
and prints one line "RESULT {json}": how many commands ran, their errors. Used by Examples.Tests.ps1 in a child pwsh
of its own (its own in-process server, data folders, HOME and TMPDIR). The module is imported first, as a reader's
session has it; everything the example started is stopped at the end.
#>
param(
    [Parameter(Mandatory)][string]$CommandsPath,
    [Parameter(Mandatory)][string]$ModulePath,
    [Parameter(Mandatory)][string]$WorkingDirectory,
    [Parameter(Mandatory)][string]$TestHostPath
)
$ErrorActionPreference = 'Stop'
Add-Type -Path $TestHostPath
$commands = @(Get-Content -LiteralPath $CommandsPath -Raw | ConvertFrom-Json)
$testHost = [QmTunnel.PesterTools.RecordingHost]::new(120, 50, $false)
# A new admin's password, typed at its prompt; a first start's generated password is typed once shown.
$testHost.Recorder.DefaultPassword = 'example-password-1'
$runspace = [runspacefactory]::CreateRunspace($testHost)
$runspace.Open()

function Invoke-Line([string]$Line) {
    $ps = [powershell]::Create()
    $ps.Runspace = $runspace
    try {
        $null = $ps.AddScript($Line)
        $failure = $null
        try { $null = $ps.Invoke() } catch { $failure = $_.Exception.InnerException ?? $_.Exception }
        @($ps.Streams.Error | ForEach-Object { "$Line => [$($_.FullyQualifiedErrorId)] $_" }) + @(if ($failure) { "$Line => $($failure.Message)" })
    }
    finally { $ps.Dispose() }
}

$setup = @(Invoke-Line "Set-Location -LiteralPath '$WorkingDirectory'; Import-Module '$ModulePath'")
$errors = [System.Collections.Generic.List[string]]::new()
$setup | ForEach-Object { $errors.Add("setup: $_") }
$ran = 0
foreach ($command in $commands) {
    foreach ($e in Invoke-Line $command) { $errors.Add($e) }
    $ran++
}
$null = Invoke-Line 'Get-QmTunnelSession | Disconnect-QmTunnelServer -ErrorAction SilentlyContinue; Get-QmTunnelServer | Stop-QmTunnelServer -ErrorAction SilentlyContinue'
'RESULT ' + (ConvertTo-Json -Compress -InputObject @{ Commands = $ran; Errors = @($errors) })
$runspace.Dispose()

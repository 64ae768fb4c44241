# Build helpers of qmTunnel for PowerShell, used by ../../build.ps1 (which stays thin) and bench/Invoke-QmTunnelBench.ps1.
# Every step that runs a native tool checks its exit code and throws: a failed step never goes unnoticed.
#Requires -Version 7.4
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
$script:AptUpdated = $false

# The staged module: out/qmTunnel/ (see README.md, "Layout").
$script:StageDir = Join-Path $script:RepoRoot 'out' 'qmTunnel'
$script:TestResultsDir = Join-Path $script:RepoRoot 'out' 'test-results'
$script:PesterVersion = '5.7.1'

function Get-QmRepoRoot { $script:RepoRoot }

function Get-QmStagedManifestPath { Join-Path $script:StageDir 'qmTunnel.psd1' }

function Write-QmStep {
    param([Parameter(Mandatory)][string]$Message)
    Write-Host ''
    Write-Host "==> $Message" -ForegroundColor Cyan
}

<#
.SYNOPSIS
Runs a native command and throws when it exits non-zero, naming the step and the command line.
#>
function Invoke-QmNative {
    param(
        [Parameter(Mandatory)][string]$What,
        [Parameter(Mandatory)][string]$FilePath,
        [string[]]$ArgumentList = @()
    )
    Write-Host "   $FilePath $($ArgumentList -join ' ')" -ForegroundColor DarkGray
    # Out-Host: the tool's output is shown as it comes and never becomes the caller's return value.
    & $FilePath @ArgumentList | Out-Host
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed (exit code $LASTEXITCODE): $FilePath $($ArgumentList -join ' ')"
    }
}

<#
.SYNOPSIS
The <Version> of Directory.Build.props (the one version of the product): Version (System.Version part) and Prerelease.
#>
function Get-QmVersion {
    $propsPath = Join-Path $script:RepoRoot 'Directory.Build.props'
    [xml]$props = Get-Content -LiteralPath $propsPath -Raw
    $text = @($props.Project.PropertyGroup | ForEach-Object { $_.SelectSingleNode('Version') } | Where-Object { $_ } | ForEach-Object InnerText) |
        Select-Object -First 1
    if (-not $text) { throw "No <Version> in ${propsPath}: add <Version>1.2.3</Version> to its PropertyGroup." }
    $numeric, $prerelease = $text.Trim() -split '-', 2
    $version = $null
    if (-not [version]::TryParse($numeric, [ref]$version)) {
        throw "<Version>$text</Version> in $propsPath is not a version like 1.2.3 or 1.2.3-beta1."
    }
    [pscustomobject]@{ Text = $text.Trim(); Version = $version; Prerelease = $prerelease }
}

<#
.SYNOPSIS
dotnet build of the solution, then stages the module under out/qmTunnel (layout in README.md).
#>
function Invoke-QmBuild {
    param([string]$Configuration = 'Release')
    Push-Location $script:RepoRoot
    try {
        Write-QmStep "Building qmTunnel.sln ($Configuration)"
        Invoke-QmNative -What 'dotnet build' -FilePath dotnet -ArgumentList @('build', 'qmTunnel.sln', '-c', $Configuration, '--nologo')
        Publish-QmModule -Configuration $Configuration
    }
    finally {
        Pop-Location
    }
}

function Publish-QmModule {
    param([string]$Configuration = 'Release')
    Push-Location $script:RepoRoot
    try {
        $stage = $script:StageDir
        Write-QmStep "Staging the module in $stage"
        if (Test-Path -LiteralPath $stage) { Remove-Item -LiteralPath $stage -Recurse -Force }
        $null = New-Item -ItemType Directory -Path $stage -Force

        Invoke-QmNative -What 'dotnet publish (module)' -FilePath dotnet -ArgumentList @(
            'publish', 'src/QmTunnel.PowerShell/QmTunnel.PowerShell.csproj', '-c', $Configuration, '--no-build', '--nologo', '-o', $stage)
        Invoke-QmNative -What 'dotnet publish (daemon)' -FilePath dotnet -ArgumentList @(
            'publish', 'src/QmTunnel.Server/QmTunnel.Server.csproj', '-c', $Configuration, '--no-build', '--nologo', '-o', (Join-Path $stage 'daemon'))
        # The systemd unit, next to the daemon it runs (installing it: docs/service.md).
        Copy-Item -LiteralPath 'src/QmTunnel.Server/qmtunnel-server.service' -Destination (Join-Path $stage 'daemon')
        Write-Host '   daemon/qmtunnel-server.service'

        # PowerShellStandard.Library is a compile-time reference only: pwsh brings its own System.Management.Automation.
        foreach ($name in 'System.Management.Automation.dll', 'System.Management.Automation.xml') {
            $path = Join-Path $stage $name
            if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
        }

        # Manifest, with ModuleVersion stamped from Directory.Build.props.
        $version = Get-QmVersion
        $manifestText = Get-Content -LiteralPath 'module/qmTunnel.psd1' -Raw
        $pattern = "(?m)^(\s*ModuleVersion\s*=\s*)'[^']*'"
        if ($manifestText -notmatch $pattern) { throw "module/qmTunnel.psd1 has no ModuleVersion = '...' line to stamp." }
        $manifestText = $manifestText -replace $pattern, "`${1}'$($version.Version)'"
        if ($version.Prerelease) {
            if ($manifestText -notmatch '(?m)^(\s*)PSData\s*=\s*@\{') { throw "module/qmTunnel.psd1 has no PSData = @{ block for the prerelease label." }
            $manifestText = $manifestText -replace '(?m)^(\s*)PSData\s*=\s*@\{', "`${1}PSData = @{`n`${1}    Prerelease = '$($version.Prerelease)'"
        }
        $stagedManifest = Get-QmStagedManifestPath
        Set-Content -LiteralPath $stagedManifest -Value $manifestText -Encoding utf8NoBOM -NoNewline
        $data = Import-PowerShellDataFile -LiteralPath $stagedManifest
        if ($data.ModuleVersion -ne $version.Version.ToString()) { throw "Stamping ModuleVersion failed: $stagedManifest has '$($data.ModuleVersion)'." }
        Write-Host "   qmTunnel.psd1 (ModuleVersion $($version.Version)$(if ($version.Prerelease) { "-$($version.Prerelease)" }))"

        Copy-Item -LiteralPath 'module/qmTunnel.format.ps1xml' -Destination $stage
        $helpDir = Join-Path $stage 'en-US'
        $null = New-Item -ItemType Directory -Path $helpDir -Force
        if (Test-Path -LiteralPath 'module/en-US') {
            Copy-Item -Path 'module/en-US/*' -Destination $helpDir -Recurse -Force
        }
        else {
            Write-Warning 'module/en-US does not exist: the staged module has no about_qmTunnel help topic.'
        }

        # Help XML (MAML) from docs/*.md by our own converter (PlatyPS is not installable here).
        $helpXml = 'out/qmTunnel/en-US/QmTunnel.PowerShell.dll-Help.xml'
        $converter = 'src/Build/New-MamlHelp.ps1'
        if (Test-Path -LiteralPath $converter) {
            Write-Host "   $converter -DocsPath docs -OutputPath $helpXml" -ForegroundColor DarkGray
            & ./src/Build/New-MamlHelp.ps1 -DocsPath docs -OutputPath $helpXml | Out-Host
            if (-not (Test-Path -LiteralPath $helpXml)) { throw "$converter ran but did not write $helpXml." }
            Write-Host "   $helpXml"
        }
        else {
            Write-Warning "$converter does not exist: the staged module has NO cmdlet help ($helpXml was not generated)."
        }

        # The compression libraries of the engine (docs/architecture.md, "Dependencies"): next to it in both folders.
        foreach ($required in 'qmTunnel.psd1', 'qmTunnel.format.ps1xml', 'QmTunnel.PowerShell.dll', 'QmTunnel.Engine.dll', 'daemon/qmtunnel-server.dll',
                'daemon/qmtunnel-server.service', 'K4os.Compression.LZ4.dll', 'ZstdSharp.dll', 'daemon/K4os.Compression.LZ4.dll', 'daemon/ZstdSharp.dll') {
            if (-not (Test-Path -LiteralPath (Join-Path $stage $required))) { throw "Staging is incomplete: out/qmTunnel/$required is missing." }
        }
        Write-Host "   Staged: $stagedManifest" -ForegroundColor Green
    }
    finally {
        Pop-Location
    }
}

<#
.SYNOPSIS
Installs Debian packages whose commands are missing (apt-get update once first). Skips with a message when not root
or not on Debian.
#>
function Install-QmAptPackage {
    param([Parameter(Mandatory)][hashtable]$CommandToPackage)
    $missing = @($CommandToPackage.GetEnumerator() | Where-Object { -not (Get-Command $_.Key -CommandType Application -ErrorAction Ignore) } |
            ForEach-Object Value | Sort-Object -Unique)
    $present = @($CommandToPackage.Keys | Where-Object { Get-Command $_ -CommandType Application -ErrorAction Ignore })
    if ($present.Count -gt 0) { Write-Host "   present: $($present -join ', ')" }
    if ($missing.Count -eq 0) { return }
    if (-not $IsLinux -or -not (Test-Path -LiteralPath '/etc/debian_version')) {
        Write-Warning "Not a Debian machine: install $($missing -join ', ') yourself; the tests that need them will fail without them."
        return
    }
    $uid = (& id -u).Trim()
    if ($uid -ne '0') {
        Write-Warning "Not root: skipping apt-get. Install them with: sudo apt-get install -y $($missing -join ' ')"
        return
    }
    $env:DEBIAN_FRONTEND = 'noninteractive'
    if (-not $script:AptUpdated) {
        Invoke-QmNative -What 'apt-get update' -FilePath apt-get -ArgumentList @('update', '-q')
        $script:AptUpdated = $true
    }
    Invoke-QmNative -What "apt-get install $($missing -join ' ')" -FilePath apt-get -ArgumentList (@('install', '-y', '-q', '--no-install-recommends') + $missing)
}

<#
.SYNOPSIS
Restores src/Build/Tools/Tools.csproj (a PackageDownload of Pester) and returns the path of Pester.psd1 in the NuGet
global packages folder.
#>
function Install-QmPester {
    Push-Location $script:RepoRoot
    try {
        Invoke-QmNative -What 'dotnet restore (test tools: Pester)' -FilePath dotnet -ArgumentList @('restore', 'src/Build/Tools/Tools.csproj', '--nologo')
        $locals = & dotnet nuget locals global-packages -l
        if ($LASTEXITCODE -ne 0) { throw "dotnet nuget locals global-packages -l failed (exit code $LASTEXITCODE)." }
        $line = @($locals | Where-Object { $_ -match '^\s*global-packages:\s*(.+?)\s*$' }) | Select-Object -First 1
        if (-not $line) { throw "Cannot read the NuGet global packages folder from: $($locals -join ' ')" }
        $null = $line -match '^\s*global-packages:\s*(.+?)\s*$'
        $pester = Join-Path $Matches[1] 'pester' $script:PesterVersion 'tools' 'Pester.psd1'
        if (-not (Test-Path -LiteralPath $pester)) { throw "Pester $script:PesterVersion was restored but $pester does not exist." }
        Write-Host "   Pester $script:PesterVersion`: $pester"
        $pester
    }
    finally {
        Pop-Location
    }
}

<#
.SYNOPSIS
The test task: prerequisites (apt packages, Pester), build, xunit, Pester, summary. Returns the exit code.
#>
function Invoke-QmTest {
    param([string]$Configuration = 'Release')
    $results = [System.Collections.Generic.List[object]]::new()
    $problems = [System.Collections.Generic.List[string]]::new()
    try {
        Write-QmStep 'Test prerequisites'
        Install-QmAptPackage -CommandToPackage @{ socat = 'socat'; iperf3 = 'iperf3'; ip = 'iproute2'; nft = 'nftables'; curl = 'curl'; dnsmasq = 'dnsmasq-base'; dig = 'dnsutils' }
        $pester = Install-QmPester
        Invoke-QmBuild -Configuration $Configuration
        $results.Add((Invoke-QmXunit -Configuration $Configuration))
        $results.Add((Invoke-QmPester -PesterPath $pester))
    }
    catch {
        Write-Host ''
        Write-Host "ERROR: $($_.Exception.Message)" -ForegroundColor Red
        if ($_.ScriptStackTrace) { Write-Host $_.ScriptStackTrace -ForegroundColor DarkGray }
        $problems.Add("the test task stopped early: $($_.Exception.Message)")
    }
    Write-QmTestSummary -Results $results.ToArray() -Problems $problems.ToArray()
}

<#
.SYNOPSIS
The bench task: runs bench/Invoke-QmTunnelBench.ps1 in a child pwsh whose open-files limit is raised first (bash
ulimit; every process the bench starts inherits it). Returns the bench's exit code.
#>
function Invoke-QmBench {
    param([string]$Configuration = 'Release')
    Write-QmStep 'Benchmark: bench/Invoke-QmTunnelBench.ps1'
    $script = Join-Path $script:RepoRoot 'bench' 'Invoke-QmTunnelBench.ps1'
    $start = [System.Diagnostics.ProcessStartInfo]::new('bash')
    $start.UseShellExecute = $false
    $start.WorkingDirectory = $script:RepoRoot
    foreach ($arg in @('-c', 'ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bash',
            'dotnet', 'pwsh', '-NoProfile', '-NonInteractive', '-File', $script, '-Configuration', $Configuration)) {
        $start.ArgumentList.Add($arg)
    }
    $process = [System.Diagnostics.Process]::Start($start)
    try {
        $process.WaitForExit()
        $process.ExitCode
    }
    finally {
        $process.Dispose()
    }
}

<#
.SYNOPSIS
The clean task: removes out/ and every bin/ and obj/ of the projects.
#>
function Remove-QmBuildOutput {
    Push-Location $script:RepoRoot
    try {
        $targets = [System.Collections.Generic.List[string]]::new()
        if (Test-Path -LiteralPath 'out') { $targets.Add((Resolve-Path 'out').Path) }
        foreach ($top in 'src', 'tests', 'bench') {
            if (-not (Test-Path -LiteralPath $top)) { continue }
            Get-ChildItem -LiteralPath $top -Directory -Recurse -Force |
                Where-Object { $_.Name -in 'bin', 'obj' -and (Test-Path -Path (Join-Path $_.Parent.FullName '*.csproj')) } |
                ForEach-Object { $targets.Add($_.FullName) }
        }
        foreach ($t in $targets) {
            Write-Host "   removing $t"
            Remove-Item -LiteralPath $t -Recurse -Force
        }
        if ($targets.Count -eq 0) { Write-Host '   nothing to clean' }
    }
    finally {
        Pop-Location
    }
}

# The start task and its banner (build.ps1 start).
. (Join-Path $PSScriptRoot 'QmTunnel.DevServer.ps1')
. (Join-Path $PSScriptRoot 'QmTunnel.TestRunners.ps1')

Export-ModuleMember -Function Get-QmRepoRoot, Get-QmStagedManifestPath, Write-QmStep, Invoke-QmNative, Get-QmVersion, Invoke-QmBuild,
    Publish-QmModule, Install-QmAptPackage, Install-QmPester, Invoke-QmXunit, Invoke-QmPester, Write-QmTestSummary, Invoke-QmTest,
    Start-QmDevServer, Get-QmDevBanner, Invoke-QmBench, Invoke-QmFuzz, Remove-QmBuildOutput

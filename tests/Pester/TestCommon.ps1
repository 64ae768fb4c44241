# Helpers shared by the Pester files: dot-source it in BeforeAll (. (Join-Path $PSScriptRoot 'TestCommon.ps1')).

# The BUILT module: $env:QMTUNNEL_MODULE_PATH (a psd1 or its folder), else <repo>/out/qmTunnel/qmTunnel.psd1.
function Get-QmTestModulePath {
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $path = if ($env:QMTUNNEL_MODULE_PATH) { $env:QMTUNNEL_MODULE_PATH } else { Join-Path $repoRoot 'out' 'qmTunnel' 'qmTunnel.psd1' }
    if (Test-Path -LiteralPath $path -PathType Container) {
        $path = Join-Path $path 'qmTunnel.psd1'
    }
    $path
}

# The admin login of every test server: set on its first start, used by every hop of every test tunnel.
$script:QmTestAdminPassword = 'test-admin-password'
$script:QmTestAdmin = [pscredential]::new('admin', (ConvertTo-SecureString $script:QmTestAdminPassword -AsPlainText -Force))

# Imports the built module and the C# test tools (TestTools.cs: echo server, streaming SHA-256 clients, free port).
# Every Start-QmTunnelServer of the tests then sets the test admin password, with the fewest PBKDF2 iterations
# a server allows (fast enough for tests).
function Import-QmTestModule([switch]$Force) {
    Import-Module (Get-QmTestModulePath) -Force:$Force -ErrorAction Stop -Global
    if (-not ('QmTunnel.PesterTools.EchoClient' -as [type])) {
        Add-Type -Path (Join-Path $PSScriptRoot 'TestTools.cs'), (Join-Path $PSScriptRoot 'TestPeers.cs') -ErrorAction Stop
    }
    $global:PSDefaultParameterValues['Start-QmTunnelServer:AdminCredential'] = $script:QmTestAdmin
    $global:PSDefaultParameterValues['Start-QmTunnelServer:PasswordIterations'] = 100000
}

# A hop that logs in as the test admin.
function New-QmTestHop([Parameter(Mandatory)][string]$Uri) {
    New-QmTunnelHop $Uri -Credential $script:QmTestAdmin
}

# Polls $Condition every 50 ms until it holds; throws after $TimeoutSeconds naming what it waited for.
function Wait-Until([scriptblock]$Condition, [string]$What, [int]$TimeoutSeconds = 15) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) {
            throw "Timed out after $TimeoutSeconds s waiting until $What."
        }
        Start-Sleep -Milliseconds 50
    }
}

# Runs $Script and returns what it wrote: Output, Errors (non-terminating and terminating, in order), Terminating.
# Warnings are dropped.
function Invoke-Capture([scriptblock]$Script) {
    $ErrorActionPreference = 'Continue'
    $output = [System.Collections.Generic.List[object]]::new()
    $errors = [System.Collections.Generic.List[System.Management.Automation.ErrorRecord]]::new()
    $terminating = $false
    try {
        foreach ($item in (& $Script 2>&1 3>$null)) {
            if ($item -is [System.Management.Automation.ErrorRecord]) { $errors.Add($item) } else { $output.Add($item) }
        }
    }
    catch {
        $errors.Add($_)
        $terminating = $true
    }
    [pscustomobject]@{ Output = $output.ToArray(); Errors = $errors.ToArray(); Terminating = $terminating }
}

# Writes a new self-signed client certificate (ECDSA P-256, CN=robot) with its key to $Path as a .pfx without
# password, and returns its SHA-256 thumbprint (what New-QmTunnelUser -CertificateThumbprint takes).
function New-QmTestClientCertificate([Parameter(Mandatory)][string]$Path) {
    $key = [Security.Cryptography.ECDsa]::Create([Security.Cryptography.ECCurve+NamedCurves]::nistP256)
    $request = [Security.Cryptography.X509Certificates.CertificateRequest]::new('CN=robot', $key, [Security.Cryptography.HashAlgorithmName]::SHA256)
    $certificate = $request.CreateSelfSigned([DateTimeOffset]::Now.AddDays(-1), [DateTimeOffset]::Now.AddDays(30))
    [IO.File]::WriteAllBytes($Path, $certificate.Export([Security.Cryptography.X509Certificates.X509ContentType]::Pfx))
    [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($certificate.RawData))
}

# The test host (TestHost.cs): a window of a given size that records what is written and answers credential prompts.
function Import-QmTestHost {
    if (-not ('QmTunnel.PesterTools.RecordingHost' -as [type])) {
        Add-Type -Path (Join-Path $PSScriptRoot 'TestHost.cs') -ErrorAction Stop
    }
}

# A runspace of this process behind a RecordingHost, for commands run as a person types them; close it with
# Close-QmTestRunspace. The in-process server is shared with every runspace of the process.
# -ImportModule imports the module under test there first (commands run as written import it themselves).
function New-QmTestRunspace([int]$Width = 120, [int]$Height = 50, [switch]$VirtualTerminal, [switch]$ImportModule) {
    Import-QmTestHost
    $hostObject = [QmTunnel.PesterTools.RecordingHost]::new($Width, $Height, [bool]$VirtualTerminal)
    $runspace = [runspacefactory]::CreateRunspace($hostObject)
    $runspace.Open()
    $session = [pscustomobject]@{ Host = $hostObject; UI = $hostObject.Recorder; Runspace = $runspace }
    if ($ImportModule) {
        $imported = Invoke-QmTestLine $session "Import-Module '$(Get-QmTestModulePath)' -ErrorAction Stop"
        if ($imported.Errors) { throw "Cannot import the module in the test runspace: $($imported.Errors -join '; ')" }
    }
    $session
}

function Close-QmTestRunspace($Session) {
    if ($Session) { $Session.Runspace.Dispose() }
}

# Runs one line of script in the test runspace, as typed at a prompt: its output, its errors (non-terminating and
# terminating), and the output formatted as the host would show it.
function Invoke-QmTestLine($Session, [string]$Line) {
    $ps = [powershell]::Create()
    $ps.Runspace = $Session.Runspace
    try {
        $null = $ps.AddScript($Line)
        $output = $null
        $terminating = $null
        try { $output = $ps.Invoke() } catch { $terminating = $_ }
        $errors = @($ps.Streams.Error) + @(if ($terminating) { $terminating })
        [pscustomobject]@{ Line = $Line; Output = @($output); Errors = @($errors); Progress = @($ps.Streams.Progress) }
    }
    finally {
        $ps.Dispose()
    }
}

# How to start a child pwsh like this one: the executable and the arguments that come before pwsh's own.
function Get-QmTestPwsh {
    $self = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($self) -eq 'dotnet') {
        return @{ FilePath = $self; Prefix = @((Join-Path $PSHOME 'pwsh.dll')) }
    }
    @{ FilePath = $self; Prefix = @() }
}

# Starts a child pwsh running $Command with stdout and stderr read into a queue of lines, and the environment
# changed by $Environment (a value of $null removes a variable). Stop it with Stop-QmTestPwsh.
function Start-QmTestPwsh([string]$Command, [hashtable]$Environment = @{}) {
    $pwsh = Get-QmTestPwsh
    $start = [System.Diagnostics.ProcessStartInfo]::new($pwsh.FilePath)
    foreach ($a in $pwsh.Prefix) { $start.ArgumentList.Add($a) }
    foreach ($a in '-NoProfile', '-NonInteractive', '-Command', $Command) { $start.ArgumentList.Add($a) }
    $start.UseShellExecute = $false
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $start.RedirectStandardInput = $true
    foreach ($key in $Environment.Keys) {
        if ($null -eq $Environment[$key]) { $null = $start.Environment.Remove($key) } else { $start.Environment[$key] = $Environment[$key] }
    }
    Import-QmTestHost
    $process = [System.Diagnostics.Process]::Start($start)
    [pscustomobject]@{ Process = $process; Output = [QmTunnel.PesterTools.ChildOutput]::Attach($process) }
}

# All lines the child wrote so far.
function Get-QmTestPwshOutput($Child) { @($Child.Output.Lines) }

function Stop-QmTestPwsh($Child) {
    if (-not $Child) { return }
    try { if (-not $Child.Process.HasExited) { $Child.Process.Kill($true); $null = $Child.Process.WaitForExit(10000) } } catch { Write-Verbose "already gone: $_" }
    $Child.Process.Dispose()
}

# A temp folder for one test file, and the environment of every child pwsh it starts: HOME, TMPDIR and QMTUNNEL_DATA
# in that folder (nothing of the real user's data folders), the built module. Returns the folder and the environment.
function New-QmTestSandbox([Parameter(Mandatory)][string]$Name, [Parameter(Mandatory)][string]$ModulePath) {
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmt-$Name-$run"
    $null = New-Item -ItemType Directory -Path $base -Force
    $isolated = @{
        HOME = (Join-Path $base 'home')
        TMPDIR = (Join-Path $base 'tmp')
        QMTUNNEL_DATA = (Join-Path $base 'default-data')
        QMTUNNEL_MODULE_PATH = $ModulePath
    }
    foreach ($dir in $isolated.HOME, $isolated.TMPDIR) { $null = New-Item -ItemType Directory -Path $dir -Force }
    $base, $isolated
}

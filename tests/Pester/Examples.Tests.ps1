#Requires -Version 7.4
<#
    Every example of every cmdlet page (docs/<Verb-Noun>.md, the help's EXAMPLES) against the BUILT module:
    - its commands (the lines after a "PS>" or "PS hostB>" prompt, with their ">>" continuation lines) parse, and each
      qmTunnel command in them binds: its parameters exist, are spelled as they are (a switch never takes $true or
      $false as a separate argument), and the positional ones fit;
    - every variable it reads was set before, in it or in an earlier example of the page (or is automatic);
    - an example that names a host or service of someone else's network (hostB, db.lan, gw1, *.example.net, ...)
      says what to replace: a "Replace" in its remarks or comments;
    - the examples listed in $Runnable run as written, each in a child pwsh of its own (data folders, HOME and TMPDIR
      of their own; Invoke-QmExample.ps1), behind a host that answers password prompts as a person would (the
      password a first start showed, else one typed for a new admin): no error.
#>

BeforeDiscovery {
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path

    # The examples of one page: title, commands (prompt lines joined with their continuations), remarks.
    function Read-Example([string]$Path) {
        $text = Get-Content -LiteralPath $Path -Raw
        $section = [regex]::Match($text, '(?s)\n## EXAMPLES\s*\n(?<body>.*?)\n## PARAMETERS').Groups['body'].Value
        $index = 0
        foreach ($match in [regex]::Matches($section, '(?s)### (?<title>[^\n]+)\n+```powershell\n(?<code>.*?)```(?<remarks>.*?)(?=\n### |\z)')) {
            $index++
            $commands = [System.Collections.Generic.List[string]]::new()
            $comments = [System.Collections.Generic.List[string]]::new()
            $hosts = [System.Collections.Generic.List[string]]::new()
            foreach ($line in $match.Groups['code'].Value -split '\r?\n') {
                if ($line -match '^PS(?: (?<host>[\w.-]+))?> ?(?<command>.*)$') {
                    $commands.Add($Matches.command)
                    if ($Matches.host) { $hosts.Add($Matches.host) }
                }
                elseif ($line -match '^>> ?(?<more>.*)$' -and $commands.Count -gt 0) {
                    $commands[$commands.Count - 1] += "`n" + $Matches.more
                }
                elseif ($line -match '^\s*#') {
                    $comments.Add($line)
                }
            }
            if ($commands.Count -eq 0) {
                # A script without prompts (a function, a try/catch): all of it is one command.
                $commands.Add($match.Groups['code'].Value.TrimEnd())
            }
            @{
                Page = [IO.Path]::GetFileNameWithoutExtension($Path)
                Number = $index
                Title = $match.Groups['title'].Value.Trim()
                Commands = $commands.ToArray()
                Comments = $comments -join "`n"
                Remarks = $match.Groups['remarks'].Value.Trim()
                Hosts = @($hosts | Sort-Object -Unique)
            }
        }
    }

    $pages = Get-ChildItem -LiteralPath (Join-Path $repoRoot 'docs') -Filter '*-Qm*.md' | Sort-Object Name
    $examples = @(foreach ($page in $pages) { Read-Example $page.FullName })

    # Examples that run as written on one machine, each on its own: page -> example numbers.
    $Runnable = @{
        'Start-QmTunnelServer' = @(3, 4)
        'Get-QmTunnelServer' = @(1)
        'Stop-QmTunnelServer' = @(3)
        'New-QmTunnel' = @(8, 10, 13)
        'New-QmTunnelHop' = @(4, 7)
    }
    $toRun = @($examples | Where-Object { $Runnable[$_.Page] -contains $_.Number })
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule
    $modulePath = Get-QmTestModulePath
    $qmCommands = @(Get-Command -Module qmTunnel | ForEach-Object Name)
    # Names of someone else's network in the examples: who reads them must replace them.
    $placeholder = '\bhost[A-Z]\b|\bhost[bc]\b|\bgw\d?\b|\bgw\.|\.lan\b|example\.(net|com|org)|\.corp\b|\.internal\b|\b10\.0\.0\.\d+'
    $automatic = @('_', 'PSItem', 'true', 'false', 'null', 'PID', 'HOME', 'PSHOME', 'args', 'input', 'Matches', 'LASTEXITCODE', 'Error',
        'ErrorActionPreference', 'ProgressPreference', 'WarningPreference', 'ConfirmPreference', 'PSScriptRoot', 'this', 'PSDefaultParameterValues')

    # The variables an example reads that nothing before it set.
    function Get-UnsetVariable([string[]]$Commands, [System.Collections.Generic.HashSet[string]]$Known) {
        foreach ($command in $Commands) {
            $ast = [System.Management.Automation.Language.Parser]::ParseInput($command, [ref]$null, [ref]$null)
            # Assignments and foreach variables first, in order: a command may read what it sets earlier in itself.
            foreach ($assigned in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.AssignmentStatementAst] }, $true)) {
                foreach ($v in $assigned.Left.FindAll({ param($n) $n -is [System.Management.Automation.Language.VariableExpressionAst] }, $true)) {
                    $null = $Known.Add($v.VariablePath.UserPath)
                }
            }
            foreach ($loop in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.ForEachStatementAst] }, $true)) {
                $null = $Known.Add($loop.Variable.VariablePath.UserPath)
            }
            foreach ($param in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.ParameterAst] }, $true)) {
                $null = $Known.Add($param.Name.VariablePath.UserPath)
            }
            foreach ($v in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.VariableExpressionAst] }, $true)) {
                $name = $v.VariablePath.UserPath
                if ($v.VariablePath.IsDriveQualified -or $name -in $automatic -or $Known.Contains($name)) { continue }
                # -OutVariable / -ErrorVariable / -WarningVariable name a variable without a $.
                $name
            }
            foreach ($bound in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.CommandParameterAst] -and $n.ParameterName -match '^(OutVariable|ErrorVariable|WarningVariable|PipelineVariable)$' }, $true)) {
                $next = $bound.Parent.CommandElements[$bound.Parent.CommandElements.IndexOf($bound) + 1]
                if ($next) { $null = $Known.Add("$($next.Value)".TrimStart('+')) }
            }
        }
    }

    $pageKnown = @{}
}

Describe 'docs/<Page>.md, example <Number>: <Title>' -ForEach $examples {
    It 'has commands' {
        $Commands.Count | Should -BeGreaterOrEqual 1
    }

    It 'parses' {
        foreach ($command in $Commands) {
            $errors = $null
            $null = [System.Management.Automation.Language.Parser]::ParseInput($command, [ref]$null, [ref]$errors)
            $errors | Should -BeNullOrEmpty -Because "'$command' must be valid PowerShell"
        }
    }

    It 'binds every qmTunnel command it uses' {
        foreach ($command in $Commands) {
            $ast = [System.Management.Automation.Language.Parser]::ParseInput($command, [ref]$null, [ref]$null)
            foreach ($call in $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.CommandAst] }, $true)) {
                $name = $call.GetCommandName()
                if ($name -notin $qmCommands) { continue }
                $binding = [System.Management.Automation.Language.StaticParameterBinder]::BindCommand($call, $true)
                # A splatted hashtable (@on) cannot be bound without running: its own argument is not a problem.
                $splatted = @($call.CommandElements | Where-Object { $_ -is [System.Management.Automation.Language.VariableExpressionAst] -and $_.Splatted } | ForEach-Object { $_.Extent.Text })
                $problems = @($binding.BindingExceptions.Values | ForEach-Object { $_.BindingException.Message } |
                        Where-Object { $message = $_; -not ($splatted | Where-Object { $message.Contains("'$_'") }) })
                $problems | Should -BeNullOrEmpty -Because "'$($call.Extent.Text)'"
                # A switch takes -X:$false, never -X $false (that $false would be a positional argument).
                $metadata = (Get-Command $name).Parameters
                for ($i = 0; $i -lt $call.CommandElements.Count - 1; $i++) {
                    $element = $call.CommandElements[$i]
                    if ($element -isnot [System.Management.Automation.Language.CommandParameterAst] -or $element.Argument) { continue }
                    $parameter = $metadata.Values | Where-Object { $_.Name -like "$($element.ParameterName)*" -or $_.Aliases -contains $element.ParameterName } | Select-Object -First 1
                    if ($parameter -and $parameter.SwitchParameter) {
                        "$($call.CommandElements[$i + 1].Extent.Text)" | Should -Not -BeIn '$true', '$false' -Because "-$($element.ParameterName) is a switch: write -$($element.ParameterName):`$false"
                    }
                }
            }
        }
    }

    It 'reads only variables set before it on the page' {
        if (-not $pageKnown.ContainsKey($Page)) { $pageKnown[$Page] = [System.Collections.Generic.HashSet[string]]::new([StringComparer]::OrdinalIgnoreCase) }
        $unset = @(Get-UnsetVariable $Commands $pageKnown[$Page] | Sort-Object -Unique)
        $unset | Should -BeNullOrEmpty -Because 'an example must set the variables it uses, or an earlier one on its page must'
    }

    It 'says what to replace when it names someone else''s hosts' {
        $named = [regex]::Matches(($Commands -join "`n"), $placeholder) | ForEach-Object Value | Sort-Object -Unique
        if ($named) {
            "$Remarks`n$Comments" | Should -Match '\b[Rr]eplace\b' -Because "it names $($named -join ', '), which the reader must replace"
        }
    }
}

Describe 'Runs as written: docs/<Page>.md, example <Number>: <Title>' -ForEach $toRun {
    BeforeAll {
        $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
        $sandbox = Join-Path ([IO.Path]::GetTempPath()) "qmt-example-$run"
        foreach ($dir in 'home', 'tmp', 'cwd', 'data') { $null = New-Item -ItemType Directory -Path (Join-Path $sandbox $dir) -Force }
        $script = Join-Path $sandbox 'commands.json'
        ConvertTo-Json -InputObject @($Commands) | Set-Content -LiteralPath $script
        $driver = Join-Path $PSScriptRoot 'Invoke-QmExample.ps1'
        $child = Start-QmTestPwsh -Environment @{
            HOME = (Join-Path $sandbox 'home'); TMPDIR = (Join-Path $sandbox 'tmp'); QMTUNNEL_DATA = (Join-Path $sandbox 'data')
        } -Command "& '$driver' -CommandsPath '$script' -ModulePath '$modulePath' -WorkingDirectory '$(Join-Path $sandbox 'cwd')' -TestHostPath '$(Join-Path $PSScriptRoot 'TestHost.cs')'"
        $finished = $child.Process.WaitForExit(180000)
        $lines = Get-QmTestPwshOutput $child
        Stop-QmTestPwsh $child
        $result = $lines | Where-Object { $_ -like 'RESULT *' } | Select-Object -Last 1 | ForEach-Object { $_.Substring(7) | ConvertFrom-Json }
    }

    AfterAll {
        Remove-Item -LiteralPath $sandbox -Recurse -Force -ErrorAction SilentlyContinue
    }

    It 'runs every command without an error' {
        $finished | Should -BeTrue -Because 'it must end within 3 minutes'
        $result | Should -Not -BeNullOrEmpty -Because ($lines -join "`n")
        @($result.Errors) | Should -BeNullOrEmpty
        $result.Commands | Should -Be $Commands.Count
    }
}

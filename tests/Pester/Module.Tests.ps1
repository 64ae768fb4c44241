#Requires -Version 7.4
<#
    The module's surface, checked against the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH):
    - the exported cmdlets are exactly the compiled [Cmdlet] types, and exactly the manifest's CmdletsToExport;
    - every cmdlet has help: a real synopsis, examples with code, a description for every parameter;
    - stop and remove cmdlets support -WhatIf/-Confirm with ConfirmImpact Medium (scripts are never prompted);
    - each docs/<Verb-Noun>.md page documents exactly the cmdlet's parameters, with their real attributes
      (help-signature drift).
    Needs no running server.
#>

BeforeDiscovery {
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $modulePath = if ($env:QMTUNNEL_MODULE_PATH) { $env:QMTUNNEL_MODULE_PATH } else { Join-Path $repoRoot 'out' 'qmTunnel' 'qmTunnel.psd1' }
    if (Test-Path -LiteralPath $modulePath -PathType Container) {
        $modulePath = Join-Path $modulePath 'qmTunnel.psd1'
    }
    if (-not (Test-Path -LiteralPath $modulePath)) {
        throw "The built module is missing: '$modulePath'. Build it first (dotnet pwsh ./build.ps1 build) or set QMTUNNEL_MODULE_PATH."
    }
    # No -Force: re-importing a binary module runs its OnRemove (which stops an in-process server another test file
    # may own); importing the same manifest again is a no-op.
    Import-Module $modulePath -ErrorAction Stop

    $commonParameters = [System.Management.Automation.PSCmdlet]::CommonParameters
    $cmdlets = foreach ($command in Get-Command -Module qmTunnel -CommandType Cmdlet | Sort-Object Name) {
        @{
            Name = $command.Name
            Parameters = @($command.Parameters.Keys | Where-Object { $_ -notin $commonParameters } | Sort-Object)
        }
    }
    # Cmdlets that change a server's or the client's state, chosen by their verb: choosing them by whether they have
    # -WhatIf would make the SupportsShouldProcess check below pass whatever a cmdlet declares. The exceptions say why.
    $noShouldProcess = @{
        'New-QmTunnelHop'      = 'only builds a hop object in memory'
        'Start-QmTunnelServer' = 'starts this process''s server or a daemon; it has no -WhatIf'
    }
    $shouldProcessCmdlets = @($cmdlets | Where-Object { $_.Name -match '^(New|Set|Remove|Start|Stop|Disconnect)-' -and -not $noShouldProcess.ContainsKey($_.Name) })
    $stopOrRemoveCmdlets = @($cmdlets | Where-Object { $_.Name -match '^(Stop|Remove)-' })
}

BeforeAll {
    $repoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..' '..')).Path
    $docsPath = Join-Path $repoRoot 'docs'
    $modulePath = if ($env:QMTUNNEL_MODULE_PATH) { $env:QMTUNNEL_MODULE_PATH } else { Join-Path $repoRoot 'out' 'qmTunnel' 'qmTunnel.psd1' }
    if (Test-Path -LiteralPath $modulePath -PathType Container) {
        $modulePath = Join-Path $modulePath 'qmTunnel.psd1'
    }
    $module = Import-Module $modulePath -PassThru -ErrorAction Stop
    if ([IO.Path]::GetFullPath($module.ModuleBase) -ne [IO.Path]::GetFullPath((Split-Path -Parent $modulePath))) {
        throw "Another qmTunnel module is loaded ($($module.ModuleBase)); these tests need the one at $modulePath."
    }
    $manifestPath = Join-Path $module.ModuleBase 'qmTunnel.psd1'
    $commonParameters = [System.Management.Automation.PSCmdlet]::CommonParameters

    # The module's own assembly, as loaded (not a second copy from disk).
    $dllPath = Join-Path $module.ModuleBase 'QmTunnel.PowerShell.dll'
    $assembly = [AppDomain]::CurrentDomain.GetAssemblies() |
        Where-Object { -not $_.IsDynamic -and $_.Location -and [IO.Path]::GetFullPath($_.Location) -eq [IO.Path]::GetFullPath($dllPath) } |
        Select-Object -First 1

    function Get-CmdletAttribute([string]$CommandName) {
        $type = (Get-Command $CommandName -CommandType Cmdlet).ImplementingType
        return [System.Management.Automation.CmdletAttribute]$type.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]
    }

    function Get-TypeLabel([type]$Type) {
        if ($Type.IsArray) {
            return (Get-TypeLabel $Type.GetElementType()) + '[]'
        }
        return $Type.Name
    }

    # The parameters a docs/<Verb-Noun>.md page documents: for each '### -Name' under '## PARAMETERS', its yaml
    # blocks as hashtables. Heading-like lines inside ``` fences are skipped.
    function Read-DocParameter([string]$Path) {
        $result = [ordered]@{}
        $inParameters = $false
        $inFence = $false
        $fenceIsYaml = $false
        $current = $null
        $yaml = $null
        foreach ($line in [IO.File]::ReadAllLines($Path)) {
            if ($line -match '^\s*```(?<lang>\w*)\s*$') {
                if (-not $inFence) {
                    $inFence = $true
                    $fenceIsYaml = $Matches.lang -eq 'yaml'
                    $yaml = @{}
                }
                else {
                    $inFence = $false
                    if ($fenceIsYaml -and $null -ne $current) {
                        $result[$current] += , $yaml
                    }
                }
                continue
            }
            if ($inFence) {
                if ($fenceIsYaml -and $line -match '^(?<k>[^:]+):\s*(?<v>.*)$') {
                    $yaml[$Matches.k.Trim()] = $Matches.v.Trim()
                }
                continue
            }
            if ($line -match '^## ') {
                $inParameters = $line -match '^## PARAMETERS\s*$'
                $current = $null
                continue
            }
            if ($inParameters -and $line -match '^### -(?<p>\w+)\s*$') {
                $current = $Matches.p
                $result[$current] = @()
            }
            elseif ($inParameters -and $line -match '^### ') {
                $current = $null
            }
        }
        return $result
    }

    # The parameter-set names of a page's ## SYNTAX section ('### Name (Default)' headings; none = one set).
    function Read-DocSyntaxSet([string]$Path) {
        $sets = [System.Collections.Generic.List[string]]::new()
        $blocks = 0
        $inSyntax = $false
        $inFence = $false
        foreach ($line in [IO.File]::ReadAllLines($Path)) {
            if ($line -match '^\s*```') {
                $inFence = -not $inFence
                if ($inSyntax -and $inFence) {
                    $blocks++
                }
                continue
            }
            if ($inFence) {
                continue
            }
            if ($line -match '^## ') {
                $inSyntax = $line -match '^## SYNTAX\s*$'
            }
            elseif ($inSyntax -and $line -match '^### (?<s>.+?)(\s+\(Default\))?\s*$') {
                $sets.Add($Matches.s)
            }
        }
        return [pscustomobject]@{ Sets = $sets.ToArray(); Blocks = $blocks }
    }
}

Describe 'The exported cmdlets' {
    It 'finds the loaded QmTunnel.PowerShell assembly' {
        $assembly | Should -Not -BeNullOrEmpty
    }

    It 'equal the public [Cmdlet] types of QmTunnel.PowerShell.dll' {
        $compiled = $assembly.GetExportedTypes() |
            Where-Object { $_.IsDefined([System.Management.Automation.CmdletAttribute], $false) } |
            ForEach-Object {
                $attribute = [System.Management.Automation.CmdletAttribute]$_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]
                "$($attribute.VerbName)-$($attribute.NounName)"
            }
        $exported = (Get-Command -Module qmTunnel).Name
        @($exported | Sort-Object) | Should -Be @($compiled | Sort-Object)
        @($compiled).Count | Should -BeGreaterThan 0
    }

    It "equal the manifest's CmdletsToExport" {
        $manifest = Import-PowerShellDataFile -LiteralPath $manifestPath
        $exported = (Get-Command -Module qmTunnel -CommandType Cmdlet).Name
        @($manifest.CmdletsToExport | Sort-Object) | Should -Be @($exported | Sort-Object)
    }

    It 'are only cmdlets (no functions or aliases)' {
        @(Get-Command -Module qmTunnel -CommandType Function, Alias) | Should -BeNullOrEmpty
    }

    It 'come with the about_qmTunnel topic' {
        $about = Get-Help about_qmTunnel | Out-String
        $about | Should -Match 'SHORT DESCRIPTION'
        $about | Should -Match 'qmt\+plain://'
    }
}

Describe 'Help of <Name>' -ForEach $cmdlets {
    BeforeAll {
        $help = Get-Help $Name -Full
    }

    It 'has a synopsis, not the syntax stub' {
        $synopsis = "$($help.Synopsis)".Trim()
        $synopsis | Should -Not -BeNullOrEmpty
        # Without help, Get-Help makes the synopsis from the syntax: "Verb-Noun [-Param] <type> ... [<CommonParameters>]".
        $synopsis | Should -Not -Match "^$([regex]::Escape($Name))(\s|$)"
        $synopsis | Should -Not -BeLike '*<CommonParameters>*'
    }

    It 'has a description' {
        ($help.Description.Text -join '').Trim() | Should -Not -BeNullOrEmpty
    }

    It 'has examples, each with code' {
        $examples = @($help.Examples.Example)
        $examples.Count | Should -BeGreaterOrEqual 1
        foreach ($example in $examples) {
            "$($example.Code)".Trim() | Should -Not -BeNullOrEmpty -Because "example '$($example.Title)' must show code"
        }
    }

    It 'describes -<_>' -ForEach $Parameters {
        $parameterHelp = Get-Help $Name -Parameter $_ -ErrorAction SilentlyContinue
        $parameterHelp | Should -Not -BeNullOrEmpty -Because "-$_ must be in the help of $Name"
        ($parameterHelp.Description.Text -join '').Trim() | Should -Not -BeNullOrEmpty
    }
}

Describe 'ShouldProcess of <Name>' -ForEach $shouldProcessCmdlets {
    It 'changes state, so declares SupportsShouldProcess (-WhatIf, -Confirm) and is never prompted by default (ConfirmImpact below High)' {
        $attribute = Get-CmdletAttribute $Name
        $attribute.SupportsShouldProcess | Should -BeTrue
        $attribute.ConfirmImpact | Should -Not -Be ([System.Management.Automation.ConfirmImpact]::High)
    }
}

Describe 'Stop and remove cmdlet <Name>' -ForEach $stopOrRemoveCmdlets {
    It 'supports -WhatIf/-Confirm with ConfirmImpact Medium' {
        $attribute = Get-CmdletAttribute $Name
        $attribute.SupportsShouldProcess | Should -BeTrue
        $attribute.ConfirmImpact | Should -Be ([System.Management.Automation.ConfirmImpact]::Medium)
    }
}

Describe 'docs/<Name>.md matches the cmdlet' -ForEach $cmdlets {
    BeforeAll {
        $page = Join-Path $docsPath "$Name.md"
        $command = Get-Command $Name -CommandType Cmdlet
    }

    It 'exists' {
        $page | Should -Exist
    }

    It 'documents exactly the real parameters' {
        $documented = @((Read-DocParameter $page).Keys | Sort-Object)
        $documented | Should -Be $Parameters
    }

    It 'shows one syntax block per parameter set, named like them' {
        $syntax = Read-DocSyntaxSet $page
        $realSets = @($command.ParameterSets.Name)
        $syntax.Blocks | Should -Be $realSets.Count
        if ($realSets.Count -gt 1) {
            @($syntax.Sets | Sort-Object) | Should -Be @($realSets | Sort-Object)
        }
    }

    It 'gives -<_> its real type, sets, position, required flag, pipeline input and wildcard support' -ForEach $Parameters {
        $parameterName = $_
        $blocks = @((Read-DocParameter $page)[$parameterName])
        $blocks.Count | Should -BeGreaterOrEqual 1 -Because "-$parameterName needs a yaml block"
        $metadata = $command.Parameters[$parameterName]
        $allSets = @($command.ParameterSets.Name)
        $parameterSets = @($metadata.ParameterSets.Keys | ForEach-Object { if ($_ -eq '__AllParameterSets') { $allSets } else { $_ } } | Sort-Object -Unique)
        $wildcards = [bool]($metadata.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
        $covered = @()
        foreach ($block in $blocks) {
            $block['Type'] | Should -Be (Get-TypeLabel $metadata.ParameterType) -Because "the Type of -$parameterName"
            $block['Accept wildcard characters'] | Should -Be "$wildcards" -Because "-$parameterName wildcard support"
            $sets = if ($block['Parameter Sets'] -eq '(All)') { $allSets } else { @($block['Parameter Sets'] -split ',' | ForEach-Object { $_.Trim() }) }
            foreach ($set in $sets) {
                $key = if ($metadata.ParameterSets.ContainsKey($set)) { $set } else { '__AllParameterSets' }
                $metadata.ParameterSets.ContainsKey($key) | Should -BeTrue -Because "-$parameterName is documented in set '$set'"
                $attribute = $metadata.ParameterSets[$key]
                $position = if ($attribute.Position -ge 0) { "$($attribute.Position)" } else { 'Named' }
                $pipeline = @(if ($attribute.ValueFromPipelineByPropertyName) { 'ByPropertyName' }; if ($attribute.ValueFromPipeline) { 'ByValue' })
                $pipelineText = if ($pipeline) { "True ($($pipeline -join ', '))" } else { 'False' }
                $block['Required'] | Should -Be "$($attribute.IsMandatory)" -Because "-$parameterName Required in set '$set'"
                $block['Position'] | Should -Be $position -Because "-$parameterName Position in set '$set'"
                $block['Accept pipeline input'] | Should -Be $pipelineText -Because "-$parameterName pipeline input in set '$set'"
            }
            $covered += $sets
        }
        @($covered | Sort-Object -Unique) | Should -Be $parameterSets -Because "the documented sets of -$parameterName"
    }
}

Describe 'Conventions across cmdlets' {
    BeforeAll {
        $all = Get-Command -Module qmTunnel -CommandType Cmdlet
    }

    It 'spells every on/off setting as a switch (-X, -X:$false), never a [bool], so New- and Set- take it the same way' {
        $booleans = foreach ($command in $all) {
            foreach ($parameter in $command.Parameters.Values) {
                if ($parameter.ParameterType -eq [bool] -and $parameter.Name -notin $commonParameters) { "$($command.Name) -$($parameter.Name)" }
            }
        }
        $booleans | Should -BeNullOrEmpty
    }

    It 'gives a parameter of one name one type on every cmdlet' {
        $types = @{}
        foreach ($command in $all) {
            foreach ($parameter in $command.Parameters.Values) {
                if ($parameter.Name -in $commonParameters) { continue }
                $element = if ($parameter.ParameterType.IsArray) { $parameter.ParameterType.GetElementType() } else { $parameter.ParameterType }
                if (-not $types.ContainsKey($parameter.Name)) { $types[$parameter.Name] = @{} }
                $types[$parameter.Name]["$element"] += @($command.Name)
            }
        }
        $conflicts = foreach ($name in $types.Keys) {
            # -Name is a tunnel, user or group name, -InputObject the object of each cmdlet: their types differ by design.
            if ($name -in 'InputObject', 'Name', 'Uri') { continue }
            if ($types[$name].Count -gt 1) { "-$name is " + (($types[$name].GetEnumerator() | ForEach-Object { "$($_.Key) on $($_.Value -join ', ')" }) -join '; ') }
        }
        $conflicts | Should -BeNullOrEmpty
    }

    It 'takes every TimeSpan as seconds when given a plain number' {
        foreach ($command in $all) {
            foreach ($parameter in $command.Parameters.Values | Where-Object ParameterType -eq ([TimeSpan])) {
                $parameter.Attributes.TypeId.Name | Should -Contain 'SecondsTimeSpanAttribute' -Because "$($command.Name) -$($parameter.Name) must read 5 as 5 seconds"
            }
        }
    }

    It 'gives every cmdlet a HelpUri that is its docs page, the same as the page''s online version' {
        foreach ($command in $all) {
            $uri = (Get-CmdletAttribute $command.Name).HelpUri
            $uri | Should -Match "^https://.+/docs/$([regex]::Escape($command.Name))\.md$" -Because "$($command.Name) needs a HelpUri"
            $front = Get-Content -LiteralPath (Join-Path $docsPath "$($command.Name).md") -TotalCount 8
            ($front | Where-Object { $_ -match '^online version:\s*(.+)$' } | ForEach-Object { $Matches[1].Trim() }) | Should -Be $uri
        }
    }
}

Describe 'about_qmTunnel' {
    It 'lists every error id the engine and the module can report' {
        $about = Get-Content -LiteralPath (Join-Path (Split-Path -Parent $modulePath) 'en-US' 'about_qmTunnel.help.txt') -Raw
        $engine = [QmTunnel.Engine.Errors.ErrorIds].Assembly
        $types = @([QmTunnel.Engine.Errors.ErrorIds], $engine.GetType('QmTunnel.Engine.Security.SecurityErrorIds'), $assembly.GetType('QmTunnel.PowerShell.ErrorIds')) | Where-Object { $_ }
        $types.Count | Should -Be 3
        $ids = $types | ForEach-Object { $_.GetFields([Reflection.BindingFlags]'Public, NonPublic, Static') } |
            Where-Object { $_.IsLiteral -and $_.FieldType -eq [string] } | ForEach-Object { $_.GetRawConstantValue() } | Sort-Object -Unique
        $ids.Count | Should -BeGreaterThan 30
        $missing = $ids | Where-Object { $about -notmatch "(?m)^\s+$([regex]::Escape($_))\b" }
        $missing | Should -BeNullOrEmpty -Because 'every error id needs a line under ERRORS'
    }
}

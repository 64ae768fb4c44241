<#
.SYNOPSIS
    Turns the PlatyPS-layout cmdlet pages in docs/ into one MAML help file that Get-Help reads.

.DESCRIPTION
    Our own markdown-to-MAML step, because PlatyPS (New-ExternalHelp) cannot be installed here. It reads every
    docs/<Verb-Noun>.md page whose front matter names an external help file (other markdown in the folder, such as
    architecture.md, is skipped), parses it section by section, and writes
    <helpItems schema="maml"> with one <command:command> per page: details (name, verb, noun, synopsis), description,
    syntax (one syntaxItem per ```block in ## SYNTAX), parameters (required, position, pipeline input, globbing, type,
    default value, accepted values), input types, return values, notes, examples (title, code, remarks) and related
    links.

    It refuses a page it cannot turn into complete help: the error names the file and the section (a missing or
    empty SYNOPSIS, no example or an example without code, no PARAMETERS section, a parameter without a description
    or without its ```yaml block, a syntax line naming a parameter that PARAMETERS does not describe). It does not
    compare the pages with the compiled cmdlets: tests/Pester/Module.Tests.ps1 does (help-signature drift).

.PARAMETER DocsPath
    Folder holding the cmdlet pages (docs/).

.PARAMETER OutputPath
    The MAML file to write, e.g. out/qmTunnel/en-US/QmTunnel.PowerShell.dll-Help.xml. When it is a folder (no .xml
    extension), the file is written in it under the name the pages' front matter gives ("external help file").

.EXAMPLE
    dotnet pwsh src/Build/New-MamlHelp.ps1 -DocsPath docs -OutputPath out/qmTunnel/en-US/QmTunnel.PowerShell.dll-Help.xml
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [string]$DocsPath,

    [Parameter(Mandatory)]
    [string]$OutputPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$script:MamlNs = 'http://schemas.microsoft.com/maml/2004/10'
$script:CommandNs = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
$script:DevNs = 'http://schemas.microsoft.com/maml/dev/2004/10'
$script:MshNs = 'http://msh'
$script:YamlKeys = @('Type', 'Parameter Sets', 'Aliases', 'Accepted values', 'Required', 'Position', 'Default value', 'Accept pipeline input', 'Accept wildcard characters')

function Fail([string]$File, [string]$Section, [string]$Message) {
    throw "${File}: section '$Section': $Message"
}

# ---------------------------------------------------------------------------------------------------------------
# Markdown structure
# ---------------------------------------------------------------------------------------------------------------

# Splits lines into blocks under the headings of one level ('## ' or '### '), ignoring heading-like lines inside
# ``` fences. Returns the text before the first heading as the block with Title $null.
function Split-Heading([string[]]$Lines, [string]$Marker) {
    $blocks = [System.Collections.Generic.List[object]]::new()
    $current = [pscustomobject]@{ Title = $null; Lines = [System.Collections.Generic.List[string]]::new() }
    $inFence = $false
    foreach ($line in $Lines) {
        if ($line -match '^\s*```') {
            $inFence = -not $inFence
        }
        if (-not $inFence -and $line.StartsWith($Marker) -and -not $line.StartsWith($Marker + '#')) {
            $blocks.Add($current)
            $current = [pscustomobject]@{ Title = $line.Substring($Marker.Length).Trim(); Lines = [System.Collections.Generic.List[string]]::new() }
            continue
        }
        $current.Lines.Add($line)
    }
    $blocks.Add($current)
    return , $blocks
}

# Separates a block into its ``` fences (language + text) and the prose outside them, in order.
function Split-Fence([string[]]$Lines, [string]$File, [string]$Section) {
    $parts = [System.Collections.Generic.List[object]]::new()
    $prose = [System.Collections.Generic.List[string]]::new()
    $fence = $null
    foreach ($line in $Lines) {
        if ($null -eq $fence) {
            if ($line -match '^\s*```\s*(?<lang>[\w+-]*)\s*$') {
                if ($prose.Count -gt 0) {
                    $parts.Add([pscustomobject]@{ Kind = 'Text'; Lang = $null; Lines = $prose.ToArray() })
                    $prose.Clear()
                }
                $fence = [pscustomobject]@{ Kind = 'Code'; Lang = $Matches.lang; Lines = [System.Collections.Generic.List[string]]::new() }
            }
            else {
                $prose.Add($line)
            }
        }
        elseif ($line -match '^\s*```\s*$') {
            $parts.Add([pscustomobject]@{ Kind = 'Code'; Lang = $fence.Lang; Lines = $fence.Lines.ToArray() })
            $fence = $null
        }
        else {
            $fence.Lines.Add($line)
        }
    }
    if ($null -ne $fence) {
        Fail $File $Section 'a ``` code block is never closed.'
    }
    if ($prose.Count -gt 0) {
        $parts.Add([pscustomobject]@{ Kind = 'Text'; Lang = $null; Lines = $prose.ToArray() })
    }
    return , $parts
}

# Markdown inline markup to plain help text: `code` -> code, **b** -> b, [text](uri) -> text (uri).
function ConvertTo-PlainText([string]$Text) {
    $t = [regex]::Replace($Text, '`([^`]+)`', '$1')
    $t = [regex]::Replace($t, '\*\*([^*]+)\*\*', '$1')
    $t = [regex]::Replace($t, '\[([^\]]+)\]\(([^)\s]+)\)', '$1 ($2)')
    $t = [regex]::Replace($t, '\[([^\]]+)\]\(\)', '$1')
    return $t
}

# Prose lines to help paragraphs: blank lines separate paragraphs, lines of a paragraph are joined, each list item
# ('- ', '* ', '1. ') is a paragraph of its own; code fences keep their lines.
function ConvertTo-Paragraph([object[]]$Parts) {
    $paras = [System.Collections.Generic.List[string]]::new()
    foreach ($part in $Parts) {
        if ($part.Kind -eq 'Code') {
            if ($part.Lines.Count -gt 0) {
                $paras.Add(($part.Lines -join [Environment]::NewLine))
            }
            continue
        }
        $buffer = [System.Collections.Generic.List[string]]::new()
        $flush = {
            if ($buffer.Count -gt 0) {
                $paras.Add((ConvertTo-PlainText (($buffer | ForEach-Object { $_.Trim() }) -join ' ')))
                $buffer.Clear()
            }
        }
        foreach ($line in $part.Lines) {
            if ($line.Trim().Length -eq 0) {
                . $flush
            }
            elseif ($line -match '^\s*([-*]|\d+\.)\s+') {
                . $flush
                $buffer.Add($line)
            }
            else {
                $buffer.Add($line)
            }
        }
        . $flush
    }
    return , $paras.ToArray()
}

function Get-Section($Sections, [string]$Name) {
    $found = @($Sections | Where-Object { $_.Title -eq $Name })
    if ($found.Count -eq 0) {
        return $null
    }
    return $found[0]
}

function Test-Blank([string[]]$Lines) {
    return (($Lines -join '').Trim().Length -eq 0)
}

# ---------------------------------------------------------------------------------------------------------------
# One page
# ---------------------------------------------------------------------------------------------------------------

function Read-HelpPage([System.IO.FileInfo]$Item, [string]$DisplayPath) {
    $text = [System.IO.File]::ReadAllText($Item.FullName) -replace "`r`n?", "`n"
    $lines = $text.Split("`n")

    # Front matter
    if ($lines.Count -lt 3 -or $lines[0].Trim() -ne '---') {
        return $null
    }
    $end = [Array]::IndexOf($lines, '---', 1)
    if ($end -lt 0) {
        Fail $DisplayPath 'front matter' 'the YAML front matter is not closed by a --- line.'
    }
    $front = @{}
    foreach ($l in $lines[1..($end - 1)]) {
        if ($l -match '^\s*(?<k>[^:]+):\s*(?<v>.*)$') {
            $front[$Matches.k.Trim()] = $Matches.v.Trim()
        }
    }
    if (-not $front.ContainsKey('external help file')) {
        return $null  # not a cmdlet page
    }
    if ($front['schema'] -ne '2.0.0') {
        Fail $DisplayPath 'front matter' "schema is '$($front['schema'])'; only PlatyPS schema 2.0.0 is understood."
    }
    $body = if ($end + 1 -lt $lines.Count) { $lines[($end + 1)..($lines.Count - 1)] } else { @() }

    # Title
    $top = Split-Heading $body '# '
    $titled = @($top | Where-Object { $null -ne $_.Title })
    if ($titled.Count -ne 1) {
        Fail $DisplayPath 'title' "expected one '# Verb-Noun' title, found $($titled.Count)."
    }
    $name = $titled[0].Title
    if ($name -notmatch '^(?<verb>[A-Za-z]+)-(?<noun>\w+)$') {
        Fail $DisplayPath 'title' "'$name' is not a Verb-Noun cmdlet name."
    }
    $verb = $Matches.verb
    $noun = $Matches.noun
    if ($name -ne $Item.BaseName) {
        Fail $DisplayPath 'title' "the title '$name' differs from the file name '$($Item.BaseName)'."
    }
    $sections = Split-Heading $titled[0].Lines '## '

    # SYNOPSIS
    $synopsis = Get-Section $sections 'SYNOPSIS'
    if ($null -eq $synopsis -or (Test-Blank $synopsis.Lines)) {
        Fail $DisplayPath 'SYNOPSIS' 'missing or empty: give a one-sentence synopsis.'
    }
    $synopsisText = (ConvertTo-Paragraph (Split-Fence $synopsis.Lines $DisplayPath 'SYNOPSIS')) -join ' '

    # DESCRIPTION
    $description = Get-Section $sections 'DESCRIPTION'
    if ($null -eq $description -or (Test-Blank $description.Lines)) {
        Fail $DisplayPath 'DESCRIPTION' 'missing or empty.'
    }
    $descriptionParas = ConvertTo-Paragraph (Split-Fence $description.Lines $DisplayPath 'DESCRIPTION')

    # PARAMETERS (before SYNTAX, which refers to them)
    $paramSection = Get-Section $sections 'PARAMETERS'
    if ($null -eq $paramSection) {
        Fail $DisplayPath 'PARAMETERS' "missing: every page needs ## PARAMETERS, with at least '### CommonParameters'."
    }
    $parameters = [System.Collections.Generic.List[object]]::new()
    $commonParameters = $false
    foreach ($sub in (Split-Heading $paramSection.Lines '### ')) {
        if ($null -eq $sub.Title) {
            continue
        }
        if ($sub.Title -eq 'CommonParameters') {
            $commonParameters = $true
            continue
        }
        $where = "PARAMETERS / $($sub.Title)"
        if ($sub.Title -notmatch '^-(?<p>[A-Za-z]\w*)$') {
            Fail $DisplayPath $where "expected a '### -ParameterName' heading."
        }
        $pname = $Matches.p
        $parts = Split-Fence $sub.Lines $DisplayPath $where
        $yamlParts = @($parts | Where-Object { $_.Kind -eq 'Code' -and $_.Lang -eq 'yaml' })
        $descParts = @($parts | Where-Object { $_.Kind -eq 'Text' })
        $paras = ConvertTo-Paragraph $descParts
        if ($paras.Count -eq 0) {
            Fail $DisplayPath $where 'the parameter has no description.'
        }
        if ($yamlParts.Count -eq 0) {
            Fail $DisplayPath $where 'the parameter has no ```yaml block (Type, Parameter Sets, Required, Position, ...).'
        }
        $blocks = foreach ($y in $yamlParts) {
            $map = @{}
            foreach ($l in $y.Lines) {
                if ($l.Trim().Length -eq 0) {
                    continue
                }
                if ($l -notmatch '^(?<k>[^:]+):\s*(?<v>.*)$' -or $script:YamlKeys -notcontains $Matches.k.Trim()) {
                    Fail $DisplayPath $where "unexpected line in the yaml block: '$l'."
                }
                $map[$Matches.k.Trim()] = $Matches.v.Trim()
            }
            foreach ($k in 'Type', 'Parameter Sets', 'Required', 'Position') {
                if (-not $map.ContainsKey($k) -or $map[$k].Length -eq 0) {
                    Fail $DisplayPath $where "the yaml block has no '$k'."
                }
            }
            [pscustomobject]@{
                Type = $map['Type']
                Sets = @($map['Parameter Sets'] -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
                Aliases = @(if ($map['Aliases']) { $map['Aliases'] -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ } })
                Accepted = @(if ($map.ContainsKey('Accepted values') -and $map['Accepted values']) { $map['Accepted values'] -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ } })
                Required = $map['Required'] -eq 'True'
                Position = if ($map['Position'] -match '^\d+$') { $map['Position'] } else { 'named' }
                Default = if ($map['Default value']) { $map['Default value'] } else { 'None' }
                Pipeline = if ($map['Accept pipeline input']) { $map['Accept pipeline input'] } else { 'False' }
                Globbing = $map['Accept wildcard characters'] -eq 'True'
            }
        }
        $parameters.Add([pscustomobject]@{ Name = $pname; Paragraphs = $paras; Blocks = @($blocks) })
    }

    # SYNTAX
    $syntaxSection = Get-Section $sections 'SYNTAX'
    if ($null -eq $syntaxSection) {
        Fail $DisplayPath 'SYNTAX' 'missing.'
    }
    $syntaxItems = [System.Collections.Generic.List[object]]::new()
    foreach ($sub in (Split-Heading $syntaxSection.Lines '### ')) {
        $setName = if ($null -eq $sub.Title) { '__AllParameterSets' } else { ($sub.Title -replace '\s*\(Default\)\s*$', '').Trim() }
        foreach ($code in @((Split-Fence $sub.Lines $DisplayPath 'SYNTAX') | Where-Object { $_.Kind -eq 'Code' })) {
            $line = ($code.Lines -join ' ').Trim()
            if (-not $line.StartsWith($name)) {
                Fail $DisplayPath "SYNTAX / $setName" "the syntax line does not start with '$name'."
            }
            $names = @([regex]::Matches($line.Substring($name.Length), '(?<=[\s\[])-(?<p>[A-Za-z]\w*)') | ForEach-Object { $_.Groups['p'].Value })
            $items = foreach ($n in $names) {
                $p = @($parameters | Where-Object Name -eq $n)
                if ($p.Count -eq 0) {
                    Fail $DisplayPath "SYNTAX / $setName" "the syntax names -$n, which ## PARAMETERS does not describe."
                }
                $block = @($p[0].Blocks | Where-Object { $_.Sets -contains '(All)' -or $_.Sets -contains $setName })
                if ($block.Count -eq 0) {
                    $block = @($p[0].Blocks)
                }
                [pscustomobject]@{ Parameter = $p[0]; Block = $block[0] }
            }
            $syntaxItems.Add([pscustomobject]@{ Set = $setName; Items = @($items) })
        }
    }
    if ($syntaxItems.Count -eq 0) {
        Fail $DisplayPath 'SYNTAX' 'no ``` block with the syntax of a parameter set.'
    }

    # EXAMPLES
    $examplesSection = Get-Section $sections 'EXAMPLES'
    if ($null -eq $examplesSection) {
        Fail $DisplayPath 'EXAMPLES' 'missing: give at least one ### Example with a code block.'
    }
    $examples = [System.Collections.Generic.List[object]]::new()
    foreach ($sub in (Split-Heading $examplesSection.Lines '### ')) {
        if ($null -eq $sub.Title) {
            continue
        }
        $parts = Split-Fence $sub.Lines $DisplayPath "EXAMPLES / $($sub.Title)"
        $code = @($parts | Where-Object Kind -eq 'Code' | ForEach-Object { $_.Lines -join "`n" })
        if ($code.Count -eq 0 -or (($code -join '').Trim().Length -eq 0)) {
            Fail $DisplayPath "EXAMPLES / $($sub.Title)" 'the example has no code block.'
        }
        $examples.Add([pscustomobject]@{
                Title = $sub.Title
                Code = ($code -join "`n`n").Trim("`n")
                Remarks = ConvertTo-Paragraph @($parts | Where-Object Kind -eq 'Text')
            })
    }
    if ($examples.Count -eq 0) {
        Fail $DisplayPath 'EXAMPLES' 'no example: give at least one ### Example with a code block.'
    }

    # INPUTS / OUTPUTS
    $typeList = {
        param($SectionName)
        $section = Get-Section $sections $SectionName
        if ($null -eq $section) {
            Fail $DisplayPath $SectionName 'missing.'
        }
        foreach ($sub in (Split-Heading $section.Lines '### ')) {
            if ($null -ne $sub.Title) {
                [pscustomobject]@{ Type = $sub.Title; Paragraphs = ConvertTo-Paragraph (Split-Fence $sub.Lines $DisplayPath "$SectionName / $($sub.Title)") }
            }
        }
    }
    $inputs = @(& $typeList 'INPUTS')
    $outputs = @(& $typeList 'OUTPUTS')

    # NOTES, RELATED LINKS
    $notes = Get-Section $sections 'NOTES'
    $notesParas = if ($null -eq $notes) { @() } else { ConvertTo-Paragraph (Split-Fence $notes.Lines $DisplayPath 'NOTES') }
    $links = [System.Collections.Generic.List[object]]::new()
    if ($front['online version']) {
        $links.Add([pscustomobject]@{ Text = 'Online Version:'; Uri = $front['online version'] })
    }
    $related = Get-Section $sections 'RELATED LINKS'
    if ($null -ne $related) {
        foreach ($l in $related.Lines) {
            foreach ($m in [regex]::Matches($l, '\[(?<t>[^\]]+)\]\((?<u>[^)]*)\)')) {
                $uri = $m.Groups['u'].Value
                # Relative links to sibling pages (Get-Foo.md) mean nothing to Get-Help; keep only absolute URIs.
                if ($uri -notmatch '^[a-z]+://') {
                    $uri = ''
                }
                $links.Add([pscustomobject]@{ Text = $m.Groups['t'].Value; Uri = $uri })
            }
        }
    }

    [pscustomobject]@{
        File = $DisplayPath
        HelpFile = $front['external help file']
        Name = $name
        Verb = $verb
        Noun = $noun
        Synopsis = $synopsisText
        Description = $descriptionParas
        Syntax = $syntaxItems.ToArray()
        Parameters = $parameters.ToArray()
        CommonParameters = $commonParameters
        Examples = $examples.ToArray()
        Inputs = $inputs
        Outputs = $outputs
        Notes = $notesParas
        Links = $links.ToArray()
    }
}

# ---------------------------------------------------------------------------------------------------------------
# MAML
# ---------------------------------------------------------------------------------------------------------------

function Write-Paragraphs([System.Xml.XmlWriter]$W, [string[]]$Paragraphs) {
    if ($Paragraphs.Count -eq 0) {
        $W.WriteElementString('maml', 'para', $script:MamlNs, '')
    }
    foreach ($p in $Paragraphs) {
        $W.WriteElementString('maml', 'para', $script:MamlNs, $p)
    }
}

function Test-Switch([string]$Type) {
    return $Type -in 'SwitchParameter', 'System.Management.Automation.SwitchParameter'
}

function Write-Parameter([System.Xml.XmlWriter]$W, $Parameter, $Block, [bool]$InSyntax) {
    $isSwitch = Test-Switch $Block.Type
    $W.WriteStartElement('command', 'parameter', $script:CommandNs)
    $W.WriteAttributeString('required', $Block.Required.ToString().ToLowerInvariant())
    $W.WriteAttributeString('variableLength', ($Block.Type.EndsWith('[]')).ToString().ToLowerInvariant())
    $W.WriteAttributeString('globbing', $Block.Globbing.ToString().ToLowerInvariant())
    $W.WriteAttributeString('pipelineInput', $Block.Pipeline)
    $W.WriteAttributeString('position', $Block.Position)
    $W.WriteAttributeString('aliases', $(if ($Block.Aliases.Count -gt 0) { $Block.Aliases -join ', ' } else { 'none' }))
    $W.WriteElementString('maml', 'name', $script:MamlNs, $Parameter.Name)
    $W.WriteStartElement('maml', 'description', $script:MamlNs)
    Write-Paragraphs $W $Parameter.Paragraphs
    $W.WriteEndElement()
    if ($Block.Accepted.Count -gt 0) {
        $W.WriteStartElement('command', 'parameterValueGroup', $script:CommandNs)
        foreach ($v in $Block.Accepted) {
            $W.WriteStartElement('command', 'parameterValue', $script:CommandNs)
            $W.WriteAttributeString('required', 'false')
            $W.WriteAttributeString('command', 'variableLength', $script:CommandNs, 'false')
            $W.WriteString($v)
            $W.WriteEndElement()
        }
        $W.WriteEndElement()
    }
    if (-not ($InSyntax -and $isSwitch)) {
        $W.WriteStartElement('command', 'parameterValue', $script:CommandNs)
        $W.WriteAttributeString('required', (-not $isSwitch).ToString().ToLowerInvariant())
        $W.WriteAttributeString('variableLength', 'false')
        $W.WriteString($Block.Type)
        $W.WriteEndElement()
    }
    $W.WriteStartElement('dev', 'type', $script:DevNs)
    $W.WriteElementString('maml', 'name', $script:MamlNs, $Block.Type)
    $W.WriteElementString('maml', 'uri', $script:MamlNs, '')
    $W.WriteEndElement()
    $W.WriteElementString('dev', 'defaultValue', $script:DevNs, $Block.Default)
    $W.WriteEndElement()
}

function Write-Command([System.Xml.XmlWriter]$W, $Page) {
    $W.WriteStartElement('command', 'command', $script:CommandNs)
    $W.WriteAttributeString('xmlns', 'maml', $null, $script:MamlNs)
    $W.WriteAttributeString('xmlns', 'command', $null, $script:CommandNs)
    $W.WriteAttributeString('xmlns', 'dev', $null, $script:DevNs)

    $W.WriteStartElement('command', 'details', $script:CommandNs)
    $W.WriteElementString('command', 'name', $script:CommandNs, $Page.Name)
    $W.WriteElementString('command', 'verb', $script:CommandNs, $Page.Verb)
    $W.WriteElementString('command', 'noun', $script:CommandNs, $Page.Noun)
    $W.WriteStartElement('maml', 'description', $script:MamlNs)
    Write-Paragraphs $W @($Page.Synopsis)
    $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('maml', 'description', $script:MamlNs)
    Write-Paragraphs $W $Page.Description
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'syntax', $script:CommandNs)
    foreach ($s in $Page.Syntax) {
        $W.WriteStartElement('command', 'syntaxItem', $script:CommandNs)
        $W.WriteElementString('maml', 'name', $script:MamlNs, $Page.Name)
        foreach ($item in $s.Items) {
            Write-Parameter $W $item.Parameter $item.Block $true
        }
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'parameters', $script:CommandNs)
    foreach ($p in $Page.Parameters) {
        Write-Parameter $W $p $p.Blocks[0] $false
    }
    $W.WriteEndElement()

    foreach ($kind in @(@('inputTypes', 'inputType', $Page.Inputs), @('returnValues', 'returnValue', $Page.Outputs))) {
        $W.WriteStartElement('command', $kind[0], $script:CommandNs)
        foreach ($t in $kind[2]) {
            $W.WriteStartElement('command', $kind[1], $script:CommandNs)
            $W.WriteStartElement('dev', 'type', $script:DevNs)
            $W.WriteElementString('maml', 'name', $script:MamlNs, $t.Type)
            $W.WriteEndElement()
            $W.WriteStartElement('maml', 'description', $script:MamlNs)
            Write-Paragraphs $W $t.Paragraphs
            $W.WriteEndElement()
            $W.WriteEndElement()
        }
        $W.WriteEndElement()
    }

    $W.WriteStartElement('maml', 'alertSet', $script:MamlNs)
    $W.WriteStartElement('maml', 'alert', $script:MamlNs)
    Write-Paragraphs $W $Page.Notes
    $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'examples', $script:CommandNs)
    foreach ($e in $Page.Examples) {
        $W.WriteStartElement('command', 'example', $script:CommandNs)
        $W.WriteElementString('maml', 'title', $script:MamlNs, "--------- $($e.Title) ---------")
        $W.WriteElementString('dev', 'code', $script:DevNs, $e.Code)
        $W.WriteStartElement('dev', 'remarks', $script:DevNs)
        Write-Paragraphs $W $e.Remarks
        # An empty paragraph keeps a blank line between one example's remarks and the next example's title.
        $W.WriteElementString('maml', 'para', $script:MamlNs, '')
        $W.WriteEndElement()
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'relatedLinks', $script:CommandNs)
    foreach ($l in $Page.Links) {
        $W.WriteStartElement('maml', 'navigationLink', $script:MamlNs)
        $W.WriteElementString('maml', 'linkText', $script:MamlNs, $l.Text)
        $W.WriteElementString('maml', 'uri', $script:MamlNs, $l.Uri)
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteEndElement()
}

# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------

$docs = Resolve-Path -LiteralPath $DocsPath
$pages = foreach ($item in Get-ChildItem -LiteralPath $docs -Filter '*.md' -File | Sort-Object Name) {
    $display = [System.IO.Path]::GetRelativePath((Get-Location).ProviderPath, $item.FullName)
    if ($display.StartsWith('..')) {
        $display = $item.FullName
    }
    Read-HelpPage $item $display
}
$pages = @($pages | Where-Object { $null -ne $_ })
if ($pages.Count -eq 0) {
    throw "${DocsPath}: no cmdlet page (markdown with 'external help file' in its front matter) was found."
}
$duplicates = @($pages | Group-Object Name | Where-Object Count -gt 1)
if ($duplicates.Count -gt 0) {
    throw "Cmdlet pages for the same cmdlet: $(($duplicates | ForEach-Object { $_.Group.File }) -join ', ')."
}

$target = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($OutputPath)
if (-not $target.EndsWith('.xml', [StringComparison]::OrdinalIgnoreCase)) {
    $names = @($pages.HelpFile | Sort-Object -Unique)
    if ($names.Count -ne 1) {
        throw "The pages name several help files ($($names -join ', ')); give -OutputPath as one .xml file or fix their front matter."
    }
    $target = Join-Path $target $names[0]
}
$null = New-Item -ItemType Directory -Force -Path (Split-Path -Parent $target)

$settings = [System.Xml.XmlWriterSettings]::new()
$settings.Indent = $true
$settings.IndentChars = '  '
$settings.Encoding = [System.Text.UTF8Encoding]::new($false)
$settings.NewLineChars = "`n"
# The text of code and paragraphs is written as is (no re-indentation inside dev:code).
$settings.NewLineHandling = [System.Xml.NewLineHandling]::Replace
$writer = [System.Xml.XmlWriter]::Create($target, $settings)
try {
    $writer.WriteStartDocument()
    $writer.WriteStartElement('helpItems', $script:MshNs)
    $writer.WriteAttributeString('schema', 'maml')
    foreach ($page in $pages | Sort-Object Name) {
        Write-Command $writer $page
    }
    $writer.WriteEndElement()
    $writer.WriteEndDocument()
}
finally {
    $writer.Dispose()
}
Write-Verbose "Wrote help for $($pages.Count) cmdlets to $target."

#Requires -Version 7.4
<#
    Live monitoring through the BUILT module: Get-QmTunnelStats -Follow and Get-QmTunnelConnection -Follow write an
    update every -Interval (250 ms at least), changed or not, until the pipeline is stopped (Select-Object -First, or
    PowerShell.Stop() as Ctrl+C does); typed at a prompt, a live view redrawn in place that fits the window, naming
    the hops of a chain while one is not up.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    $modulePath = Get-QmTestModulePath
    Import-QmTestModule
    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $base = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-follow-$run"
    $echo = [QmTunnel.PesterTools.EchoServer]::new()
    $server = Start-QmTunnelServer -Port 0 -DataPath (Join-Path $base 'a') -PassThru
    # The server is its own hop (TLS to itself): A -> A -> echo.
    $tunnel = New-QmTunnel watched -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($server.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
}

AfterAll {
    if ($server) { Stop-QmTunnelServer -ErrorAction SilentlyContinue }
    if ($echo) { $echo.Dispose() }
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Get-QmTunnelStats -Follow' {
    It 'writes an update at each interval, with each change in it, and stops when the pipeline has enough' {
        $seen = [System.Collections.Generic.List[object]]::new()
        $updates = Get-QmTunnelStats watched -Follow -Interval 0.25 | ForEach-Object {
            $seen.Add([pscustomobject]@{ At = [DateTime]::UtcNow; Total = $_.ConnectionsTotal })
            # each update causes the next: one more connection through the tunnel
            $null = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1000, 30)
            $_
        } | Select-Object -First 4
        $updates.Count | Should -Be 4
        $updates | ForEach-Object { $_ | Should -BeOfType 'QmTunnel.Engine.Management.TunnelStats' }
        # every update differs from the one before (a new connection each time)
        for ($i = 1; $i -lt $seen.Count; $i++) {
            $seen[$i].Total | Should -BeGreaterThan $seen[$i - 1].Total
            # paced by the interval (a late tick followed by a punctual one comes sooner than 250 ms: half of it is the
            # bound; without pacing the updates would follow each other within milliseconds)
            ($seen[$i].At - $seen[$i - 1].At).TotalMilliseconds | Should -BeGreaterOrEqual 125
        }
    }

    It 'stops when the pipeline is stopped, as Ctrl+C does, having written the current state first' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$modulePath'; Get-QmTunnelStats -Follow")
            $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
            $async = $ps.BeginInvoke([System.Management.Automation.PSDataCollection[psobject]]::new(), $output)
            $deadline = [DateTime]::UtcNow.AddSeconds(15)
            while ($output.Count -lt 1 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $output.Count | Should -BeGreaterOrEqual 1
            $output[0].Name | Should -Be 'watched'
            $stopped = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $stopped.Elapsed.TotalSeconds | Should -BeLessThan 5
            $async.IsCompleted | Should -BeTrue
        }
        finally {
            $ps.Dispose()
        }
    }

    It 'writes updates on an idle tunnel too: Select-Object -First 3 ends' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$modulePath'; Get-QmTunnelStats watched -Follow -Interval 0.25 | Select-Object -First 3")
            $async = $ps.BeginInvoke()
            # Nothing happens on the tunnel meanwhile: the updates come from the interval alone.
            $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) | Should -BeTrue -Because 'three ticks of 250 ms must come without any change'
            $updates = $ps.EndInvoke($async)
            $updates.Count | Should -Be 3
            @($updates.ConnectionsTotal | Sort-Object -Unique).Count | Should -Be 1 -Because 'nothing changed between them'
        }
        finally {
            $ps.Stop()
            $ps.Dispose()
        }
    }

    It 'refuses an interval under the 250 ms update limit with FollowIntervalInvalid' {
        $err = $null
        try { Get-QmTunnelStats watched -Follow -Interval 00:00:00.1 -ErrorAction Stop | Select-Object -First 1 } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -BeLike 'FollowIntervalInvalid*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'Get-QmTunnelConnection -Follow' {
    It 'writes the connection list again when a new connection comes and goes' {
        $maxId = (Get-QmTunnelConnection watched | Measure-Object Id -Maximum).Maximum
        $triggered = $false
        $new = Get-QmTunnelConnection watched -Follow -Interval 0.25 | ForEach-Object {
            if (-not $triggered) {
                $triggered = $true
                # a new connection after the first list: the next update must list it
                $null = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1000, 30)
            }
            $_
        } | Where-Object Id -gt $maxId | Select-Object -First 1
        $new | Should -BeOfType 'QmTunnel.Engine.Management.ConnectionInfo'
        $new.Tunnel | Should -Be 'watched'
    }
}

Describe 'The live view of -Follow at the prompt' {
    BeforeAll {
        # The frames a VT host received: each frame after the first starts by moving the cursor up over the previous
        # one (ESC [ n F) and clearing (ESC [ J).
        function Get-Frame([string]$Text) {
            $parts = [regex]::Split($Text, '\x1b\[(\d+)F\x1b\[J')
            $frames = [System.Collections.Generic.List[object]]::new()
            $frames.Add([pscustomobject]@{ MovedUp = 0; Lines = @($parts[0] -split "`n" | Select-Object -SkipLast 1) })
            for ($i = 1; $i + 1 -lt $parts.Count; $i += 2) {
                $frames.Add([pscustomobject]@{ MovedUp = [int]$parts[$i]; Lines = @($parts[$i + 1] -split "`n" | Select-Object -SkipLast 1) })
            }
            $frames
        }

        function Watch-Live([string]$Command, [int]$Frames) {
            $session = New-QmTestRunspace -Width 80 -Height 30 -VirtualTerminal -ImportModule
            $ps = [powershell]::Create()
            $ps.Runspace = $session.Runspace
            try {
                # Typed at the prompt: one command, last in its pipeline, from the runspace.
                $null = $ps.AddCommand($Command).AddParameter('Follow').AddParameter('Interval', 0.25)
                $async = $ps.BeginInvoke()
                Wait-Until { ([regex]::Matches($session.UI.Text, '\x1b\[\d+F')).Count -ge $Frames -or $async.IsCompleted } "$Frames frames of $Command"
                $ps.Stop()
                [pscustomobject]@{ Text = $session.UI.Text; Errors = @($ps.Streams.Error) }
            }
            finally {
                $ps.Dispose()
                Close-QmTestRunspace $session
            }
        }

        # More connections than a 30-line window holds: closed ones stay listed.
        $null = [QmTunnel.PesterTools.EchoClient]::RunMany($tunnel.BoundListen, 45, 100, 0, 30)
    }

    It '<Command> redraws in place within 80 columns and 30 lines, keeping the columns that matter' -ForEach @(
        @{ Command = 'Get-QmTunnelStats'; Columns = @('Name', 'State', 'Conn', 'Fail', 'In', 'In/s', 'Out', 'Out/s', 'Hops', 'RTT') }
        @{ Command = 'Get-QmTunnelConnection'; Columns = @('Tunnel', 'Id', 'State', 'Client', 'In', 'Out', 'Duration', 'Error') }
    ) {
        $watched = Watch-Live $Command 3
        $watched.Errors | Should -BeNullOrEmpty
        $frames = @(Get-Frame $watched.Text)
        $frames.Count | Should -BeGreaterOrEqual 3
        for ($i = 0; $i -lt $frames.Count; $i++) {
            $frame = $frames[$i]
            if ($i -gt 0) { $frame.MovedUp | Should -Be $frames[$i - 1].Lines.Count -Because 'a redraw moves up over exactly the previous frame' }
            if ($i -lt $frames.Count - 1) {
                # Complete frames only (the last may have been cut by the stop).
                $frame.Lines.Count | Should -BeLessOrEqual 29 -Because 'a frame as high as the window would scroll it'
                foreach ($line in $frame.Lines) { $line.Length | Should -BeLessOrEqual 79 -Because "a full-width line wraps: '$line'" }
                $header = @($frame.Lines[0] -split '\s+' | Where-Object { $_ })
                foreach ($column in $Columns) { $header | Should -Contain $column }
            }
        }
    }

    It 'says how many connections do not fit the window' {
        $watched = Watch-Live 'Get-QmTunnelConnection' 2
        $watched.Text | Should -Match '… \d+ more'
    }
}

Describe 'The live view shows the hops of a chain change' {
    BeforeAll {
        # A tunnel whose one hop passes a proxy that can be cut: its link resumes, and the view shows it.
        $proxy = [QmTunnel.PesterTools.CutProxy]::new($server.Port)
        $cuttable = New-QmTunnel zz-cuttable -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop "qmt://127.0.0.1:$($proxy.Port)") -Target $echo.Uri | Start-QmTunnel -PassThru
        $null = [QmTunnel.PesterTools.EchoClient]::Run($cuttable.BoundListen, 1000, 30)
        Wait-Until { "$((Get-QmTunnelStats zz-cuttable).Hops[0].State)" -eq 'Up' } 'the hop of zz-cuttable is up'
    }

    AfterAll {
        Remove-QmTunnel zz-cuttable -Confirm:$false -ErrorAction SilentlyContinue
        if ($proxy) { $proxy.Dispose() }
    }

    It 'names the hop that is resuming under the table while it is, and drops the line when it is up again' {
        $session = New-QmTestRunspace -Width 80 -Height 30 -VirtualTerminal -ImportModule
        $ps = [powershell]::Create()
        $ps.Runspace = $session.Runspace
        try {
            $null = $ps.AddCommand('Get-QmTunnelStats').AddParameter('Name', 'zz-cuttable').AddParameter('Follow').AddParameter('Interval', 0.25)
            $null = $ps.BeginInvoke()
            Wait-Until { $session.UI.Text -match '\b1 up\b' } 'the view shows the hop up'
            $proxy.Cut()
            Wait-Until { $session.UI.Text -match 'zz-cuttable: 1 127\.0\.0\.1:\d+ Resuming' } 'the view names the hop resuming'
            $session.UI.Text | Should -Match '\b1 res\b'
            $proxy.Heal()
            $resumingAt = $session.UI.Text.LastIndexOf('Resuming')
            Wait-Until { $session.UI.Text.Substring($resumingAt) -match '\x1b\[\d+F\x1b\[J[^\x1b]*\b1 up\b[^\x1b]*$' } 'a frame after the resume shows the hop up'
            $last = ($session.UI.Text -split '\x1b\[\d+F\x1b\[J')[-1]
            $last | Should -Not -Match 'Resuming'
            (Get-QmTunnelStats zz-cuttable).Hops[0].Resumes | Should -BeGreaterOrEqual 1
        }
        finally {
            $ps.Stop()
            $ps.Dispose()
            Close-QmTestRunspace $session
        }
    }
}

#Requires -Version 7.4
<#
    Compression per hop through the BUILT module: New-QmTunnelHop -Compression / -CompressionLevel (the text form they
    write, the defaults per scheme, errors naming the parameter and the range), and a tunnel from an in-process server A
    through a daemon B (qmtunnel-server) whose hop asks for LZ4: the setting round-trips into the tunnel's Via, the data
    arrives intact, and Get-QmTunnelStats shows the hop's bytes before and after compression.
    Every server started here is stopped in AfterAll; the data paths are temp folders.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule
}

Describe 'New-QmTunnelHop -Compression' {
    It 'writes the compression into the text form, only where it differs from the default of the scheme' {
        "$(New-QmTunnelHop qmt://hostb -Compression Lz4)" | Should -Be 'qmt://hostb:9200?compress=lz4'
        "$(New-QmTunnelHop qmt://hostb -Compression Zstd -CompressionLevel 9)" | Should -Be 'qmt://hostb:9200?compress=zstd&compress-level=9'
        "$(New-QmTunnelHop qmt://hostb -Compression None)" | Should -Be 'qmt://hostb:9200'
        "$(New-QmTunnelHop qmt+plain://hostb -Compression Lz4)" | Should -Be 'qmt+plain://hostb:9200'
        "$(New-QmTunnelHop qmt+plain://hostb -Compression None)" | Should -Be 'qmt+plain://hostb:9200?compress=none'
        "$(New-QmTunnelHop qmt+plain://hostb -CompressionLevel 12)" | Should -Be 'qmt+plain://hostb:9200?compress=lz4&compress-level=12'
        "$(New-QmTunnelHop 'qmt://hostb?compress=zstd&compress-level=5' -Compression Lz4)" | Should -Be 'qmt://hostb:9200?compress=lz4' -Because 'another algorithm takes its own default level'
        "$(New-QmTunnelHop 'qmt://hostb?compress=zstd' -CompressionLevel 7)" | Should -Be 'qmt://hostb:9200?compress=zstd&compress-level=7'
    }

    It 'shows the compression of the hop: none on TLS, LZ4 on an unencrypted hop unless told otherwise' {
        $tls = New-QmTunnelHop qmt://hostb
        "$($tls.Compression)" | Should -Be 'None'
        $plain = New-QmTunnelHop qmt+plain://hostb
        "$($plain.Compression)" | Should -Be 'Lz4'
        $plain.CompressionLevel | Should -Be 0
        $zstd = New-QmTunnelHop qmt://hostb -Compression Zstd
        $zstd.CompressionLevel | Should -Be 3
        ($zstd | Format-List | Out-String -Width 80) | Should -Match 'Compression\s+:\s+Zstd \(level 3\)'
    }

    It 'refuses a level the algorithm does not take, or a level without a compression, naming the parameter and the range' {
        $err = $null
        $null = New-QmTunnelHop qmt://hostb -Compression Lz4 -CompressionLevel 13 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        $err[0].Exception.Message | Should -Match '-CompressionLevel 13 is not a lz4 level; lz4 takes 0 to 12'

        $null = New-QmTunnelHop qmt://hostb -Compression Zstd -CompressionLevel 20 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match '-CompressionLevel 20 is not a zstd level; zstd takes 1 to 19'

        $null = New-QmTunnelHop qmt://hostb -CompressionLevel 3 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TunnelSettingInvalid,*'
        $err[0].Exception.Message | Should -Match '-CompressionLevel 3 needs a compression: give lz4 \(levels 0-12\) or zstd \(levels 1-19\)'

        $null = New-QmTunnelHop 'qmt://hostb?compress=gzip' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'EndpointUriInvalid,*'
        $err[0].Exception.Message | Should -Match 'compress=gzip is not a compression; use compress=none, compress=lz4 or compress=zstd'

        { New-QmTunnelHop qmt://hostb -Compression Gzip -ErrorAction Stop } | Should -Throw -ExpectedMessage '*Gzip*'
    }
}

Describe 'A tunnel through a hop compressed with LZ4' {
    BeforeAll {
        $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
        $tmpA = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-compress-$run-A"
        $tmpB = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-compress-$run-B"
        $echo = [QmTunnel.PesterTools.EchoServer]::new()
        $null = Start-QmTunnelServer -Port 0 -DataPath $tmpA
        $serverB = Start-QmTunnelServer -Daemon -Port 0 -DataPath $tmpB
        $hop = New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Compression Lz4 -Credential $QmTestAdmin
        $tunnel = New-QmTunnel packed -Listen tcp://127.0.0.1:0 -Via $hop -Target $echo.Uri | Start-QmTunnel -PassThru
    }

    AfterAll {
        if ($echo) { $echo.Dispose() }
        Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $tmpA } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
        if ($serverB -and $serverB.ProcessId) {
            Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
            if (Get-QmTunnelServer | Where-Object { $_.ProcessId -eq $serverB.ProcessId }) {
                Stop-Process -Id $serverB.ProcessId -Force -ErrorAction SilentlyContinue
            }
        }
        foreach ($path in @($tmpA, $tmpB)) {
            if ($path -and (Test-Path -LiteralPath $path)) { Remove-Item -LiteralPath $path -Recurse -Force -ErrorAction SilentlyContinue }
        }
    }

    It 'keeps the hop''s compression in the tunnel''s Via' {
        @((Get-QmTunnel packed).Via) | Should -Be @("qmt://admin@127.0.0.1:$($serverB.Port)?compress=lz4")
    }

    It 'carries compressible data intact, and Get-QmTunnelStats shows the hop''s bytes before and after compression' {
        $result = [QmTunnel.PesterTools.EchoClient]::RunCompressible($tunnel.BoundListen, 4MB, 60)
        $result.Intact | Should -BeTrue -Because $result.ToString()

        $hop = (Get-QmTunnelStats packed).Hops[0]
        "$($hop.Compression)" | Should -Be 'Lz4'
        $hop.DataBytesSent | Should -Be 4MB
        $hop.DataBytesReceived | Should -Be 4MB
        $hop.DataWireBytesSent | Should -BeLessThan 1MB -Because 'the text compresses to well under a quarter'
        $hop.DataWireBytesReceived | Should -BeLessThan 1MB -Because 'the daemon compresses the echo too'
        $hop.CompressionRatio | Should -BeLessThan 0.25
        $hop.LinkBytesSent | Should -BeLessThan 1MB -Because 'the link sent the small form'
    }

    It 'sends random data as it is: no byte more on the wire' {
        $before = (Get-QmTunnelStats packed).Hops[0]
        $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1MB, 60)
        $result.Intact | Should -BeTrue -Because $result.ToString()
        $after = (Get-QmTunnelStats packed).Hops[0]
        ($after.DataBytesSent - $before.DataBytesSent) | Should -Be 1MB
        ($after.DataWireBytesSent - $before.DataWireBytesSent) | Should -Be 1MB
    }

    It 'loads K4os.Compression.LZ4 and ZstdSharp from the module folder beside pwsh''s own runtime assemblies, and Zstd works in this process too' {
        $zstd = New-QmTunnel packedZstd -Listen tcp://127.0.0.1:0 -Via (New-QmTunnelHop "qmt://127.0.0.1:$($serverB.Port)" -Compression Zstd -Credential $QmTestAdmin) -Target $echo.Uri |
            Start-QmTunnel -PassThru
        $result = [QmTunnel.PesterTools.EchoClient]::RunCompressible($zstd.BoundListen, 1MB, 60)
        $result.Intact | Should -BeTrue -Because $result.ToString()
        $hop = (Get-QmTunnelStats packedZstd).Hops[0]
        "$($hop.Compression)" | Should -Be 'Zstd'
        $hop.DataWireBytesSent | Should -BeLessThan 256KB

        $moduleDir = Split-Path (Get-Module qmTunnel).Path
        $loaded = @{}
        foreach ($assembly in [AppDomain]::CurrentDomain.GetAssemblies()) { $loaded[$assembly.GetName().Name] = $assembly }
        foreach ($name in 'K4os.Compression.LZ4', 'ZstdSharp') {
            $loaded[$name] | Should -Not -BeNullOrEmpty -Because "$name compresses the links of this process"
            Split-Path $loaded[$name].Location | Should -Be $moduleDir
            [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext($loaded[$name]).Name | Should -Be 'Default'
        }
        "$($loaded['K4os.Compression.LZ4'].GetName().Version)" | Should -Be '1.3.8.0'
        "$($loaded['ZstdSharp'].GetName().Version)" | Should -Be '0.8.8.0'
        # What they reference (System.Memory, System.Runtime.CompilerServices.Unsafe) is the runtime's own: the module
        # ships no copy that could clash with the one pwsh loaded.
        foreach ($name in 'System.Memory', 'System.Runtime.CompilerServices.Unsafe', 'System.Threading.Tasks.Extensions') {
            Join-Path $moduleDir "$name.dll" | Should -Not -Exist
            Join-Path $moduleDir 'daemon' "$name.dll" | Should -Not -Exist
        }
        $loaded['System.Memory'].Location | Should -BeLike ([System.Runtime.InteropServices.RuntimeEnvironment]::GetRuntimeDirectory() + '*')
        Join-Path $moduleDir 'daemon' 'K4os.Compression.LZ4.dll' | Should -Exist
        Join-Path $moduleDir 'daemon' 'ZstdSharp.dll' | Should -Exist
    }
}

# Helpers of Origin.Tests.ps1: dot-source them in its BeforeAll, after it set $echo, $addressB, $local, $remote and
# $userPassword (the helpers read them when called).

# A tunnel 'Name' on the side $On through B (so A and B both pin B), to the echo server.
function New-Twin([string]$Name, [hashtable]$On) {
    New-QmTunnel $Name -Listen tcp://127.0.0.1:0 -Via (New-QmTestHop $addressB) -Target $echo.Uri -Description initial @On
}

# 'Started' for a tunnel that listens, else its state.
function ConvertTo-TwinState($State) {
    if ("$State" -in 'Listening', 'Established') { 'Started' } else { "$State" }
}

function Get-TwinState([string]$Name, [hashtable]$On) {
    ConvertTo-TwinState (Get-QmTunnel $Name @On).State
}

# Descriptions that tell the two sides apart: 'here' where the objects come from, 'there' on the other.
function Set-TwinMarks([hashtable]$Here, [hashtable]$There) {
    foreach ($side in @(@{ On = $Here; Mark = 'here' }, @{ On = $There; Mark = 'there' })) {
        $on = $side.On
        Set-QmTunnel twin -Description $side.Mark @on
        Set-QmTunnelUser twin -Description $side.Mark @on
        Set-QmTunnelGroup Twins -Description $side.Mark @on
    }
}

# Starts the tunnel twin of side $On and carries $Count connections through it.
function Add-TwinConnection([hashtable]$On, [int]$Count) {
    $tunnel = Start-QmTunnel twin -PassThru @On
    for ($i = 0; $i -lt $Count; $i++) {
        $result = [QmTunnel.PesterTools.EchoClient]::Run($tunnel.BoundListen, 1000, 30)
        if (-not $result.Intact) { throw "A connection through twin failed: $result" }
    }
}

# The same state on both sides before each test: tunnel twin (stopped), user twin, group Twins, all described
# 'initial', no tunnel or user 'fresh', no group Spare, MaxManagementSessions 100.
function Initialize-Twins {
    foreach ($on in $local, $remote) {
        Get-QmTunnel -Name twin, fresh -ErrorAction SilentlyContinue @on | ForEach-Object { Remove-QmTunnel $_.Name @on }
        $null = New-Twin twin $on
        Get-QmTunnelUser -Name twin, fresh -ErrorAction SilentlyContinue @on | ForEach-Object { Remove-QmTunnelUser $_.Name @on }
        Get-QmTunnelGroup -Name Spare -ErrorAction SilentlyContinue @on | ForEach-Object { Remove-QmTunnelGroup $_.Name @on }
        if (-not (Get-QmTunnelGroup -Name Twins -ErrorAction SilentlyContinue @on)) {
            $null = New-QmTunnelGroup Twins @on
        }
        Set-QmTunnelGroup Twins -Description initial @on
        $null = New-QmTunnelUser twin -Group Twins -Password $userPassword -Description initial @on
        Set-QmTunnelServerConfig -MaxManagementSessions 100 @on
    }
}

# One error of id $Id, and nothing else.
function Assert-OneError($Result, [string]$Id) {
    @($Result.Errors).Count | Should -Be 1 -Because "one error: $($Result.Errors | Out-String)"
    $Result.Errors[0].FullyQualifiedErrorId | Should -BeLike "$Id,*"
    $Result.Terminating | Should -BeFalse
}

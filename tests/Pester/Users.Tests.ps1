#Requires -Version 7.4
<#
    Users, groups and the server configuration through the BUILT module (out/qmTunnel, or $env:QMTUNNEL_MODULE_PATH),
    on a real in-process server (port 0, a temp data path):
    - New/Get/Set/Remove-QmTunnelUser and -QmTunnelGroup round trips, kept across Stop/Start-QmTunnelServer;
    - the password given as a SecureString or a PSCredential is what the server stores a verifier of (checked in the
      database file once the server has stopped), and no output carries a secret;
    - wildcards, the pipeline (Get-QmTunnelUser b* | Set-QmTunnelUser -Enabled:$false), -WhatIf changes nothing;
    - errors with their ids and categories: UserNotFound, AllowRuleInvalid, PasswordInvalid, AdministratorRequired,
      GroupNotEmpty, ServerSettingInvalid, ServerNotRunning;
    - Get/Set-QmTunnelServerConfig round trip and persistence (the limits of sessions and links included, range-checked);
      tab completion of user and group names.
    The server may create a default admin user on its first start; the tests leave it alone except where they must
    disable every other administrator (and enable it again).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestCommon.ps1')
    Import-QmTestModule -Force

    $run = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $dataPath = Join-Path ([IO.Path]::GetTempPath()) "qmtunnel-pester-users-$run"

    # Exactly one error: id first in FullyQualifiedErrorId, the category, the target, a message.
    function Assert-QmError([object]$Captured, [string]$Id, [string]$Category, [object]$Target, [string]$MessagePattern) {
        $Captured.Errors.Count | Should -Be 1 -Because "exactly one error is expected, got: $($Captured.Errors | ForEach-Object { "[$($_.FullyQualifiedErrorId)] $_" })"
        $record = $Captured.Errors[0]
        $record.FullyQualifiedErrorId | Should -Match "^$([regex]::Escape($Id))(,|$)"
        "$($record.CategoryInfo.Category)" | Should -Be $Category
        if ($PSBoundParameters.ContainsKey('Target')) {
            "$($record.TargetObject)" | Should -Be "$Target"
        }
        $record.Exception.Message | Should -Not -BeNullOrEmpty
        if ($MessagePattern) {
            $record.Exception.Message | Should -Match $MessagePattern
        }
    }

    function New-Secure([string]$Text) { ConvertTo-SecureString -String $Text -AsPlainText -Force }

    # The stored user (with its password verifier), read from the database file while the server is stopped; the
    # server is started again on the same data path before it returns.
    function Get-StoredUser([string]$Name) {
        Stop-QmTunnelServer
        $store = [QmTunnel.Engine.Storage.TunnelStore]::Open($dataPath)
        try {
            $store.Users.GetUser($Name)
        }
        finally {
            $store.Dispose()
            $script:server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru -WarningAction SilentlyContinue
        }
    }

    # Stops the server and starts it again on the same data path without -PasswordIterations (which TestCommon.ps1
    # makes a default of every Start-QmTunnelServer, and which would overwrite the saved setting).
    function Restart-KeepingSettings {
        Stop-QmTunnelServer
        $key = 'Start-QmTunnelServer:PasswordIterations'
        $default = $global:PSDefaultParameterValues[$key]
        $global:PSDefaultParameterValues.Remove($key)
        try {
            $script:server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru -WarningAction SilentlyContinue
        }
        finally {
            if ($null -ne $default) { $global:PSDefaultParameterValues[$key] = $default }
        }
    }

    # Names this file created (the server's own defaults, if any, are left out).
    function Get-MyUserName { @(Get-QmTunnelUser | Where-Object Name -NotIn $defaultUsers | ForEach-Object Name) }
}

AfterAll {
    Get-QmTunnelServer | Where-Object { -not $_.IsDaemon -and $_.DataPath -eq $dataPath } | Stop-QmTunnelServer -ErrorAction SilentlyContinue
    Remove-Item -LiteralPath $dataPath -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Without a server' {
    BeforeAll {
        $leftover = @(Get-QmTunnelServer | Where-Object { -not $_.IsDaemon })
        if ($leftover) {
            throw "An in-process server is already running ($($leftover[0].Address)): a test that ran earlier in this process did not stop it."
        }
    }

    It '<Command> reports ServerNotRunning' -ForEach @(
        @{ Command = 'Get-QmTunnelUser'; Script = { Get-QmTunnelUser } }
        @{ Command = 'New-QmTunnelUser'; Script = { New-QmTunnelUser someone Ops } }
        @{ Command = 'Set-QmTunnelUser'; Script = { Set-QmTunnelUser someone -Enabled:$false } }
        @{ Command = 'Remove-QmTunnelUser'; Script = { Remove-QmTunnelUser someone } }
        @{ Command = 'Get-QmTunnelGroup'; Script = { Get-QmTunnelGroup } }
        @{ Command = 'New-QmTunnelGroup'; Script = { New-QmTunnelGroup Ops } }
        @{ Command = 'Set-QmTunnelGroup'; Script = { Set-QmTunnelGroup Ops -Rights None } }
        @{ Command = 'Remove-QmTunnelGroup'; Script = { Remove-QmTunnelGroup Ops } }
        @{ Command = 'Get-QmTunnelServerConfig'; Script = { Get-QmTunnelServerConfig } }
        @{ Command = 'Set-QmTunnelServerConfig'; Script = { Set-QmTunnelServerConfig -AllowPlainLinks } }
    ) {
        $captured = Invoke-Capture $Script
        Assert-QmError $captured -Id 'ServerNotRunning' -Category 'ResourceUnavailable' -MessagePattern 'Start-QmTunnelServer'
        $captured.Terminating | Should -BeTrue
    }
}

Describe 'Users, groups and server configuration' {
    BeforeAll {
        $script:server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru -WarningAction SilentlyContinue
        $defaultUsers = @(Get-QmTunnelUser | ForEach-Object Name)
        $defaultGroups = @(Get-QmTunnelGroup | ForEach-Object Name)
        # Cheap hashes for the test (the lowest count the server accepts).
        Set-QmTunnelServerConfig -PasswordIterations 100000
        $thumbprint = '5e:3f:2b:7a:4c:1d:9e:8f:0a:6b:5c:4d:3e:2f:1a:0b:9c:8d:7e:6f:5a:4b:3c:2d:1e:0f:9a:8b:7c:6d:5e:4f'
    }

    Context 'Groups' {
        It 'New-QmTunnelGroup creates a group with the rights and rules given and outputs it' {
            $group = New-QmTunnelGroup Ops -Rights CreateTunnels, AdministerGroupTunnels -AllowRule ' L#127.0.0.1:*#*#*:* ', 'R#*:*#*#127.0.0.1:*' -Description 'operators'
            $group | Should -BeOfType ([QmTunnel.Engine.Management.GroupInfo])
            $group.Name | Should -Be 'Ops'
            $group.Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]'CreateTunnels, AdministerGroupTunnels')
            $group.AllowRules | Should -Be @('L#127.0.0.1:*#*#*:*', 'R#*:*#*#127.0.0.1:*')
            $group.Description | Should -Be 'operators'
            $group.UserCount | Should -Be 0
        }

        It 'New-QmTunnelGroup without -Rights and -AllowRule gives nothing, and warns when tunnels are allowed but no rule' {
            $bare = New-QmTunnelGroup Guests -WarningVariable warnings -WarningAction SilentlyContinue
            $bare.Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]::None)
            $bare.AllowRules | Should -BeNullOrEmpty
            $warnings | Should -BeNullOrEmpty
            $null = New-QmTunnelGroup Builders -Rights CreateTunnels -WarningVariable warnings -WarningAction SilentlyContinue
            "$warnings" | Should -Match 'no allow-rule'
        }

        It 'Get-QmTunnelGroup gets by literal name (any case) and by wildcard' {
            (Get-QmTunnelGroup ops).Name | Should -Be 'Ops'
            @(Get-QmTunnelGroup 'Gu*', 'B*' | ForEach-Object Name) | Should -Be @('Guests', 'Builders')
            @(Get-QmTunnelGroup 'Nomatch*') | Should -BeNullOrEmpty
            @(Get-QmTunnelGroup | Where-Object Name -NotIn $defaultGroups | ForEach-Object Name) | Should -Be @('Builders', 'Guests', 'Ops')
        }

        It 'Set-QmTunnelGroup changes only what is given' {
            $changed = Set-QmTunnelGroup Builders -AllowRule 'L#*:*#*#*:*' -PassThru
            $changed.AllowRules | Should -Be @('L#*:*#*#*:*')
            $changed.Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]::CreateTunnels)
            $changed = Get-QmTunnelGroup Builders | Set-QmTunnelGroup -AllowRule @() -Description 'no rules' -PassThru
            $changed.AllowRules | Should -BeNullOrEmpty
            $changed.Description | Should -Be 'no rules'
            (Set-QmTunnelGroup Builders -Rights CreateTunnels, AdministerAllTunnels -PassThru).Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]'CreateTunnels, AdministerAllTunnels')
        }

        It 'a bad allow-rule stops the cmdlet with AllowRuleInvalid naming the rule and the format, and nothing changes' {
            $captured = Invoke-Capture { New-QmTunnelGroup Lab -Rights CreateTunnels -AllowRule 'L#*:*#*#*:*', 'X#1' }
            Assert-QmError $captured -Id 'AllowRuleInvalid' -Category 'InvalidArgument' -Target 'X#1' -MessagePattern "'X#1'.*L#bind-host:bind-port"
            $captured.Terminating | Should -BeTrue
            Get-QmTunnelGroup 'Lab*' | Should -BeNullOrEmpty

            $captured = Invoke-Capture { Set-QmTunnelGroup Ops -AllowRule 'L#*:*' -Description 'changed' }
            Assert-QmError $captured -Id 'AllowRuleInvalid' -Category 'InvalidArgument' -Target 'L#*:*'
            (Get-QmTunnelGroup Ops).Description | Should -Be 'operators'
        }

        It 'a literal unknown name reports GroupNotFound' {
            $captured = Invoke-Capture { Get-QmTunnelGroup nosuchgroup }
            Assert-QmError $captured -Id 'GroupNotFound' -Category 'ObjectNotFound' -Target 'nosuchgroup' -MessagePattern 'New-QmTunnelGroup'
            $captured = Invoke-Capture { Remove-QmTunnelGroup nosuchgroup }
            Assert-QmError $captured -Id 'GroupNotFound' -Category 'ObjectNotFound' -Target 'nosuchgroup'
        }
    }

    Context 'Users' {
        It 'New-QmTunnelUser -Password creates a user that has a password, and outputs it without secrets' {
            $user = New-QmTunnelUser bob ops -Password (New-Secure 'bob-password-1') -Description 'Bob'
            $user | Should -BeOfType ([QmTunnel.Engine.Management.UserInfo])
            $user.Name | Should -Be 'bob'
            $user.Group | Should -Be 'Ops'
            $user.Enabled | Should -BeTrue
            $user.HasPassword | Should -BeTrue
            $user.CertificateThumbprint | Should -BeNullOrEmpty
            $user.Description | Should -Be 'Bob'
            $user.PSObject.Properties.Name | Should -Not -Contain 'PasswordHash'
            ($user | Format-List * | Out-String) | Should -Not -Match 'scram'
        }

        It 'New-QmTunnelUser -Credential takes the name and the password from the credential' {
            $user = New-QmTunnelUser -Credential ([pscredential]::new('bill', (New-Secure 'bill-password-1'))) -Group Ops
            $user.Name | Should -Be 'bill'
            $user.HasPassword | Should -BeTrue
        }

        It 'New-QmTunnelUser with a certificate only, disabled' {
            $user = New-QmTunnelUser carl -Group Guests -CertificateThumbprint $thumbprint -Enabled:$false -WarningVariable warnings -WarningAction SilentlyContinue
            $user.Enabled | Should -BeFalse
            $user.HasPassword | Should -BeFalse
            $user.CertificateThumbprint | Should -Be '5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F'
            $warnings | Should -BeNullOrEmpty
        }

        It 'New-QmTunnelUser without password or certificate warns that the user cannot log in' {
            $user = New-QmTunnelUser dora Guests -WarningVariable warnings -WarningAction SilentlyContinue
            $user.HasPassword | Should -BeFalse
            "$warnings" | Should -Match 'cannot log in'
        }

        It 'New-QmTunnelUser -WhatIf creates nothing' {
            New-QmTunnelUser ghost Ops -Password (New-Secure 'ghost-password') -WhatIf | Should -BeNullOrEmpty
            Get-QmTunnelUser 'ghost*' | Should -BeNullOrEmpty
        }

        It 'Get-QmTunnelUser selects by wildcard, literal name and group, each user once' {
            @(Get-QmTunnelUser 'b*' | ForEach-Object Name) | Should -Be @('bill', 'bob')
            @(Get-QmTunnelUser 'B*', 'bob', 'CARL' | ForEach-Object Name) | Should -Be @('bill', 'bob', 'carl')
            @(Get-QmTunnelUser -Group guests | ForEach-Object Name) | Should -Be @('carl', 'dora')
            @(Get-QmTunnelUser 'b*' -Group Guests) | Should -BeNullOrEmpty
            Get-MyUserName | Should -Be @('bill', 'bob', 'carl', 'dora')
            (Get-QmTunnelGroup Ops).UserCount | Should -Be 2
        }

        It 'the table view shows the user columns and no secret' {
            $text = Get-QmTunnelUser | Out-String -Width 200
            $text | Should -Match 'Name\s+Group\s+Enabled\s+HasPassword\s+CertificateThumbprint'
            $text | Should -Match '5E3F2B7A4C1D9E8F0A6B5C4D3E2F1A0B9C8D7E6F5A4B3C2D1E0F9A8B7C6D5E4F'
            $text | Should -Not -Match 'scram'
            (Get-QmTunnelGroup | Out-String -Width 200) | Should -Match 'Name\s+Rights\s+UserCount\s+AllowRules'
        }

        It 'Set-QmTunnelUser changes only what is given; -CertificateThumbprint '''' removes the certificate' {
            $user = Set-QmTunnelUser carl -Description 'certificate revoked' -CertificateThumbprint '' -PassThru
            $user.CertificateThumbprint | Should -BeNullOrEmpty
            $user.Description | Should -Be 'certificate revoked'
            $user.Enabled | Should -BeFalse
            $user.Group | Should -Be 'Guests'
            (Set-QmTunnelUser carl -Group Ops -PassThru).Group | Should -Be 'Ops'
            Set-QmTunnelUser carl -Enabled | Should -BeNullOrEmpty
            (Get-QmTunnelUser carl).Enabled | Should -BeTrue
        }

        It 'the pipeline: Get-QmTunnelUser b* | Set-QmTunnelUser -Enabled:$false disables exactly those' {
            Get-QmTunnelUser b* | Set-QmTunnelUser -Enabled:$false
            @(Get-QmTunnelUser | Where-Object { -not $_.Enabled } | ForEach-Object Name) | Should -Be @('bill', 'bob')
            $out = Get-QmTunnelUser b* | Set-QmTunnelUser -Enabled -PassThru
            @($out | ForEach-Object Name) | Should -Be @('bill', 'bob')
            @($out | Where-Object Enabled).Count | Should -Be 2
        }

        It '-WhatIf on Set and Remove changes nothing' {
            Set-QmTunnelUser bob -Enabled:$false -Description 'what if' -WhatIf
            Remove-QmTunnelUser bob, bill -WhatIf
            Get-QmTunnelUser b* | Remove-QmTunnelUser -WhatIf
            Remove-QmTunnelGroup Guests -WhatIf
            Set-QmTunnelGroup Ops -Rights None -WhatIf
            $bob = Get-QmTunnelUser bob
            $bob.Enabled | Should -BeTrue
            $bob.Description | Should -Be 'Bob'
            Get-MyUserName | Should -Be @('bill', 'bob', 'carl', 'dora')
            (Get-QmTunnelGroup Ops).Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]'CreateTunnels, AdministerGroupTunnels')
            (Get-QmTunnelGroup Guests).Name | Should -Be 'Guests'
        }

        It 'the password reaches the server intact: a verifier of it is stored, with the saved iteration count' {
            $stored = Get-StoredUser bob
            [QmTunnel.Engine.Security.PasswordHasher]::Verify('bob-password-1', $stored.PasswordHash) | Should -BeTrue
            [QmTunnel.Engine.Security.PasswordHasher]::Parse($stored.PasswordHash).Iterations | Should -Be 100000
            [QmTunnel.Engine.Security.PasswordHasher]::Verify('bill-password-1', (Get-StoredUser bill).PasswordHash) | Should -BeTrue

            Set-QmTunnelUser bob -Password (New-Secure 'a new passphrase for bob')
            $stored = Get-StoredUser bob
            [QmTunnel.Engine.Security.PasswordHasher]::Verify('a new passphrase for bob', $stored.PasswordHash) | Should -BeTrue
            [QmTunnel.Engine.Security.PasswordHasher]::Verify('bob-password-1', $stored.PasswordHash) | Should -BeFalse
        }

        It 'users and groups are kept across Stop/Start-QmTunnelServer' {
            $before = Get-QmTunnelUser | Where-Object Name -NotIn $defaultUsers | ForEach-Object { "$($_.Name)|$($_.Group)|$($_.Enabled)|$($_.HasPassword)|$($_.CertificateThumbprint)|$($_.Description)|$($_.CreatedAt.ToUnixTimeMilliseconds())" }
            $groupsBefore = Get-QmTunnelGroup | ForEach-Object { "$($_.Name)|$($_.Rights)|$($_.AllowRules -join ' ')|$($_.Description)|$($_.UserCount)" }
            Stop-QmTunnelServer
            $script:server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru -WarningAction SilentlyContinue
            $after = Get-QmTunnelUser | Where-Object Name -NotIn $defaultUsers | ForEach-Object { "$($_.Name)|$($_.Group)|$($_.Enabled)|$($_.HasPassword)|$($_.CertificateThumbprint)|$($_.Description)|$($_.CreatedAt.ToUnixTimeMilliseconds())" }
            $groupsAfter = Get-QmTunnelGroup | ForEach-Object { "$($_.Name)|$($_.Rights)|$($_.AllowRules -join ' ')|$($_.Description)|$($_.UserCount)" }
            $after | Should -Be $before
            $groupsAfter | Should -Be $groupsBefore
            $before.Count | Should -Be 4
        }

        It 'completes user and group names' {
            $users = (TabExpansion2 -inputScript 'Get-QmTunnelUser b' -cursorColumn 'Get-QmTunnelUser b'.Length).CompletionMatches.CompletionText
            $users | Should -Be @('bill', 'bob')
            $groups = (TabExpansion2 -inputScript 'Set-QmTunnelUser bob -Group o' -cursorColumn 'Set-QmTunnelUser bob -Group o'.Length).CompletionMatches.CompletionText
            $groups | Should -Be @('Ops')
            $groups = (TabExpansion2 -inputScript 'Remove-QmTunnelGroup G' -cursorColumn 'Remove-QmTunnelGroup G'.Length).CompletionMatches.CompletionText
            $groups | Should -Be @('Guests')
        }
    }

    Context 'Refusals' {
        It '<Command> of an unknown user reports UserNotFound with the name as target' -ForEach @(
            @{ Command = 'Get-QmTunnelUser'; Script = { Get-QmTunnelUser nobody } }
            @{ Command = 'Set-QmTunnelUser'; Script = { Set-QmTunnelUser nobody -Enabled:$false } }
            @{ Command = 'Remove-QmTunnelUser'; Script = { Remove-QmTunnelUser nobody } }
        ) {
            $captured = Invoke-Capture $Script
            Assert-QmError $captured -Id 'UserNotFound' -Category 'ObjectNotFound' -Target 'nobody' -MessagePattern 'Get-QmTunnelUser'
            $captured.Terminating | Should -BeFalse
        }

        It 'Get-QmTunnelUser goes on after an unknown name' {
            $captured = Invoke-Capture { Get-QmTunnelUser nobody, bob }
            Assert-QmError $captured -Id 'UserNotFound' -Category 'ObjectNotFound' -Target 'nobody'
            @($captured.Output | ForEach-Object Name) | Should -Be @('bob')
        }

        It 'Get-QmTunnelUser -Group of an unknown group reports GroupNotFound' {
            $captured = Invoke-Capture { Get-QmTunnelUser -Group nosuchgroup }
            Assert-QmError $captured -Id 'GroupNotFound' -Category 'ObjectNotFound' -Target 'nosuchgroup'
        }

        It 'a short password reports PasswordInvalid and creates or changes nothing' {
            $captured = Invoke-Capture { New-QmTunnelUser eve Ops -Password (New-Secure 'short') }
            Assert-QmError $captured -Id 'PasswordInvalid' -Category 'InvalidArgument' -Target 'eve' -MessagePattern '5 characters long: use 8 to 1024'
            Get-QmTunnelUser 'eve*' | Should -BeNullOrEmpty
            $captured = Invoke-Capture { Set-QmTunnelUser bob -Password (New-Secure '1234567') -Description 'changed' }
            Assert-QmError $captured -Id 'PasswordInvalid' -Category 'InvalidArgument' -Target 'bob'
            (Get-QmTunnelUser bob).Description | Should -Be 'Bob'
        }

        It 'an existing name reports UserNameInUse; a name that differs from the credential''s is refused' {
            $captured = Invoke-Capture { New-QmTunnelUser BOB Ops -Password (New-Secure 'another-password') }
            Assert-QmError $captured -Id 'UserNameInUse' -Category 'ResourceExists' -Target 'BOB'
            $captured = Invoke-Capture { New-QmTunnelUser erin Ops -Credential ([pscredential]::new('frank', (New-Secure 'frank-password'))) }
            Assert-QmError $captured -Id 'UserSettingInvalid' -Category 'InvalidArgument' -Target 'erin' -MessagePattern 'frank'
            Get-QmTunnelUser 'erin*', 'frank*' | Should -BeNullOrEmpty
        }

        It 'removing a group that has users reports GroupNotEmpty naming them' {
            $captured = Invoke-Capture { Remove-QmTunnelGroup Ops }
            Assert-QmError $captured -Id 'GroupNotEmpty' -Category 'InvalidOperation' -Target 'Ops' -MessagePattern 'bill, bob, carl'
            (Get-QmTunnelGroup Ops).UserCount | Should -Be 3
        }

        It 'removing, disabling or demoting the last administrator reports AdministratorRequired' {
            $null = New-QmTunnelGroup Root -Rights All -AllowRule 'L#*:*#*#*:*'
            $null = New-QmTunnelUser root Root -Password (New-Secure 'root-password-1')
            # Every other user who could manage the server (the default admin, say) is disabled for this test.
            $adminGroups = @(Get-QmTunnelGroup | Where-Object { $_.Rights.HasFlag([QmTunnel.Engine.Security.GroupRights]::ChangeServerConfiguration) } | ForEach-Object Name)
            $others = @(Get-QmTunnelUser | Where-Object { $_.Enabled -and $_.Name -ne 'root' -and $_.Group -in $adminGroups })
            $others | Set-QmTunnelUser -Enabled:$false
            try {
                $captured = Invoke-Capture { Remove-QmTunnelUser root }
                Assert-QmError $captured -Id 'AdministratorRequired' -Category 'InvalidOperation' -MessagePattern 'ChangeServerConfiguration'
                $captured = Invoke-Capture { Set-QmTunnelUser root -Enabled:$false }
                Assert-QmError $captured -Id 'AdministratorRequired' -Category 'InvalidOperation'
                $captured = Invoke-Capture { Set-QmTunnelGroup Root -Rights CreateTunnels }
                Assert-QmError $captured -Id 'AdministratorRequired' -Category 'InvalidOperation'
                (Get-QmTunnelUser root).Enabled | Should -BeTrue
                (Get-QmTunnelGroup Root).Rights | Should -Be ([QmTunnel.Engine.Security.GroupRights]::All)
            }
            finally {
                $others | Set-QmTunnelUser -Enabled
            }
        }
    }

    Context 'Removal' {
        It 'Remove-QmTunnelUser removes by name and from the pipeline; Remove-QmTunnelGroup then removes the empty groups' {
            Remove-QmTunnelUser dora, root
            Get-QmTunnelUser b*, carl | Remove-QmTunnelUser
            Get-MyUserName | Should -BeNullOrEmpty
            Get-QmTunnelGroup Ops, Guests, Builders, Root | Remove-QmTunnelGroup
            @(Get-QmTunnelGroup | Where-Object Name -NotIn $defaultGroups) | Should -BeNullOrEmpty
            Stop-QmTunnelServer
            $script:server = Start-QmTunnelServer -Port 0 -DataPath $dataPath -PassThru -WarningAction SilentlyContinue
            Get-MyUserName | Should -BeNullOrEmpty
            @(Get-QmTunnelGroup | ForEach-Object Name) | Should -Be $defaultGroups
        }
    }

    Context 'Server configuration' {
        It 'Get-QmTunnelServerConfig describes the running server' {
            $config = Get-QmTunnelServerConfig
            $config | Should -BeOfType ([QmTunnel.Engine.Management.ServerConfig])
            $config.Port | Should -Be $server.Port
            $config.ListenAddress | Should -Be '127.0.0.1'
            $config.DataPath | Should -Be $dataPath
            $config.CertificateThumbprint | Should -Be $server.CertificateThumbprint
            $config.AllowPlainLinks | Should -BeFalse
            $config.PasswordIterations | Should -Be 100000
            ($config | Out-String) | Should -Match 'PasswordIterations\s*:\s*100000'
        }

        It 'Set-QmTunnelServerConfig -WhatIf changes nothing' {
            Set-QmTunnelServerConfig -AllowPlainLinks -PasswordIterations 200000 -WhatIf | Should -BeNullOrEmpty
            (Get-QmTunnelServerConfig).AllowPlainLinks | Should -BeFalse
            (Get-QmTunnelServerConfig).PasswordIterations | Should -Be 100000
        }

        It 'Set-QmTunnelServerConfig applies at once and is kept across a restart' {
            (Get-QmTunnelServerConfig).MaxManagementSessions | Should -Be 100
            $config = Set-QmTunnelServerConfig -AllowPlainLinks -PasswordIterations 300000 -MaxManagementSessions 5 -PassThru
            $config.AllowPlainLinks | Should -BeTrue
            $config.PasswordIterations | Should -Be 300000
            $config.MaxManagementSessions | Should -Be 5
            (Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }).AllowPlainLinks | Should -BeTrue
            Restart-KeepingSettings
            $server.AllowPlainLinks | Should -BeTrue
            (Get-QmTunnelServerConfig).PasswordIterations | Should -Be 300000
            (Get-QmTunnelServerConfig).MaxManagementSessions | Should -Be 5
            Set-QmTunnelServerConfig -AllowPlainLinks:$false
            (Get-QmTunnelServerConfig).AllowPlainLinks | Should -BeFalse
            (Get-QmTunnelServerConfig).PasswordIterations | Should -Be 300000
        }

        It 'the limits of sessions and links are shown, set with their own types, and kept across a restart' {
            $config = Get-QmTunnelServerConfig
            $config.MaxManagementSessionsPerUser | Should -Be 10
            $config.ManagementIdleTimeout | Should -Be ([timespan]'00:15:00')
            $config.MaxStreamsPerLink | Should -Be 1024
            $config.LinkIdleTimeout | Should -Be ([timespan]'00:10:00')
            ($config | Out-String) | Should -Match 'MaxStreamsPerLink\s*:\s*1024'
            Set-QmTunnelServerConfig -MaxStreamsPerLink 64 -WhatIf | Should -BeNullOrEmpty
            (Get-QmTunnelServerConfig).MaxStreamsPerLink | Should -Be 1024

            $changed = Set-QmTunnelServerConfig -MaxManagementSessionsPerUser 3 -ManagementIdleTimeout 00:05:00 `
                -MaxStreamsPerLink 2048 -LinkIdleTimeout (New-TimeSpan -Minutes 30) -PassThru
            $changed.MaxManagementSessionsPerUser | Should -Be 3
            $changed.ManagementIdleTimeout | Should -Be ([timespan]'00:05:00')
            $changed.MaxStreamsPerLink | Should -Be 2048
            $changed.LinkIdleTimeout | Should -Be ([timespan]'00:30:00')
            Restart-KeepingSettings
            $saved = Get-QmTunnelServerConfig
            $saved.MaxManagementSessionsPerUser | Should -Be 3
            $saved.ManagementIdleTimeout | Should -Be ([timespan]'00:05:00')
            $saved.MaxStreamsPerLink | Should -Be 2048
            $saved.LinkIdleTimeout | Should -Be ([timespan]'00:30:00')
        }

        It 'the links per server and the buffered-bytes budget are shown, set, counted in Get-QmTunnelServer and kept across a restart' {
            $config = Get-QmTunnelServerConfig
            $config.MaxLinks | Should -Be 1000
            $config.MaxBufferedMB | Should -Be 512
            ($config | Out-String) | Should -Match 'MaxLinks\s*:\s*1000'
            ($config | Out-String) | Should -Match 'MaxBufferedMB\s*:\s*512'
            Set-QmTunnelServerConfig -MaxLinks 20 -MaxBufferedMB 64 -WhatIf | Should -BeNullOrEmpty
            (Get-QmTunnelServerConfig).MaxLinks | Should -Be 1000

            $changed = Set-QmTunnelServerConfig -MaxLinks 20 -MaxBufferedMB 64 -PassThru
            $changed.MaxLinks | Should -Be 20
            $changed.MaxBufferedMB | Should -Be 64
            $server = Get-QmTunnelServer | Where-Object { -not $_.IsDaemon }
            foreach ($counter in 'LinksRefused', 'StreamsRefused', 'BufferedBytes', 'BufferedBytesPeak', 'BufferWaits', 'PendingLinksTimedOut') {
                $server.$counter | Should -BeOfType [long]
                ($server | Format-List | Out-String) | Should -Match "$counter\s*:"
            }
            $server.LinksRefused | Should -Be 0
            Restart-KeepingSettings
            $saved = Get-QmTunnelServerConfig
            $saved.MaxLinks | Should -Be 20
            $saved.MaxBufferedMB | Should -Be 64
        }

        It '-<Name> <Value> out of range reports ServerSettingInvalid naming the range and changes nothing' -ForEach @(
            @{ Name = 'MaxStreamsPerLink'; Value = 8; Range = '16 to 100000' }
            @{ Name = 'MaxLinks'; Value = 9; Range = '10 to 100000' }
            @{ Name = 'MaxBufferedMB'; Value = 65537; Range = '16 to 65536' }
            @{ Name = 'MaxManagementSessionsPerUser'; Value = 0; Range = '1 to 10000' }
            @{ Name = 'LinkIdleTimeout'; Value = 5; Range = '00:01:00 to 7\.00:00:00' }  # a plain 5 is 5 ticks
            @{ Name = 'ManagementIdleTimeout'; Value = [timespan]'8.00:00:00'; Range = '00:01:00 to 7\.00:00:00' }
        ) {
            $before = Get-QmTunnelServerConfig
            $arguments = @{ $Name = $Value }
            $captured = Invoke-Capture { Set-QmTunnelServerConfig @arguments -MaxManagementSessions 7 }
            Assert-QmError $captured -Id 'ServerSettingInvalid' -Category 'InvalidArgument' -MessagePattern "$Name .*$Range"
            $after = Get-QmTunnelServerConfig
            $after.MaxManagementSessions | Should -Be $before.MaxManagementSessions
            $after.$Name | Should -Be $before.$Name
        }

        It 'an iteration count out of range reports ServerSettingInvalid and changes nothing' {
            $captured = Invoke-Capture { Set-QmTunnelServerConfig -PasswordIterations 1000 -AllowPlainLinks }
            Assert-QmError $captured -Id 'ServerSettingInvalid' -Category 'InvalidArgument' -Target 1000 -MessagePattern '100000 to 10000000'
            (Get-QmTunnelServerConfig).AllowPlainLinks | Should -BeFalse
            (Get-QmTunnelServerConfig).PasswordIterations | Should -Be 300000
        }
    }
}

using QmTunnel.Engine.Errors;
namespace QmTunnel.Engine.Security;

/// <summary>
/// Error ids of users, groups, passwords and allow-rules, as <c>&lt;Noun&gt;&lt;Reason&gt;</c>, beside
/// <see cref="Errors.ErrorIds"/>. They are a contract like those: add, never rename.
/// </summary>
public static class SecurityErrorIds
{
    public const string UserNotFound = nameof(UserNotFound);
    public const string UserNameInUse = nameof(UserNameInUse);
    /// <summary>A user failed <see cref="User.Validate"/> (the message lists every problem).</summary>
    public const string UserSettingInvalid = nameof(UserSettingInvalid);
    /// <summary>Another user already authenticates with the same client certificate.</summary>
    public const string UserCertificateInUse = nameof(UserCertificateInUse);
    public const string GroupNotFound = nameof(GroupNotFound);
    public const string GroupNameInUse = nameof(GroupNameInUse);
    /// <summary>A group failed <see cref="Group.Validate"/> (the message lists every problem).</summary>
    public const string GroupSettingInvalid = nameof(GroupSettingInvalid);
    /// <summary>A group that still has users cannot be removed.</summary>
    public const string GroupNotEmpty = nameof(GroupNotEmpty);
    /// <summary>The change would leave no enabled user that can log in and change the server configuration.</summary>
    public const string AdministratorRequired = nameof(AdministratorRequired);
    /// <summary>Users and groups keep their name (tunnels refer to their owner by name).</summary>
    public const string RenameNotSupported = nameof(RenameNotSupported);
    public const string AllowRuleInvalid = nameof(AllowRuleInvalid);
    /// <summary>A stored password verifier is not in the format <see cref="PasswordHasher"/> writes.</summary>
    public const string PasswordHashInvalid = nameof(PasswordHashInvalid);
    /// <summary>The server's password challenge is outside what a client accepts (iterations, salt, nonce).</summary>
    public const string AuthenticationChallengeInvalid = nameof(AuthenticationChallengeInvalid);
    /// <summary>The server's signature at the end of a password login is wrong: it does not know the user's verifier.</summary>
    public const string ServerSignatureInvalid = nameof(ServerSignatureInvalid);
    /// <summary>The caller's group lacks the right an operation needs (users, groups and server configuration: ChangeServerConfiguration).</summary>
    public const string PermissionDenied = nameof(PermissionDenied);
    /// <summary>A new password is too short or too long (8 to 1024 characters).</summary>
    public const string PasswordInvalid = nameof(PasswordInvalid);
    /// <summary>A server configuration value is out of range (Set-QmTunnelServerConfig); same id as the module's for server options.</summary>
    public const string ServerSettingInvalid = nameof(ServerSettingInvalid);
    /// <summary>A user that still owns tunnels cannot be removed (a new user of the same name would inherit them).</summary>
    public const string UserHasTunnels = nameof(UserHasTunnels);
}

using System.Management.Automation;
using System.Security;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnelUser: adds a user to a group of the server (-Session, or the in-process one) and outputs it (like
/// New-Item). The password comes as a SecureString (-Password) or with the user name in a PSCredential (-Credential);
/// it is turned into clear text only for the engine to hash it. A user without password and certificate is created with
/// a warning: it cannot log in until Set-QmTunnelUser gives it one. Each user from the pipeline (Name and Group by
/// property name, e.g. from Import-Csv) is created on its own.
/// </summary>
[Cmdlet(VerbsCommon.New, "QmTunnelUser", SupportsShouldProcess = true, DefaultParameterSetName = ByPassword, HelpUri = HelpLinks.Base + "New-QmTunnelUser.md")]
[OutputType(typeof(UserInfo))]
public sealed class NewQmTunnelUserCommand : ServerCmdlet
{
    private const string ByPassword = nameof(ByPassword);
    private const string ByCredential = nameof(ByCredential);

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByPassword, ValueFromPipelineByPropertyName = true)]
    [Parameter(Position = 0, ParameterSetName = ByCredential, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(GroupNameCompleter))]
    public string Group { get; set; } = null!;

    [Parameter(ParameterSetName = ByPassword)]
    [ValidateNotNull]
    public SecureString? Password { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = ByCredential)]
    [ValidateNotNull]
    [Credential]
    public PSCredential Credential { get; set; } = null!;

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificateThumbprint { get; set; }

    /// <summary>-Enabled:$false creates the user disabled (it cannot log in until Set-QmTunnelUser -Enabled); enabled otherwise.</summary>
    [Parameter]
    public SwitchParameter Enabled { get; set; }

    /// <summary>The user's state: enabled unless -Enabled:$false was given.</summary>
    private bool EnabledSetting => !MyInvocation.BoundParameters.ContainsKey(nameof(Enabled)) || Enabled.IsPresent;

    [Parameter]
    [AllowEmptyString]
    public string? Description { get; set; }

    protected override void ProcessRecord()
    {
        var name = Name;
        if (ParameterSetName == ByCredential)
        {
            if (name is null)
            {
                name = Credential.UserName;
            }
            else if (!string.Equals(name, Credential.UserName, StringComparison.OrdinalIgnoreCase))
            {
                WriteError(NewErrorRecord(SecurityErrorIds.UserSettingInvalid, QmErrorKind.InvalidArgument, name,
                    $"-Name '{name}' and the user name of -Credential '{Credential.UserName}' differ. Give one of them, or the same name in both."));
                return;
            }
        }
        var password = ParameterSetName == ByCredential ? Credential.Password : Password;
        if (!ShouldProcess($"user '{name}' in group '{Group}'{OnServer}", "Create"))
        {
            return;
        }
        try
        {
            var user = password is null
                ? Wait(TargetServer.NewUserAsync(name!, Group, null, CertificateThumbprint, EnabledSetting, Description ?? string.Empty, CancellationToken))
                : SecureText.Use(password, clear => Wait(TargetServer.NewUserAsync(name!, Group, clear, CertificateThumbprint, EnabledSetting, Description ?? string.Empty, CancellationToken)));
            if (!user.HasPassword && user.CertificateThumbprint is null)
            {
                WriteWarning($"User '{user.Name}' has no password and no certificate, so it cannot log in. Give it one with Set-QmTunnelUser {user.Name} -Password (Read-Host -AsSecureString) or -CertificateThumbprint.");
            }
            WriteObject(user);
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}

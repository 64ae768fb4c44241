using System.Management.Automation;
using System.Security;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnelUser: changes the settings given (and only those) of each user given. -CertificateThumbprint ''
/// removes the certificate; -Password takes a SecureString, hashed by the engine for each user. The engine refuses a
/// change that would leave nobody able to manage the server (AdministratorRequired).
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnelUser", SupportsShouldProcess = true, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Set-QmTunnelUser.md")]
[OutputType(typeof(UserInfo))]
public sealed class SetQmTunnelUserCommand : UserActionCmdlet
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(GroupNameCompleter))]
    public string? Group { get; set; }

    /// <summary>Enables the user (-Enabled) or disables it (-Enabled:$false); not given, it stays as it is.</summary>
    [Parameter]
    public SwitchParameter Enabled { get; set; }

    [Parameter]
    [ValidateNotNull]
    public SecureString? Password { get; set; }

    [Parameter]
    [AllowEmptyString]
    [ValidateNotNull]
    public string? CertificateThumbprint { get; set; }

    [Parameter]
    [AllowEmptyString]
    [ValidateNotNull]
    public string? Description { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private UserChange _change = new();

    protected override string Action => _change.Fields.Length == 0 ? "Set (no setting given)" : "Set " + _change.Fields;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        var given = MyInvocation.BoundParameters;
        // The password is not put in the change here: it stays a SecureString until the engine call.
        _change = new UserChange
        {
            Group = Group,
            Enabled = given.ContainsKey(nameof(Enabled)) ? Enabled.IsPresent : null,
            CertificateThumbprint = CertificateThumbprint,
            Description = Description,
            Password = Password is null ? null : string.Empty,
        };
    }

    protected override void Process(IQmTunnelServer server, string name)
    {
        var user = Password is null
            ? Wait(server.SetUserAsync(name, _change, CancellationToken))
            : SecureText.Use(Password, clear => Wait(server.SetUserAsync(name, _change with { Password = clear }, CancellationToken)));
        if (PassThru)
        {
            WriteObject(user);
        }
    }
}

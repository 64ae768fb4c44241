using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnelServerConfig: changes the saved settings given (and only those) of the server (-Session, or the
/// in-process one); they apply at once (AllowPlainLinks to the next link accepted, PasswordIterations to the next
/// password set, MaxManagementSessions to the next session) and are kept across restarts. The engine checks the ranges (ServerSettingInvalid).
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnelServerConfig", SupportsShouldProcess = true, HelpUri = HelpLinks.Base + "Set-QmTunnelServerConfig.md")]
[OutputType(typeof(ServerConfig))]
public sealed class SetQmTunnelServerConfigCommand : ServerCmdlet
{
    /// <summary>Accept unencrypted links (-AllowPlainLinks) or refuse them (-AllowPlainLinks:$false), as Start-QmTunnelServer -AllowPlainLinks.</summary>
    [Parameter]
    public SwitchParameter AllowPlainLinks { get; set; }

    [Parameter]
    public int PasswordIterations { get; set; }

    [Parameter]
    public int MaxManagementSessions { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        var given = MyInvocation.BoundParameters;
        var change = new ServerConfigChange
        {
            AllowPlainLinks = given.ContainsKey(nameof(AllowPlainLinks)) ? AllowPlainLinks.IsPresent : null,
            PasswordIterations = given.ContainsKey(nameof(PasswordIterations)) ? PasswordIterations : null,
            MaxManagementSessions = given.ContainsKey(nameof(MaxManagementSessions)) ? MaxManagementSessions : null,
        };
        var fields = new[]
        {
            change.AllowPlainLinks is { } allow ? $"AllowPlainLinks = {allow}" : null,
            change.PasswordIterations is { } iterations ? $"PasswordIterations = {iterations}" : null,
            change.MaxManagementSessions is { } max ? $"MaxManagementSessions = {max}" : null,
        }.Where(f => f is not null).ToList();
        if (!ShouldProcess("server configuration" + OnServer, fields.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", fields)))
        {
            return;
        }
        try
        {
            var config = Wait(TargetServer.SetServerConfigAsync(change, CancellationToken));
            if (PassThru)
            {
                WriteObject(config);
            }
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}

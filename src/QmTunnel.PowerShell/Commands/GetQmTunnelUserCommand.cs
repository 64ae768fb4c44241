using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelUser: the users of the server (-Session, or the in-process one), all or those -Name selects (wildcards
/// allowed; a literal name that matches nothing is a UserNotFound error, like Get-QmTunnel), optionally only those of
/// -Group (GroupNotFound when it does not exist). Snapshots without secrets. Names piped in with an Origin are looked up
/// where they came from (ServerInputCmdlet).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelUser", HelpUri = HelpLinks.Base + "Get-QmTunnelUser.md")]
[OutputType(typeof(UserInfo))]
public sealed class GetQmTunnelUserCommand : ServerInputCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(UserNameCompleter))]
    public string[]? Name { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(GroupNameCompleter))]
    public string? Group { get; set; }

    protected override void ProcessRecord()
    {
        var server = ServerFor(Origin, Name is null ? "users" : $"user '{string.Join("', '", Name)}'", Name);
        if (server is null)
        {
            return;
        }
        IReadOnlyList<UserInfo> users;
        try
        {
            users = Wait(server.GetUsersAsync(Group, CancellationToken));
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            return;
        }
        if (Name is null || Name.Length == 0)
        {
            WriteObject(users, enumerateCollection: true);
            return;
        }
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in Name)
        {
            if (WildcardPattern.ContainsWildcardCharacters(name))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                foreach (var user in users.Where(u => pattern.IsMatch(u.Name) && seen.Add(u.Name)))
                {
                    WriteObject(user);
                }
                continue;
            }
            try
            {
                // The engine's lookup, so a missing user reads the same here as in Set-QmTunnelUser.
                var user = Wait(server.GetUserAsync(name, CancellationToken));
                if ((Group is null || string.Equals(user.Group, Group, StringComparison.OrdinalIgnoreCase)) && seen.Add(user.Name))
                {
                    WriteObject(user);
                }
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }
}

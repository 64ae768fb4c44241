using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelGroup: the groups of the server (-Session, or the in-process one) with their rights, allow-rules and
/// number of users, all or those -Name selects (wildcards allowed; a literal name that matches nothing is a
/// GroupNotFound error). Names piped in with an Origin are looked up where they came from (ServerInputCmdlet).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelGroup", HelpUri = HelpLinks.Base + "Get-QmTunnelGroup.md")]
[OutputType(typeof(GroupInfo))]
public sealed class GetQmTunnelGroupCommand : ServerInputCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(GroupNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        var server = ServerFor(Origin, Name is null ? "groups" : $"group '{string.Join("', '", Name)}'", Name);
        if (server is null)
        {
            return;
        }
        if (Name is null || Name.Length == 0 || Name.Any(WildcardPattern.ContainsWildcardCharacters))
        {
            IReadOnlyList<GroupInfo> groups;
            try
            {
                groups = Wait(server.GetGroupsAsync(CancellationToken));
            }
            catch (QmTunnelException ex)
            {
                ThrowTerminatingError(ToErrorRecord(ex));
                return;
            }
            if (Name is null || Name.Length == 0)
            {
                WriteObject(groups, enumerateCollection: true);
                return;
            }
            Select(server, groups);
            return;
        }
        Select(server, null);
    }

    private void Select(IQmTunnelServer server, IReadOnlyList<GroupInfo>? all)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in Name!)
        {
            if (WildcardPattern.ContainsWildcardCharacters(name))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                foreach (var group in all!.Where(g => pattern.IsMatch(g.Name) && seen.Add(g.Name)))
                {
                    WriteObject(group);
                }
                continue;
            }
            try
            {
                var group = Wait(server.GetGroupAsync(name, CancellationToken));
                if (seen.Add(group.Name))
                {
                    WriteObject(group);
                }
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }
}

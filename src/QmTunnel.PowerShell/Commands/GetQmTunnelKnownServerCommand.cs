using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Get-QmTunnelKnownServer: the certificates the server (-Session, or the in-process one) has pinned for the servers it
/// linked to over TLS (trust on first use), all or those -Server selects (host:port; wildcards allowed; a literal name
/// that matches nothing is a KnownServerNotFound error, like Get-QmTunnel).
/// </summary>
[Cmdlet(VerbsCommon.Get, "QmTunnelKnownServer", HelpUri = HelpLinks.Base + "Get-QmTunnelKnownServer.md")]
[OutputType(typeof(KnownServer))]
public sealed class GetQmTunnelKnownServerCommand : ServerCmdlet
{
    [Parameter(Position = 0)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KnownServerCompleter))]
    public string[]? Server { get; set; }

    /// <summary>The pins of this user's management sessions (Connect-QmTunnelServer) instead of a server's.</summary>
    [Parameter]
    public SwitchParameter Client { get; set; }

    /// <summary>-Client reads this user's own file: no server is needed.</summary>
    protected override void BeginProcessing()
    {
        if (!Client)
        {
            base.BeginProcessing();
        }
    }

    protected override void EndProcessing()
    {
        IReadOnlyList<KnownServer> known;
        try
        {
            known = Client ? ClientPins().GetAll() : Wait(TargetServer.GetKnownServersAsync(CancellationToken));
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            return;
        }
        if (Server is null || Server.Length == 0)
        {
            foreach (var entry in known)
            {
                WriteObject(entry);
            }
            return;
        }
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in Server)
        {
            var wildcard = WildcardPattern.ContainsWildcardCharacters(name);
            var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
            var matched = false;
            foreach (var entry in known)
            {
                if (wildcard ? pattern.IsMatch(entry.Server) : string.Equals(entry.Server, name, StringComparison.OrdinalIgnoreCase))
                {
                    matched = true;
                    if (seen.Add(entry.Server))
                    {
                        WriteObject(entry);
                    }
                }
            }
            if (!matched && !wildcard)
            {
                WriteError(NewErrorRecord(ErrorIds.KnownServerNotFound, QmErrorKind.ObjectNotFound, name,
                    $"No certificate is pinned for '{name}'. Names are host:port as the tunnels dial them (for example 'hostb:9200'); " +
                    "Get-QmTunnelKnownServer lists them all."));
            }
        }
    }
}

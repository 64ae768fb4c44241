using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Remove-QmTunnelKnownServer: forgets the pinned certificate of each server given (host:port, literal), so the
/// next TLS link to it trusts and pins the certificate it then presents. For a server whose certificate was replaced
/// on purpose (CertificateMismatch). ConfirmImpact Medium: scripts are not prompted; -Confirm asks. A pin piped in is
/// removed where it came from: a server's pins, or this user's client pins (Get-QmTunnelKnownServer -Client) even
/// without -Client (ServerInputCmdlet).
/// </summary>
[Cmdlet(VerbsCommon.Remove, "QmTunnelKnownServer", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByServer, HelpUri = HelpLinks.Base + "Remove-QmTunnelKnownServer.md")]
[OutputType(typeof(void))]
public sealed class RemoveQmTunnelKnownServerCommand : ServerInputCmdlet
{
    private const string ByServer = nameof(ByServer);

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByServer, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KnownServerCompleter))]
    public string[] Server { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ByInputObject, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KnownServer[] InputObject { get; set; } = null!;

    /// <summary>Forget pins of this user's management sessions (Connect-QmTunnelServer) instead of a server's.</summary>
    [Parameter]
    public SwitchParameter Client { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var (name, origin) in Items(InputObject, Server, k => k.Server))
        {
            var pins = ClientPinsFor(origin, name, out var refused);
            if (refused)
            {
                continue;
            }
            if (pins is not null)
            {
                if (ShouldProcess($"session pin of '{name}'", "Remove") && !pins.Remove(name))
                {
                    WriteError(NewErrorRecord(Engine.Errors.ErrorIds.KnownServerNotFound, QmErrorKind.ObjectNotFound, name,
                        $"No session pin is kept for '{name}' in {pins.FilePath}. Get-QmTunnelKnownServer -Client lists them (host:port)."));
                }
                continue;
            }
            var what = $"pinned certificate of '{name}'";
            var server = ServerFor(origin, what, name);
            if (server is null || !ShouldProcess(what + On(server), "Remove"))
            {
                continue;
            }
            try
            {
                Wait(server.RemoveKnownServerAsync(name, CancellationToken));
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }

    /// <summary>
    /// The client pin file a pin goes to: a pin from Get-QmTunnelKnownServer -Client (its own file, even without -Client),
    /// or a plain name with -Client; null for a server's pin. A client pin with -Session, or a server's pin with -Client,
    /// is that pin's SessionMismatch (<paramref name="refused"/>).
    /// </summary>
    private ClientKnownServers? ClientPinsFor(object? origin, string name, out bool refused)
    {
        refused = false;
        var value = origin is PSObject wrapped ? wrapped.BaseObject : origin;
        var live = value as QmTunnelOrigin;
        var text = value is null || live is not null ? null : origin!.ToString()?.Trim();
        var what = $"pin of '{name}'";
        if (live?.Kind == OriginKind.ClientPins || string.Equals(text, QmTunnelOrigin.ClientPinsText, StringComparison.OrdinalIgnoreCase))
        {
            if (Session is not null)
            {
                WriteError(NewMismatchError(name, what, live is null ? "this user's client pins" : Describe(live), Describe(Session),
                    "Leave -Session out: pins from Get-QmTunnelKnownServer -Client are removed from this user's own list."));
                refused = true;
                return null;
            }
            return new ClientKnownServers(live?.Server ?? ClientKnownServers.DefaultPath);
        }
        if (!Client)
        {
            return null;
        }
        if (live is not null || !string.IsNullOrEmpty(text))
        {
            WriteError(NewMismatchError(name, what, live is null ? text! : "the pins of " + Describe(live), "this user's client pins (-Client)",
                "Leave -Client out to remove the server's pin, or take the pin from Get-QmTunnelKnownServer -Client."));
            refused = true;
            return null;
        }
        return ClientPins();
    }
}

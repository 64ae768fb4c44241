using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that manage a server — its tunnels, users, groups, pins and configuration. -Session (from
/// Connect-QmTunnelServer) sends every call to that server, as the session's user; without it the cmdlet acts on the
/// in-process server as its host (every right). <see cref="TargetServer"/> is the one place that decides which: found
/// once per command, it stops the command with ServerNotRunning (no -Session, no in-process server) or SessionClosed
/// (a disconnected or lost session). Both paths raise the same error ids, so a script runs unchanged on either.
/// </summary>
public abstract class ServerCmdlet : QmTunnelCmdlet
{
    /// <summary>The remote server to manage (Connect-QmTunnelServer); the in-process server when not given.</summary>
    [Parameter]
    [ValidateNotNull]
    public QmTunnelSession? Session { get; set; }

    private IQmTunnelServer? _server;

    /// <summary>
    /// The server this command manages: the -Session, or the in-process server as its host. Resolved on first use
    /// (BeginProcessing); a terminating ServerNotRunning or SessionClosed error when there is none to use.
    /// </summary>
    protected IQmTunnelServer TargetServer => _server ??= ResolveServer();

    /// <summary>" on qmt://host:9200" for a -Session (for ShouldProcess targets), empty for the in-process server.</summary>
    protected string OnServer => Session is null ? string.Empty : $" on {Session.Address}";

    /// <summary>Finds the server before any input is processed, so a missing one stops the command at once.</summary>
    protected override void BeginProcessing() => _ = TargetServer;

    private IQmTunnelServer ResolveServer()
    {
        if (Session is { } session)
        {
            if (!session.IsOpen)
            {
                ThrowTerminatingError(NewSessionClosedError(session));
            }
            return session;
        }
        return LocalServer(RequireServer());
    }

    private LocalQmTunnelServer? _local;

    /// <summary>The in-process server as its host: one instance per engine and command, so it can key a dictionary.</summary>
    private protected LocalQmTunnelServer LocalServer(QmTunnelEngine engine) =>
        _local is { } local && ReferenceEquals(local.Engine, engine) ? local : _local = new LocalQmTunnelServer(engine);

    /// <summary>" on qmt://host:9200" for a session (for ShouldProcess targets), empty for the in-process server.</summary>
    protected static string On(IQmTunnelServer server) => server is QmTunnelSession session ? $" on {session.Address}" : string.Empty;

    internal static ErrorRecord NewSessionClosedError(QmTunnelSession session) => NewErrorRecord(
        ErrorIds.SessionClosed,
        QmErrorKind.ResourceUnavailable,
        session,
        $"The session to {session.Address} (user '{session.User}') is closed; connect again with Connect-QmTunnelServer {session.Address} -Credential (Get-Credential).");

    /// <summary>
    /// The tunnels <paramref name="names"/> select on <paramref name="server"/>, in the server's order, each once: all when
    /// null; a name with wildcards selects its matches (none is not an error); a literal name that matches nothing
    /// writes the server's TunnelNotFound (or PermissionDenied) error and the others go on, like Get-Service.
    /// </summary>
    protected IReadOnlyList<TunnelInfo> SelectTunnels(IQmTunnelServer server, string[]? names)
    {
        IReadOnlyList<TunnelInfo> tunnels;
        try
        {
            tunnels = Wait(server.GetTunnelsAsync(CancellationToken));
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            return [];
        }
        if (names is null || names.Length == 0)
        {
            return tunnels;
        }
        var selected = new List<TunnelInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (WildcardPattern.ContainsWildcardCharacters(name))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                foreach (var tunnel in tunnels)
                {
                    if (pattern.IsMatch(tunnel.Name) && seen.Add(tunnel.Name))
                    {
                        selected.Add(tunnel);
                    }
                }
                continue;
            }
            try
            {
                // The server's lookup, so a missing tunnel reads the same here as in Start-QmTunnel.
                var match = Wait(server.GetTunnelAsync(name, CancellationToken));
                if (seen.Add(match.Name))
                {
                    selected.Add(match);
                }
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
        return selected;
    }

    /// <summary>The pins of this user's management sessions (-Client of the known-server cmdlets); refuses -Session with it.</summary>
    protected Engine.Management.Remote.ClientKnownServers ClientPins()
    {
        if (Session is not null)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ParameterConflict, QmErrorKind.InvalidArgument, Session,
                "-Client and -Session do not go together: -Client is this user's own list of session pins, -Session a server's pins."));
        }
        return new Engine.Management.Remote.ClientKnownServers(Engine.Management.Remote.ClientKnownServers.DefaultPath);
    }
}

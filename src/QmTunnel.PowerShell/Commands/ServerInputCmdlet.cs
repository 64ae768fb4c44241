using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of the cmdlets that take tunnels, statistics, users, groups, pins or a configuration from the pipeline: each
/// object goes back to where it came from (its <see cref="QmTunnelObject.Origin"/>: the in-process server, a session's
/// server, this user's client pins), one object at a time, so objects of several servers in one pipeline each reach
/// their own. An explicit -Session for another server is that object's SessionMismatch error, never a silent choice.
/// A plain name (a string, an object without Origin) goes to -Session or the in-process server, as in
/// <see cref="ServerCmdlet"/>. The in-process server is looked for only when a plain name needs it, so objects from
/// sessions need none. It does not decide for New- cmdlets: what they take from the pipeline is a template, created on
/// -Session or the in-process server.
/// </summary>
public abstract class ServerInputCmdlet : ServerCmdlet
{
    /// <summary>The Origin of the object in the pipeline, bound by property name for each object (not typed by hand).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true, DontShow = true)]
    public object? Origin { get; set; }

    /// <summary>Checks only an explicit -Session here: the in-process server may not be needed (objects from sessions).</summary>
    protected override void BeginProcessing()
    {
        if (Session is { IsOpen: false } session)
        {
            ThrowTerminatingError(NewSessionClosedError(session));
        }
    }

    /// <summary>The names of the objects given and their origins: -InputObject's own, or -Name's with the piped Origin.</summary>
    protected IEnumerable<(string Name, object? Origin)> Items<T>(T[]? inputObjects, string[]? names, Func<T, string> nameOf) where T : QmTunnelObject =>
        ParameterSetName == ByInputObject
            ? (inputObjects ?? []).Select(x => (nameOf(x), (object?)x.Origin))
            : (names ?? []).Select(n => (n, Origin));

    /// <summary>
    /// The loop of the action cmdlets (Start/Stop/Set/Remove of tunnels, users, groups): each item goes to its server
    /// (<see cref="ServerFor"/>), is asked about with ShouldProcess ("<paramref name="noun"/> 'name'" on that server) and
    /// handled on its own; a <see cref="QmTunnelException"/> becomes that item's error and the next one goes on.
    /// </summary>
    protected void ProcessEach(IEnumerable<(string Name, object? Origin)> items, string noun, string action, Action<IQmTunnelServer, string> process)
    {
        foreach (var (name, origin) in items)
        {
            var what = $"{noun} '{name}'";
            var server = ServerFor(origin, what, name);
            if (server is null || !ShouldProcess(what + On(server), action))
            {
                continue;
            }
            try
            {
                process(server, name);
            }
            catch (QmTunnelException ex)
            {
                WriteError(ToErrorRecord(ex));
            }
        }
    }

    /// <summary>
    /// The server an object of origin <paramref name="origin"/> goes to; null after writing that object's error. No
    /// origin (a plain name): <see cref="ServerCmdlet.TargetServer"/>. A live origin: its server, the one -Session reaches
    /// when given (the same running server, by its id; else SessionMismatch); a closed session is SessionClosed and an
    /// in-process server that has stopped since is ServerNotRunning. An origin known only as text (Import-Csv, a
    /// deserialized object): "in-process" or the -Session's address; anything else is SessionMismatch.
    /// </summary>
    protected IQmTunnelServer? ServerFor(object? origin, string what, object? target)
    {
        switch (origin is PSObject wrapped ? wrapped.BaseObject : origin)
        {
            case null:
                return TargetServer;
            case QmTunnelOrigin live:
                return ServerFor(live, what, target);
            default:
                // PSObject.ToString gives a deserialized origin's own text.
                var text = origin!.ToString()?.Trim();
                return string.IsNullOrEmpty(text) ? TargetServer : ServerForText(text, what, target);
        }
    }

    private IQmTunnelServer? ServerFor(QmTunnelOrigin origin, string what, object? target)
    {
        if (Session is { } session)
        {
            if (origin.ServerId is not null && string.Equals(origin.ServerId, session.ServerId, StringComparison.Ordinal))
            {
                return session;
            }
            WriteError(NewMismatchError(target, what, Describe(origin), Describe(session),
                "Leave -Session out to act where it came from, or take it from that session (for example Get-QmTunnel -Session $s)."));
            return null;
        }
        switch (origin.Kind)
        {
            case OriginKind.Session:
                var from = origin.GetSession()!;
                if (from.IsOpen)
                {
                    return from;
                }
                WriteError(NewErrorRecord(ErrorIds.SessionClosed, QmErrorKind.ResourceUnavailable, target,
                    $"The {what} came from {from.Address} through a session that is closed. Connect again and give the new session: " +
                    $"-Session (Connect-QmTunnelServer {from.Address} -Credential (Get-Credential {from.User}))."));
                return null;
            case OriginKind.InProcess:
                var engine = ServerRegistry.Engine;
                if (engine is not null && string.Equals(engine.ServerId, origin.ServerId, StringComparison.Ordinal))
                {
                    return LocalServer(engine);
                }
                WriteError(NewErrorRecord(ErrorIds.ServerNotRunning, QmErrorKind.ResourceUnavailable, target,
                    $"The {what} came from an in-process server that is no longer running" +
                    (engine is null
                        ? ". Start-QmTunnelServer starts one; then list the objects again."
                        : $"; this session now runs another ({engine.GetServerInfo().Address}, data {engine.Options.DataPath}). List the objects again from it.")));
                return null;
            default:
                WriteError(NewMismatchError(target, what, Describe(origin), "the in-process server",
                    "Pins from Get-QmTunnelKnownServer -Client go only to Remove-QmTunnelKnownServer."));
                return null;
        }
    }

    private IQmTunnelServer? ServerForText(string text, string what, object? target)
    {
        if (Session is { } session)
        {
            if (string.Equals(text, session.Address, StringComparison.OrdinalIgnoreCase))
            {
                return session;
            }
            WriteError(NewMismatchError(target, what, $"'{text}' (its Origin, known only as text)", Describe(session),
                "Leave -Session out, or remove the Origin property (Select-Object -ExcludeProperty Origin) to act on -Session."));
            return null;
        }
        if (string.Equals(text, QmTunnelOrigin.InProcessText, StringComparison.OrdinalIgnoreCase))
        {
            return TargetServer;
        }
        WriteError(NewMismatchError(target, what, $"'{text}' (its Origin, known only as text, from Import-Csv or a deserialized object: no session)",
            "the in-process server",
            $"Give its session: -Session (Connect-QmTunnelServer {text} -Credential (Get-Credential)), or remove the Origin property (Select-Object -ExcludeProperty Origin) to act on the in-process server."));
        return null;
    }

    /// <summary>"qmt://host:9200 (session as admin)", "the in-process server" or "this user's client pins (path)".</summary>
    protected static string Describe(QmTunnelOrigin origin) => origin.Kind switch
    {
        OriginKind.InProcess => "the in-process server",
        OriginKind.Session => $"{origin.Server} (session as {origin.User})",
        _ => $"this user's client pins ({origin.Server})",
    };

    protected static string Describe(QmTunnelSession session) => $"{session.Address} (session as {session.User})";

    /// <summary>SessionMismatch: the object came from <paramref name="from"/> but the command would act on <paramref name="server"/>.</summary>
    protected static ErrorRecord NewMismatchError(object? target, string what, string from, string server, string fix) =>
        NewErrorRecord(ErrorIds.SessionMismatch, QmErrorKind.InvalidArgument, target,
            $"The {what} came from {from}, but this command would act on {server}. {fix}");
}

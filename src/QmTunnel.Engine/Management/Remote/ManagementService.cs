using QmTunnel.Engine.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using static QmTunnel.Engine.Management.Remote.ManagementMessages;

namespace QmTunnel.Engine.Management.Remote;

/// <summary>
/// The server side of management sessions: answers one request per Management stream, as the user the link logged in
/// as (through a <see cref="LocalQmTunnelServer"/> bound to that user, so rights are checked exactly as for a local
/// caller). Every failure goes back as the QmTunnelException the engine raised; nothing else is sent.
/// </summary>
internal sealed class ManagementService(QmTunnelEngine engine, ILogger logger)
{
    private delegate Task<JsonNode?> Handler(IQmTunnelServer server, JsonObject args, CancellationToken cancellationToken);

    private static readonly Dictionary<string, Handler> Handlers = new(StringComparer.Ordinal)
    {
        ["GetServerInfo"] = async (s, a, ct) => ToNode(await s.GetServerInfoAsync(ct).ConfigureAwait(false)),
        ["GetTunnels"] = async (s, a, ct) => ToNode((await s.GetTunnelsAsync(ct).ConfigureAwait(false)).Select(TunnelInfoWire.From).ToList()),
        ["GetTunnel"] = async (s, a, ct) => Wire(await s.GetTunnelAsync(Name(a), ct).ConfigureAwait(false)),
        ["NewTunnel"] = async (s, a, ct) => Wire(await s.NewTunnelAsync(FromNode<TunnelProfile>(a["profile"], "profile") with { Credentials = [] },
            a["logins"] is null ? null : FromNode<List<HopLogin?>>(a["logins"], "logins"), ct).ConfigureAwait(false)),
        ["StartTunnel"] = async (s, a, ct) => Wire(await s.StartTunnelAsync(Name(a), ct).ConfigureAwait(false)),
        ["StopTunnel"] = async (s, a, ct) => Wire(await s.StopTunnelAsync(Name(a), ct).ConfigureAwait(false)),
        ["SetTunnel"] = async (s, a, ct) => Wire(await s.SetTunnelAsync(Name(a), FromNode<TunnelChange>(a["change"], "change"),
            a["logins"] is null ? null : FromNode<List<HopLogin?>>(a["logins"], "logins"), ct).ConfigureAwait(false)),
        ["RemoveTunnel"] = async (s, a, ct) => { await s.RemoveTunnelAsync(Name(a), ct).ConfigureAwait(false); return null; },
        ["GetTunnelStats"] = async (s, a, ct) => ToNode(await s.GetTunnelStatsAsync(Name(a), ct).ConfigureAwait(false)),
        ["GetConnections"] = async (s, a, ct) => ToNode(await s.GetConnectionsAsync(Name(a), ct).ConfigureAwait(false)),
        ["GetKnownServers"] = async (s, a, ct) => ToNode(await s.GetKnownServersAsync(ct).ConfigureAwait(false)),
        ["RemoveKnownServer"] = async (s, a, ct) => { await s.RemoveKnownServerAsync(Str(a, "server"), ct).ConfigureAwait(false); return null; },
        ["GetUsers"] = async (s, a, ct) => ToNode(await s.GetUsersAsync(a["group"]?.GetValue<string>(), ct).ConfigureAwait(false)),
        ["GetUser"] = async (s, a, ct) => ToNode(await s.GetUserAsync(Name(a), ct).ConfigureAwait(false)),
        ["NewUser"] = async (s, a, ct) => ToNode(await s.NewUserAsync(Name(a), Str(a, "group"), a["password"]?.GetValue<string>(),
            a["certificateThumbprint"]?.GetValue<string>(), a["enabled"]?.GetValue<bool>() ?? true, a["description"]?.GetValue<string>() ?? "", ct).ConfigureAwait(false)),
        ["SetUser"] = async (s, a, ct) => ToNode(await s.SetUserAsync(Name(a), FromNode<UserChange>(a["change"], "change"), ct).ConfigureAwait(false)),
        ["RemoveUser"] = async (s, a, ct) => { await s.RemoveUserAsync(Name(a), ct).ConfigureAwait(false); return null; },
        ["GetGroups"] = async (s, a, ct) => ToNode(await s.GetGroupsAsync(ct).ConfigureAwait(false)),
        ["GetGroup"] = async (s, a, ct) => ToNode(await s.GetGroupAsync(Name(a), ct).ConfigureAwait(false)),
        ["NewGroup"] = async (s, a, ct) => ToNode(await s.NewGroupAsync(Name(a), FromNode<GroupRights>(a["rights"], "rights"),
            FromNode<List<string>>(a["allowRules"] ?? new JsonArray(), "allowRules"), a["description"]?.GetValue<string>() ?? "", ct).ConfigureAwait(false)),
        ["SetGroup"] = async (s, a, ct) => ToNode(await s.SetGroupAsync(Name(a), FromNode<GroupChange>(a["change"], "change"), ct).ConfigureAwait(false)),
        ["RemoveGroup"] = async (s, a, ct) => { await s.RemoveGroupAsync(Name(a), ct).ConfigureAwait(false); return null; },
        ["GetServerConfig"] = async (s, a, ct) => ToNode(await s.GetServerConfigAsync(ct).ConfigureAwait(false)),
        ["SetServerConfig"] = async (s, a, ct) => ToNode(await s.SetServerConfigAsync(FromNode<ServerConfigChange>(a["change"], "change"), ct).ConfigureAwait(false)),
        ["StopServer"] = async (s, a, ct) => { await s.StopServerAsync(ct).ConfigureAwait(false); return null; },
    };

    /// <summary>Operations whose arguments may carry a password: refused on an unencrypted link.</summary>
    internal static readonly HashSet<string> CarriesPasswords = ["NewTunnel", "SetTunnel", "NewUser", "SetUser"];

    private static JsonNode? Wire(TunnelInfo tunnel) => ToNode(TunnelInfoWire.From(tunnel));

    private static string Name(JsonObject args) => Str(args, "name");

    private static string Str(JsonObject args, string field) =>
        args[field]?.GetValue<string>() ?? throw Invalid($"the argument '{field}' is missing");

    /// <summary>Serves one Management stream of <paramref name="link"/> (logged in as its principal).</summary>
    public async Task ServeAsync(Link link, MuxStream stream, CancellationToken cancellationToken)
    {
        string op = "?";
        // From the OpenAck on, the request has ManagementRequestTimeout to arrive (by the engine's clock).
        using var timeout = new CancellationTokenSource(QmTunnelEngine.ManagementRequestTimeout, engine.Time);
        try
        {
            if (link.Principal is null)
            {
                throw new QmTunnelException(ErrorIds.AuthenticationFailed, QmErrorKind.AuthenticationError, null, "Management needs a logged-in link.");
            }
            stream.SendOpenAck();
            (op, var args) = ParseRequest(await ReadRequestAsync(link, stream, timeout, cancellationToken).ConfigureAwait(false));
            var server = new LocalQmTunnelServer(engine, link.Principal);
            ManagementLog.Request(logger, link.Principal.User.Name, op);
            if (!link.IsEncrypted && CarriesPasswords.Contains(op) && ContainsPassword(args))
            {
                throw new QmTunnelException(ErrorIds.CredentialOnPlainLink, QmErrorKind.SecurityError, op,
                    "A password is never sent over an unencrypted link: connect the session with qmt:// (TLS).");
            }
            if (op is "WatchTunnelStats" or "WatchConnections")
            {
                await WatchAsync(server, op, args, stream, cancellationToken).ConfigureAwait(false);
                return;
            }
            var result = await DispatchAsync(server, op, args, cancellationToken).ConfigureAwait(false);
            await SendAsync(stream, Success(result), cancellationToken).ConfigureAwait(false);
            stream.SendFin();
        }
        catch (QmTunnelException ex)
        {
            await AnswerFailureAsync(stream, ex, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsRequestError(ex))
        {
            // a JSON value of the wrong type (GetValue) or an argument the engine refuses as a programming error
            await AnswerFailureAsync(stream, Invalid($"{op}: {ex.Message}"), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StreamResetException or IOException or OperationCanceledException)
        {
            // the client went away, or the server is stopping
        }
    }

    /// <summary>
    /// The operation and arguments of a request message (<c>{"v":1,"op":...,"args":{...}}</c>); anything else is
    /// ManagementMessageInvalid, or an exception <see cref="IsRequestError"/> accepts (a JSON value of the wrong type).
    /// </summary>
    internal static (string Op, JsonObject Args) ParseRequest(JsonNode? message)
    {
        var request = message as JsonObject ?? throw Invalid("the request is not a JSON object");
        if (request["v"]?.GetValue<int>() != ManagementMessages.Version)
        {
            throw Invalid($"the request has management version {request["v"]}; this server speaks {ManagementMessages.Version}");
        }
        var op = request["op"]?.GetValue<string>() ?? throw Invalid("the request names no operation");
        return (op, request["args"] as JsonObject ?? []);
    }

    /// <summary>The operations a request may name (watches included).</summary>
    internal static IEnumerable<string> Operations => Handlers.Keys.Append("WatchTunnelStats").Append("WatchConnections");

    /// <summary>
    /// Reads the arguments of <paramref name="op"/> and calls <paramref name="server"/> with them (watches: only their
    /// arguments are read here, see <see cref="WatchArguments"/>). A bad argument is ManagementMessageInvalid or an
    /// exception <see cref="IsRequestError"/> accepts; both are answered ManagementMessageInvalid.
    /// </summary>
    internal static Task<JsonNode?> DispatchAsync(IQmTunnelServer server, string op, JsonObject args, CancellationToken cancellationToken)
    {
        if (op is "WatchTunnelStats" or "WatchConnections")
        {
            WatchArguments(args);
            return Task.FromResult<JsonNode?>(null);
        }
        if (!Handlers.TryGetValue(op, out var handler))
        {
            throw Invalid($"'{op}' is not a management operation of this server");
        }
        return handler(server, args, cancellationToken);
    }

    /// <summary>
    /// True for what reading a request's JSON can throw besides ManagementMessageInvalid: a value of the wrong type
    /// (GetValue), or an argument the engine refuses as a programming error. Answered ManagementMessageInvalid.
    /// </summary>
    internal static bool IsRequestError(Exception ex) => ex is InvalidOperationException or FormatException or ArgumentException;

    /// <summary>The names and interval of a watch request.</summary>
    internal static (List<string>? Names, TimeSpan Interval) WatchArguments(JsonObject args) => (
        args["names"] is null ? null : FromNode<List<string>>(args["names"], "names"),
        args["interval"] is null ? QmTunnelEngine.MinimumWatchInterval : FromNode<TimeSpan>(args["interval"], "interval"));

    /// <summary>
    /// The request, which must arrive whole within <see cref="QmTunnelEngine.ManagementRequestTimeout"/> (by the engine's
    /// clock): a stream opened and left without one is answered ManagementRequestTimeout instead of being held.
    /// </summary>
    private async Task<JsonNode?> ReadRequestAsync(Link link, MuxStream stream, CancellationTokenSource timeout, CancellationToken cancellationToken)
    {
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return await ReadAsync(stream, reading.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            engine.OnManagementRequestTimedOut(link);
            throw new QmTunnelException(ErrorIds.ManagementRequestTimeout, QmErrorKind.ProtocolError, null,
                $"No whole request arrived within {QmTunnelEngine.ManagementRequestTimeout.TotalSeconds:0} s of opening the management stream, so the server closed it. " +
                "A client sends its request right after opening the stream: check the client and the network.");
        }
    }

    /// <summary>Answers a management stream with <paramref name="ex"/> without reading its request (a refused session).</summary>
    public static Task RefuseAsync(MuxStream stream, QmTunnelException ex, CancellationToken cancellationToken)
    {
        stream.SendOpenAck();
        return AnswerFailureAsync(stream, ex, cancellationToken);
    }

    private static async Task AnswerFailureAsync(MuxStream stream, QmTunnelException ex, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync(stream, Failure(ex), cancellationToken).ConfigureAwait(false);
            stream.SendFin();
        }
        catch (Exception e) when (e is StreamResetException or IOException or OperationCanceledException)
        {
        }
    }

    private static bool ContainsPassword(JsonNode? node) => node switch
    {
        JsonObject o => o.Any(p => (p.Key == "password" && p.Value is not null) || ContainsPassword(p.Value)),
        JsonArray a => a.Any(ContainsPassword),
        _ => false,
    };

    /// <summary>One answer per update until the client half-closes or resets the stream, or the server stops.</summary>
    private static async Task WatchAsync(IQmTunnelServer server, string op, JsonObject args, MuxStream stream, CancellationToken cancellationToken)
    {
        var (names, interval) = WatchArguments(args);
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // The client's half-close (or reset) ends the watch.
        var clientDone = Task.Run(async () =>
        {
            try
            {
                while (await ReadAsync(stream, watching.Token).ConfigureAwait(false) is not null)
                {
                }
            }
            catch (Exception)
            {
                // reset, cancelled or malformed: all end the watch
            }
            watching.Cancel();
        }, CancellationToken.None);
        try
        {
            if (op == "WatchTunnelStats")
            {
                await foreach (var update in server.WatchTunnelStatsAsync(names, interval, watching.Token).ConfigureAwait(false))
                {
                    await SendAsync(stream, Success(ToNode(update)), watching.Token).ConfigureAwait(false);
                }
            }
            else
            {
                await foreach (var update in server.WatchConnectionsAsync(names, interval, watching.Token).ConfigureAwait(false))
                {
                    await SendAsync(stream, Success(ToNode(update)), watching.Token).ConfigureAwait(false);
                }
            }
            stream.SendFin();
        }
        catch (OperationCanceledException) when (watching.IsCancellationRequested)
        {
            stream.SendFin();
        }
        finally
        {
            await watching.CancelAsync().ConfigureAwait(false);
            await clientDone.ConfigureAwait(false);
        }
    }
}

internal static partial class ManagementLog
{
    // Event ids: Diagnostics/EventIds.cs (management, 350-399).
    [LoggerMessage(EventId = EventIds.ManagementRequest, Level = LogLevel.Debug, Message = "Management: {User} asks {Operation}")]
    public static partial void Request(ILogger logger, string user, string operation);
}

using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using static QmTunnel.Engine.Management.Remote.ManagementMessages;

namespace QmTunnel.Engine.Management.Remote;

/// <summary>
/// A management session with a qmTunnel server elsewhere (Connect-QmTunnelServer): one logged-in link, one stream per
/// request. It does everything <see cref="IQmTunnelServer"/> offers, as the user it logged in as, with the server's
/// rights checks and error ids. Trust on first use of the server's certificate is kept in
/// <see cref="ClientKnownServers"/> (the user's own file), unless the address pins a thumbprint.
/// </summary>
public sealed class QmTunnelSession : IQmTunnelServer, IAsyncDisposable
{
    private readonly Link _link;

    private QmTunnelSession(Link link, EndpointUri server)
    {
        _link = link;
        Server = server;
        ConnectedAt = DateTimeOffset.Now;
        Origin = QmTunnelOrigin.ForSession(this);
    }

    public EndpointUri Server { get; }
    public string Address => Server.Address;
    public string User => _link.User ?? string.Empty;
    public string Group => _link.Group ?? string.Empty;
    public bool IsOpen => !_link.IsClosed;

    /// <summary>The session's link (tests look at its resumes).</summary>
    internal Link Link => _link;
    public bool IsEncrypted => _link.IsEncrypted;
    /// <summary>SHA-256 thumbprint of the server's certificate (null on a plain session): compare it with the server's CertificateThumbprint.</summary>
    public string? CertificateThumbprint => _link.PeerCertificateThumbprint;
    public string ServerName => _link.Peer.ServerName;
    public DateTimeOffset ConnectedAt { get; }
    /// <summary>The id of the server's running instance (new at each start), as it said in the handshake: its ServerInfo.ServerId.</summary>
    public string ServerId => _link.Peer.ServerId;

    /// <summary>What every object this session answers with carries as its origin (not a property: a session is not its own answer).</summary>
    internal QmTunnelOrigin Origin { get; }

    public override string ToString() => $"{Address} as {User}";

    /// <summary>
    /// Connects and logs in. Errors: HopConnectFailed, HopHandshakeFailed, AuthenticationFailed (AuthenticationError),
    /// CertificateMismatch, PlainLinkRefused, CredentialOnPlainLink. The session's link survives short outages
    /// (<paramref name="linkSession"/>: by default 30 s of failure tolerance and the server address's heartbeats).
    /// </summary>
    public static async Task<QmTunnelSession> ConnectAsync(EndpointUri server, LinkLogin login, TimeSpan timeout, CancellationToken cancellationToken,
        IKnownServers? knownServers = null, LinkSessionSettings? linkSession = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(login);
        var link = await LinkPool.DialAsync(server, login, new LinkOptions { ServerName = Environment.MachineName + " (management)" }, NullLogger.Instance,
            new PeerCertificatePolicy(knownServers ?? new ClientKnownServers(ClientKnownServers.DefaultPath), "Remove-QmTunnelKnownServer -Client"), timeout, cancellationToken, linkSession).ConfigureAwait(false);
        link.StreamOpened = (stream, _) =>
        {
            stream.Reset(ProtocolErrorCode.OpenRejected, "a management client accepts no streams");
            return Task.CompletedTask;
        };
        var session = new QmTunnelSession(link, server);
        try
        {
            // The first request makes the link a management session on the server (refused over its limit).
            session.ServerInfo = await session.GetServerInfoAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return session;
    }

    /// <summary>The server as it was when the session connected.</summary>
    public ServerInfo? ServerInfo { get; private set; }

    public async ValueTask DisposeAsync() => await _link.CloseAsync(ProtocolErrorCode.Shutdown, "the management session was closed").ConfigureAwait(false);

    private MuxStream Open(string op, JsonObject args, CancellationToken cancellationToken)
    {
        if (_link.IsClosed)
        {
            throw new QmTunnelException(ErrorIds.SessionClosed, QmErrorKind.ResourceUnavailable, Address,
                $"The session to {Address} is closed{(_link.CloseReason is null ? "" : $" ({_link.CloseReason})")}. Connect again with Connect-QmTunnelServer.");
        }
        if (!_link.IsEncrypted && ManagementService.CarriesPasswords.Contains(op) && args.ToJsonString().Contains("\"password\":\"", StringComparison.Ordinal))
        {
            throw new QmTunnelException(ErrorIds.CredentialOnPlainLink, QmErrorKind.SecurityError, Address,
                $"A password is never sent over an unencrypted link, and this session to {Address} is one: connect with qmt:// (TLS).");
        }
        var open = new OpenMessage(StreamProtocol.Management, string.Empty, string.Empty, [], 10_000, OpenOptions.None, string.Empty);
        MuxStream stream;
        try
        {
            stream = _link.OpenStream(open, new TrafficCounters(), 1024 * 1024);
        }
        catch (StreamResetException ex)
        {
            throw Closed(ex);
        }
        return stream;
    }

    private QmTunnelException Closed(Exception ex) => new(ErrorIds.SessionClosed, QmErrorKind.ResourceUnavailable, Address,
        $"The session to {Address} was lost ({ex.Message}). Connect again with Connect-QmTunnelServer.", ex);

    private async Task<JsonNode?> CallAsync(string op, JsonObject args, CancellationToken cancellationToken)
    {
        var stream = Open(op, args, cancellationToken);
        try
        {
            await SendAsync(stream, Request(op, args), cancellationToken).ConfigureAwait(false);
            stream.SendFin();
            var answer = await ReadAsync(stream, cancellationToken).ConfigureAwait(false)
                ?? throw Invalid($"{Address} closed the answer to {op} without a message");
            return ResultOf(answer, Address);
        }
        catch (StreamResetException ex)
        {
            throw Closed(ex);
        }
        catch (OperationCanceledException)
        {
            stream.Reset(ProtocolErrorCode.Shutdown, "cancelled");
            throw;
        }
    }

    private async Task<T> CallAsync<T>(string op, JsonObject args, CancellationToken cancellationToken) =>
        FromNode<T>(await CallAsync(op, args, cancellationToken).ConfigureAwait(false), $"the answer to {op}");

    private static JsonObject Args(params (string Key, JsonNode? Value)[] values)
    {
        var args = new JsonObject();
        foreach (var (key, value) in values)
        {
            args[key] = value;
        }
        return args;
    }

    private static JsonObject Named(string name) => Args(("name", name));

    public async Task<ServerInfo> GetServerInfoAsync(CancellationToken cancellationToken) =>
        (await CallAsync<ServerInfo>("GetServerInfo", [], cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<IReadOnlyList<TunnelInfo>> GetTunnelsAsync(CancellationToken cancellationToken) =>
        (await CallAsync<List<TunnelInfoWire>>("GetTunnels", [], cancellationToken).ConfigureAwait(false)).Select(t => t.ToInfo().With(Origin)).ToList();

    public async Task<TunnelInfo> GetTunnelAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelInfoWire>("GetTunnel", Named(name), cancellationToken).ConfigureAwait(false)).ToInfo().With(Origin);

    public async Task<TunnelInfo> NewTunnelAsync(TunnelProfile profile, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelInfoWire>("NewTunnel", Args(("profile", ToNode(profile with { Credentials = [] })), ("logins", logins is null ? null : ToNode(logins))),
            cancellationToken).ConfigureAwait(false)).ToInfo().With(Origin);

    public async Task<TunnelInfo> StartTunnelAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelInfoWire>("StartTunnel", Named(name), cancellationToken).ConfigureAwait(false)).ToInfo().With(Origin);

    public async Task<TunnelInfo> StopTunnelAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelInfoWire>("StopTunnel", Named(name), cancellationToken).ConfigureAwait(false)).ToInfo().With(Origin);

    public async Task<TunnelInfo> SetTunnelAsync(string name, TunnelChange change, IReadOnlyList<HopLogin?>? logins, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelInfoWire>("SetTunnel", Args(("name", name), ("change", ToNode(change)), ("logins", logins is null ? null : ToNode(logins))),
            cancellationToken).ConfigureAwait(false)).ToInfo().With(Origin);

    public Task RemoveTunnelAsync(string name, CancellationToken cancellationToken) => CallAsync("RemoveTunnel", Named(name), cancellationToken);

    public async Task<TunnelStats> GetTunnelStatsAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<TunnelStats>("GetTunnelStats", Named(name), cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<IReadOnlyList<ConnectionInfo>> GetConnectionsAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<List<ConnectionInfo>>("GetConnections", Named(name), cancellationToken).ConfigureAwait(false)).With(Origin);

    public IAsyncEnumerable<IReadOnlyList<TunnelStats>> WatchTunnelStatsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken) =>
        WatchAsync<TunnelStats>("WatchTunnelStats", names, interval, cancellationToken);

    public IAsyncEnumerable<IReadOnlyList<ConnectionInfo>> WatchConnectionsAsync(IReadOnlyList<string>? names, TimeSpan interval, CancellationToken cancellationToken) =>
        WatchAsync<ConnectionInfo>("WatchConnections", names, interval, cancellationToken);

    /// <summary>Updates pushed by the server until cancelled (the stream is then half-closed, which ends the server's watch).</summary>
    private async IAsyncEnumerable<IReadOnlyList<T>> WatchAsync<T>(string op, IReadOnlyList<string>? names, TimeSpan interval,
        [EnumeratorCancellation] CancellationToken cancellationToken) where T : QmTunnelObject
    {
        var args = Args(("names", names is null ? null : ToNode(names)), ("interval", ToNode(interval)));
        var stream = Open(op, args, cancellationToken);
        try
        {
            await SendAsync(stream, Request(op, args), cancellationToken).ConfigureAwait(false);
            while (true)
            {
                JsonNode? answer;
                try
                {
                    answer = await ReadAsync(stream, cancellationToken).ConfigureAwait(false);
                }
                catch (StreamResetException ex)
                {
                    throw Closed(ex);
                }
                if (answer is null)
                {
                    yield break;
                }
                yield return FromNode<List<T>>(ResultOf(answer, Address), $"an update of {op}").With(Origin);
            }
        }
        finally
        {
            stream.SendFin();
        }
    }

    public async Task<IReadOnlyList<KnownServer>> GetKnownServersAsync(CancellationToken cancellationToken) =>
        (await CallAsync<List<KnownServer>>("GetKnownServers", [], cancellationToken).ConfigureAwait(false)).With(Origin);

    public Task RemoveKnownServerAsync(string server, CancellationToken cancellationToken) => CallAsync("RemoveKnownServer", Args(("server", server)), cancellationToken);

    public async Task<IReadOnlyList<UserInfo>> GetUsersAsync(string? group, CancellationToken cancellationToken) =>
        (await CallAsync<List<UserInfo>>("GetUsers", Args(("group", group)), cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<UserInfo> GetUserAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<UserInfo>("GetUser", Named(name), cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<UserInfo> NewUserAsync(string name, string group, string? password, string? certificateThumbprint, bool enabled, string description, CancellationToken cancellationToken) =>
        (await CallAsync<UserInfo>("NewUser", Args(("name", name), ("group", group), ("password", password), ("certificateThumbprint", certificateThumbprint),
            ("enabled", enabled), ("description", description)), cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<UserInfo> SetUserAsync(string name, UserChange change, CancellationToken cancellationToken) =>
        (await CallAsync<UserInfo>("SetUser", Args(("name", name), ("change", ToNode(change))), cancellationToken).ConfigureAwait(false)).With(Origin);

    public Task RemoveUserAsync(string name, CancellationToken cancellationToken) => CallAsync("RemoveUser", Named(name), cancellationToken);

    public async Task<IReadOnlyList<GroupInfo>> GetGroupsAsync(CancellationToken cancellationToken) =>
        (await CallAsync<List<GroupInfo>>("GetGroups", [], cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<GroupInfo> GetGroupAsync(string name, CancellationToken cancellationToken) =>
        (await CallAsync<GroupInfo>("GetGroup", Named(name), cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<GroupInfo> NewGroupAsync(string name, GroupRights rights, IReadOnlyList<string> allowRules, string description, CancellationToken cancellationToken) =>
        (await CallAsync<GroupInfo>("NewGroup", Args(("name", name), ("rights", ToNode(rights)), ("allowRules", ToNode(allowRules)), ("description", description)),
            cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<GroupInfo> SetGroupAsync(string name, GroupChange change, CancellationToken cancellationToken) =>
        (await CallAsync<GroupInfo>("SetGroup", Args(("name", name), ("change", ToNode(change))), cancellationToken).ConfigureAwait(false)).With(Origin);

    public Task RemoveGroupAsync(string name, CancellationToken cancellationToken) => CallAsync("RemoveGroup", Named(name), cancellationToken);

    public async Task<ServerConfig> GetServerConfigAsync(CancellationToken cancellationToken) =>
        (await CallAsync<ServerConfig>("GetServerConfig", [], cancellationToken).ConfigureAwait(false)).With(Origin);

    public async Task<ServerConfig> SetServerConfigAsync(ServerConfigChange change, CancellationToken cancellationToken) =>
        (await CallAsync<ServerConfig>("SetServerConfig", Args(("change", ToNode(change))), cancellationToken).ConfigureAwait(false)).With(Origin);

    public Task StopServerAsync(CancellationToken cancellationToken) => CallAsync("StopServer", [], cancellationToken);

    /// <summary>Completes when the session's link is closed (by either side, or lost): after StopServer, once the server stopped.</summary>
    public Task Completion => _link.Completion;
}

using System.Text.Json.Serialization;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.Engine.Management;

/// <summary>Where an object of the management API came from (<see cref="QmTunnelOrigin.Kind"/>).</summary>
public enum OriginKind
{
    /// <summary>The server running in this process (LocalQmTunnelServer).</summary>
    InProcess,
    /// <summary>A server reached through a management session (QmTunnelSession).</summary>
    Session,
    /// <summary>This user's own pins of the servers its sessions connect to (ClientKnownServers), not a server's.</summary>
    ClientPins,
}

/// <summary>
/// Where an object a cmdlet outputs came from, like PSComputerName in remoting: the in-process server, a management
/// session's server, or this user's client pins. Set by the side that receives the object (LocalQmTunnelServer,
/// QmTunnelSession, ClientKnownServers), never sent on the wire, so a peer cannot claim one. The cmdlets that take
/// objects from the pipeline send each back to its origin. Only text and an id are properties (ConvertTo-Json and
/// Export-Csv show a few short fields); the session itself is reached with <see cref="GetSession"/>. It does not keep
/// the in-process engine alive and does not say whether its server still runs.
/// </summary>
public sealed class QmTunnelOrigin
{
    /// <summary>The text of an in-process origin (its <see cref="ToString"/>).</summary>
    public const string InProcessText = "in-process";

    /// <summary>The text of a client-pins origin (its <see cref="ToString"/>).</summary>
    public const string ClientPinsText = "client";

    private readonly QmTunnelSession? _session;

    private QmTunnelOrigin(OriginKind kind, string server, string? user, string? serverId, QmTunnelSession? session)
    {
        Kind = kind;
        Server = server;
        User = user;
        ServerId = serverId;
        _session = session;
    }

    public OriginKind Kind { get; }

    /// <summary>"in-process", the session's server address (qmt://host:port), or the client pin file's path.</summary>
    public string Server { get; }

    /// <summary>The user the session logged in as; null otherwise.</summary>
    public string? User { get; }

    /// <summary>The id of the running server instance that answered (a new one at each start); null for client pins.</summary>
    public string? ServerId { get; }

    /// <summary>The session the object came through; null for the in-process server and client pins.</summary>
    public QmTunnelSession? GetSession() => _session;

    /// <summary>What a table shows: "in-process", the session's address, or "client".</summary>
    public override string ToString() => Kind switch
    {
        OriginKind.InProcess => InProcessText,
        OriginKind.ClientPins => ClientPinsText,
        _ => Server,
    };

    internal static QmTunnelOrigin InProcess(string serverId) => new(OriginKind.InProcess, InProcessText, null, serverId, null);

    internal static QmTunnelOrigin ForSession(QmTunnelSession session) =>
        new(OriginKind.Session, session.Address, session.User, session.ServerId, session);

    internal static QmTunnelOrigin ClientPins(string filePath) => new(OriginKind.ClientPins, filePath, null, null, null);
}

/// <summary>
/// Base of the objects the management API answers with (tunnels, statistics, connections, users, groups, pins, server
/// information and configuration): each carries its <see cref="Origin"/>. The origin is not part of the object's
/// JSON (<see cref="JsonIgnoreAttribute"/>): the receiving side sets it.
/// </summary>
public abstract class QmTunnelObject
{
    /// <summary>Where this object came from; null for an object made elsewhere (a daemon's start report, a test).</summary>
    [JsonIgnore]
    public QmTunnelOrigin? Origin { get; internal set; }
}

/// <summary>Sets <see cref="QmTunnelObject.Origin"/> on answers as they are received.</summary>
internal static class OriginStamp
{
    public static T With<T>(this T item, QmTunnelOrigin? origin) where T : QmTunnelObject
    {
        item.Origin = origin;
        return item;
    }

    public static IReadOnlyList<T> With<T>(this IReadOnlyList<T> items, QmTunnelOrigin? origin) where T : QmTunnelObject
    {
        foreach (var item in items)
        {
            item.Origin = origin;
        }
        return items;
    }
}

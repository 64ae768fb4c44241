using QmTunnel.Engine.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

internal static partial class TunnelLog
{
    // Event ids: Diagnostics/EventIds.cs (tunnel runtime, 200-299).
    [LoggerMessage(EventId = EventIds.TunnelStarted, Level = LogLevel.Information, Message = "Tunnel {Name} started: {Listen} via {Hop} to {Target}")]
    public static partial void Started(ILogger logger, string name, string listen, string hop, string target);

    [LoggerMessage(EventId = EventIds.TunnelStopped, Level = LogLevel.Information, Message = "Tunnel {Name} stopped")]
    public static partial void Stopped(ILogger logger, string name);

    [LoggerMessage(EventId = EventIds.TunnelError, Level = LogLevel.Warning, Message = "Tunnel {Name}: {Error}")]
    public static partial void Error(ILogger logger, string name, string error);

    [LoggerMessage(EventId = EventIds.TunnelChainUp, Level = LogLevel.Information, Message = "Tunnel {Name}: the chain is up ({Mode}: held by a Hold stream)")]
    public static partial void ChainUp(ILogger logger, string name, string mode);

    [LoggerMessage(EventId = EventIds.TunnelChainIdle, Level = LogLevel.Information, Message = "Tunnel {Name}: no client for {Seconds} s: the chain is taken down (Idle)")]
    public static partial void ChainIdle(ILogger logger, string name, double seconds);

    [LoggerMessage(EventId = EventIds.TunnelDraining, Level = LogLevel.Information, Message = "Tunnel {Name}: no longer accepting; waiting up to {Seconds} s for {Count} open connections to finish")]
    public static partial void Draining(ILogger logger, string name, int count, double seconds);

    [LoggerMessage(EventId = EventIds.SocksClientRefused, Level = LogLevel.Debug, Message = "Tunnel {Name}: {Reason}")]
    public static partial void ClientRefused(ILogger logger, string name, string reason);
}

using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tunnels;

/// <summary>What a <see cref="StreamRouter"/> needs from its server: its name, links, settings, users and management.</summary>
internal sealed record StreamRouterContext(
    string ServerName,
    Func<LinkPool> Pool,
    LinkOptions LinkOptions,
    ILogger Logger,
    Func<string, (SecurityPrincipal? Principal, AllowRuleSet? Rules)> CurrentAccess,
    Func<Link, MuxStream, CancellationToken, Task> ServeManagement,
    TrafficCounters Transit,
    Action CountTransit)
{
    /// <summary>Dials the last server's UDP sockets from the server's outgoing UDP port range.</summary>
    public Endpoints.UdpAppEndpoint Udp { get; init; } = Endpoints.UdpAppEndpoint.Instance;

    /// <summary>The server's clock (timers of datagram relays).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Datagram counts of the Udp streams this server ends (the last server of their chain).</summary>
    public DatagramCounters Datagrams { get; init; } = new();
}

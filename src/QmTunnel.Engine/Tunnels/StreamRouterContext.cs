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
    Action CountTransit);

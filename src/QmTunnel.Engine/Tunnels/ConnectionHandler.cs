using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>Where a client connection goes: a target, or a refusal the handler already answered the client with.</summary>
internal readonly record struct ConnectionDecision(EndpointUri? Target, string? Refusal)
{
    public static ConnectionDecision To(EndpointUri target) => new(target, null);

    public static ConnectionDecision Refused(string reason) => new(null, reason);
}

/// <summary>
/// Runs between a listener's accept and the stream's Open and decides the connection's target: a fixed target
/// (<see cref="FixedTargetHandler"/>), or one the client names (SOCKS5). Whatever it picks is what the Open carries, so
/// every server of the chain checks it against its allow-rules. A handler that speaks to the client before the relay
/// (a SOCKS reply) waits for the chain's answer (<see cref="WaitsForOpen"/>) and is told the outcome.
/// </summary>
internal interface IConnectionHandler
{
    /// <summary>Whether the relay starts only after the chain acknowledged the stream (<see cref="OpenedAsync"/> / <see cref="FailedAsync"/> are called).</summary>
    bool WaitsForOpen { get; }

    /// <summary>The target of <paramref name="connection"/>, or a refusal (the handler answered and the runtime closes the connection).</summary>
    ValueTask<ConnectionDecision> ChooseTargetAsync(AppConnection connection, CancellationToken cancellationToken);

    /// <summary>The chain opened the target: tell the client, before any relayed byte.</summary>
    ValueTask OpenedAsync(AppConnection connection, CancellationToken cancellationToken);

    /// <summary>The chain refused or could not reach the target (<paramref name="code"/>, <paramref name="reason"/>): tell the client.</summary>
    ValueTask FailedAsync(AppConnection connection, ProtocolErrorCode code, string reason, CancellationToken cancellationToken);
}

/// <summary>Every connection goes to the tunnel's one target; bytes flow at once (before the chain's answer).</summary>
internal sealed class FixedTargetHandler(EndpointUri target) : IConnectionHandler
{
    public EndpointUri Target { get; } = target;

    public bool WaitsForOpen => false;

    public ValueTask<ConnectionDecision> ChooseTargetAsync(AppConnection connection, CancellationToken cancellationToken) =>
        ValueTask.FromResult(ConnectionDecision.To(Target));

    public ValueTask OpenedAsync(AppConnection connection, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask FailedAsync(AppConnection connection, ProtocolErrorCode code, string reason, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}

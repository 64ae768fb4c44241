using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// What the runtime does for a connection handler that lets clients choose their target and answers them before the
/// relay (SOCKS5, <see cref="Socks5Handler"/>): the owner's check of each target, the bounded wait for the chain's
/// answer, and a clean close so the client reads its reply.
/// </summary>
internal sealed partial class TunnelRuntime
{
    /// <summary>
    /// For a handler that lets clients choose (SOCKS5): the owner's check of each chosen target, null when allowed,
    /// else why not (the engine asks its users store: the owner's right and allow-rules now). The tunnel's creation
    /// could check its bind and servers only.
    /// </summary>
    public Func<Security.TunnelRequest, string?>? OwnerCheck { get; init; }

    /// <summary>What Get-QmTunnel and the log show as the target: the URI, or "(per connection)" for a socks5:// tunnel.</summary>
    public string TargetText => _target.Length == 0 ? PerConnection : _target;

    public const string PerConnection = "(per connection)";

    /// <summary>
    /// A handler that answers the client waits for the chain's answer, at most as long as every server of -Via may take to
    /// reach the next (<see cref="HoldAnswerTimeout"/>, on the tunnel's clock): null when opened, else the code and reason
    /// (TargetTimedOut when no answer came: the stream is reset).
    /// </summary>
    private async Task<(ProtocolErrorCode Code, string Reason)?> WaitOpenedAsync(MuxStream stream, CancellationToken cancellationToken)
    {
        var timeout = HoldAnswerTimeout;
        try
        {
            return await stream.Opened.WaitAsync(timeout, _time, cancellationToken).ConfigureAwait(false)
                ? null
                : (stream.ResetCode, stream.ResetReason ?? "the chain refused the connection");
        }
        catch (TimeoutException)
        {
            stream.Reset(ProtocolErrorCode.ConnectionReset, "no answer in time");
            return (ProtocolErrorCode.TargetTimedOut, $"the chain did not open the connection within {timeout} (ConnectTimeout for each server of -Via)");
        }
    }

    /// <summary>Closes a client the handler answered (a SOCKS reply) cleanly, so it reads the answer; else with a reset.</summary>
    private void Close(AppConnection client)
    {
        if (_handler.WaitsForOpen)
        {
            client.Dispose();
        }
        else
        {
            client.Abort();
        }
    }
}

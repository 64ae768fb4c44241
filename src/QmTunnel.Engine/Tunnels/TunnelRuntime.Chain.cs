using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Holding the chain up (Permanent and OnDemand tunnels): a Hold stream (docs/protocol.md) through the whole chain,
/// acknowledged by the last server, means every link is up and the last server accepts the tunnel; the state is
/// Connecting while one is being opened and Established while it is open. Permanent: opened whenever the tunnel runs,
/// and opened again after <see cref="ReconnectBackoff"/> when it fails or breaks, until the tunnel stops. OnDemand: Idle
/// until a client comes; that client opens it and waits for it within ConnectTimeout; a failed or broken Hold goes back
/// to Idle (the next client tries again); no client for IdleTimeout closes it (Idle). It does not carry the clients'
/// data: each client still has its own stream (TunnelRuntime.cs).
/// </summary>
internal sealed partial class TunnelRuntime
{
    // Lock order: _statsGate before _chainGate, never the other way.
    private readonly object _chainGate = new();
    private volatile TunnelState _chainState = TunnelState.Idle;
    private CancellationTokenSource? _holdStop;
    private Task _holdLoop = Task.CompletedTask;
    private TaskCompletionSource<string?> _chainUp = NewSignal();
    private ITimer? _idleTimer;
    private long _idleGeneration;
    private int _clients;

    /// <summary>Completed with null when the chain is up, or with why an attempt failed (OnDemand clients wait on it).</summary>
    private static TaskCompletionSource<string?> NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The longest wait for the last server's OpenAck of a Hold: each server of the chain may take ConnectTimeout to reach the next.</summary>
    private TimeSpan HoldAnswerTimeout => Profile.ConnectTimeout * Math.Max(1, Profile.Via.Count);

    /// <summary>Makes what is held match the mode of a running tunnel (at start, and when Set-QmTunnel changes the mode).</summary>
    private void ApplyMode()
    {
        var hasClients = Volatile.Read(ref _clients) > 0;
        lock (_chainGate)
        {
            DisarmIdleTimer();
            CancelHold();
            _chainState = TunnelState.Idle;
            if (Profile.Mode == TunnelMode.Permanent || (Profile.Mode == TunnelMode.OnDemand && hasClients))
            {
                StartHold(Profile.Mode);
            }
        }
    }

    /// <summary>OnDemand: the IdleTimeout changed; a running idle countdown starts again with the new value.</summary>
    private void RearmIdleTimer()
    {
        lock (_chainGate)
        {
            if (_idleTimer is not null)
            {
                ArmIdleTimer();
            }
        }
    }

    /// <summary>
    /// OnDemand, for a new client: brings the chain up if it is not (or joins the attempt in progress) and waits for it
    /// within ConnectTimeout. Null when it is up, else why not (the client is then refused).
    /// </summary>
    private async Task<string?> DemandChainAsync(CancellationToken cancellationToken)
    {
        TaskCompletionSource<string?> signal;
        lock (_chainGate)
        {
            DisarmIdleTimer();
            if (_chainState == TunnelState.Established)
            {
                return null;
            }
            if (_holdStop is null)
            {
                StartHold(TunnelMode.OnDemand);
            }
            signal = _chainUp;
        }
        try
        {
            var failure = await signal.Task.WaitAsync(Profile.ConnectTimeout, _time, cancellationToken).ConfigureAwait(false);
            return failure is null ? null : $"on-demand tunnel '{Profile.Name}' could not bring its chain up for this client: {failure}";
        }
        catch (TimeoutException)
        {
            return $"on-demand tunnel '{Profile.Name}' did not get its chain up within ConnectTimeout ({Profile.ConnectTimeout}) for this client" +
                (LastError is { } last ? $"; the last error: {last}" : "; check that every server of -Via runs (Get-QmTunnel shows the state)");
        }
    }

    /// <summary>Called (under the stats lock) when the last client connection closed: OnDemand counts down IdleTimeout.</summary>
    private void NoClientLeft()
    {
        lock (_chainGate)
        {
            if (Profile.Mode == TunnelMode.OnDemand && _holdStop is not null)
            {
                ArmIdleTimer();
            }
        }
    }

    private void ArmIdleTimer()
    {
        _idleTimer?.Dispose();
        var generation = ++_idleGeneration;
        _idleTimer = _time.CreateTimer(_ => OnIdleTimeout(generation), null, Profile.IdleTimeout, Timeout.InfiniteTimeSpan);
    }

    private void DisarmIdleTimer()
    {
        _idleTimer?.Dispose();
        _idleTimer = null;
        _idleGeneration++;
    }

    private void OnIdleTimeout(long generation)
    {
        lock (_statsGate)
        {
            if (_open.Count > 0)
            {
                return;
            }
            lock (_chainGate)
            {
                if (generation != _idleGeneration || Profile.Mode != TunnelMode.OnDemand || _holdStop is null)
                {
                    return;
                }
                DisarmIdleTimer();
                CancelHold();
                _chainState = TunnelState.Idle;
            }
        }
        TunnelLog.ChainIdle(_logger, Profile.Name, Profile.IdleTimeout.TotalSeconds);
    }

    /// <summary>Under the chain lock: a new hold loop (the previous one was cancelled or ended).</summary>
    private void StartHold(TunnelMode mode)
    {
        var stop = new CancellationTokenSource();
        _holdStop = stop;
        _chainState = TunnelState.Connecting;
        if (_chainUp.Task.IsCompleted)
        {
            _chainUp = NewSignal();
        }
        _holdLoop = Task.Run(() => HoldLoopAsync(mode, stop));
    }

    /// <summary>Under the chain lock: the hold loop stops (an open Hold is closed with Fin).</summary>
    private void CancelHold()
    {
        _holdStop?.Cancel();
        _holdStop = null;
    }

    /// <summary>Stopping the tunnel: the Hold is closed, waiting clients are told, and the loop has ended on return.</summary>
    private async Task StopChainAsync()
    {
        Task loop;
        lock (_chainGate)
        {
            DisarmIdleTimer();
            CancelHold();
            loop = _holdLoop;
            _chainState = TunnelState.Idle;
            _chainUp.TrySetResult("the tunnel is stopping");
            _chainUp = NewSignal();
        }
        await loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private async Task HoldLoopAsync(TunnelMode mode, CancellationTokenSource stop)
    {
        var token = stop.Token;
        var backoff = ReconnectBackoff.For(_firstHop.Timing);
        while (!token.IsCancellationRequested)
        {
            var (hold, failure) = await OpenHoldAsync(token).ConfigureAwait(false);
            if (hold is not null)
            {
                backoff.Reset();
                OnChainUp(mode, token);
                failure = await HoldUntilBrokenAsync(hold, token).ConfigureAwait(false);
                EndBind(hold);
            }
            if (token.IsCancellationRequested || failure is null)
            {
                return;
            }
            RecordChainError(failure);
            lock (_chainGate)
            {
                if (token.IsCancellationRequested)
                {
                    return;
                }
                _chainUp.TrySetResult(failure);
                _chainUp = NewSignal();
                if (mode == TunnelMode.OnDemand)
                {
                    // One attempt per demand: the next client tries again.
                    DisarmIdleTimer();
                    _holdStop = null;
                    _chainState = TunnelState.Idle;
                    return;
                }
                _chainState = TunnelState.Connecting;
            }
            await Task.Delay(backoff.Next(), _time, token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void OnChainUp(TunnelMode mode, CancellationToken token)
    {
        var hasClients = Volatile.Read(ref _clients) > 0;
        lock (_chainGate)
        {
            if (token.IsCancellationRequested)
            {
                return;
            }
            _chainState = TunnelState.Established;
            _chainUp.TrySetResult(null);
            if (mode == TunnelMode.OnDemand && !hasClients)
            {
                ArmIdleTimer();
            }
        }
        TunnelLog.ChainUp(_logger, Profile.Name, mode.ToString());
    }

    /// <summary>Dials the first hop (or takes its link) and opens a Hold; the stream once the last server acknowledged it, else why not.</summary>
    private async Task<(MuxStream? Hold, string? Failure)> OpenHoldAsync(CancellationToken token)
    {
        Link link;
        try
        {
            link = await _links.GetAsync(_firstHop, _firstLogin, Profile.ConnectTimeout, token, Session).ConfigureAwait(false);
        }
        catch (QmTunnelException ex)
        {
            return (null, $"the chain is down ({ex.ErrorId}): {ex.Message}");
        }
        catch (OperationCanceledException)
        {
            return (null, null);
        }
        if (IsReverse)
        {
            return await OpenBindAsync(link, token).ConfigureAwait(false); // TunnelRuntime.Reverse.cs
        }
        MuxStream hold;
        try
        {
            hold = link.OpenStream(NewOpen(StreamProtocol.Hold, OpenOptions.None, "hold"), new TrafficCounters(), 0);
        }
        catch (StreamResetException ex)
        {
            return (null, Down(ex.Code, ex.Message));
        }
        var timeout = HoldAnswerTimeout;
        try
        {
            return await hold.Opened.WaitAsync(timeout, _time, token).ConfigureAwait(false)
                ? (hold, null)
                : (null, Down(hold.ResetCode, hold.ResetReason ?? "reset"));
        }
        catch (TimeoutException)
        {
            hold.Reset(ProtocolErrorCode.ConnectionReset, "no answer in time");
            return (null, $"the chain is down: its last server did not answer within {timeout} (ConnectTimeout for each server of -Via)");
        }
        catch (OperationCanceledException)
        {
            hold.Reset(ProtocolErrorCode.ConnectionReset, "the tunnel no longer holds its chain");
            return (null, null);
        }
    }

    /// <summary>Waits while the Hold is open: why it broke, or null when the tunnel closed it (cancelled: Fin sent).</summary>
    private static async Task<string?> HoldUntilBrokenAsync(MuxStream hold, CancellationToken token)
    {
        try
        {
            await hold.ReadToEndAsync(0, token).ConfigureAwait(false);
            return "the chain is down: its last server closed the Hold stream";
        }
        catch (StreamResetException ex)
        {
            return Down(ex.Code, ex.Message);
        }
        catch (InvalidDataException)
        {
            hold.Reset(ProtocolErrorCode.ConnectionReset, "a Hold stream carries no data");
            return "the chain is down: its last server sent data on the Hold stream (a server of another version?)";
        }
        catch (OperationCanceledException)
        {
            hold.SendFin();
            return null;
        }
    }

    private static string Down(ProtocolErrorCode code, string reason) => $"the chain is down ({code}): {reason}";

    /// <summary>Each failed attempt is LastError; only a new reason is logged (a server down for hours logs once, not every 10 s).</summary>
    private void RecordChainError(string message)
    {
        if (string.Equals(message, LastError, StringComparison.Ordinal))
        {
            LastErrorAt = _time.GetUtcNow();
            return;
        }
        RecordError(message);
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// A RemoteToLocal (reverse) tunnel on its owning server (docs/architecture.md, "Reverse tunnels"): nothing listens
/// here; the permanent-tunnel machinery (TunnelRuntime.Chain.cs) holds a Bind stream instead of a Hold, which makes the
/// last server of -Via listen; each client it accepts comes back as a Reverse stream of that Bind (registered in
/// <see cref="Binds"/> on the link it was opened on), and this runtime connects it to the target and relays, counted
/// in the tunnel's statistics and connection list like a local tunnel's clients.
/// </summary>
internal sealed partial class TunnelRuntime
{
    private (ProtocolErrorCode Code, string Reason)? _lastBindRefusal;

    /// <summary>The Binds of this server (the engine's router's), where a reverse tunnel registers its Bind.</summary>
    internal ReverseBinds? Binds { get; init; }

    private bool IsReverse => Profile.Direction == TunnelDirection.RemoteToLocal;

    /// <summary>
    /// Starts a reverse tunnel: the Bind loop runs (Permanent) and the first attempt is waited for (at most the time a
    /// Bind may take): refused by a server of the chain (PermissionDenied) or unable to listen there (PortInUse,
    /// BindFailed), the tunnel stops and the error is thrown with its id; any other failure (a server not reachable yet)
    /// leaves it running and redialing (Connecting, LastError says why). <paramref name="unattended"/> (started again with
    /// its server): nobody sees an error, and a listener held by the owner's previous run is taken over once the far
    /// server notices that run's link is gone, so a refusal too leaves it running and redialing.
    /// </summary>
    private async Task StartReverseAsync(CancellationToken cancellationToken, bool unattended)
    {
        _stop = new CancellationTokenSource();
        StartedAt = _time.GetUtcNow();
        _lastBindRefusal = null;
        _state = TunnelState.Listening;
        TunnelLog.Started(_logger, Profile.Name, $"{_listen} on {_hopServers[^1]} (reverse)", _firstHop.ToString(), _target);
        Task<string?> first;
        lock (_chainGate)
        {
            ApplyMode();
            first = _chainUp.Task;
        }
        string? failure;
        try
        {
            failure = await first.WaitAsync(HoldAnswerTimeout + Profile.ConnectTimeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return;
        }
        if (failure is null || unattended || _lastBindRefusal is not { } refusal)
        {
            return;
        }
        await StopAsync().ConfigureAwait(false);
        _state = TunnelState.Failed;
        RecordError(refusal.Reason);
        var (id, kind) = refusal.Code switch
        {
            ProtocolErrorCode.PortInUse => (ErrorIds.PortInUse, QmErrorKind.ResourceBusy),
            ProtocolErrorCode.PermissionDenied => (ErrorIds.PermissionDenied, QmErrorKind.PermissionDenied),
            _ => (ErrorIds.BindFailed, QmErrorKind.ResourceUnavailable),
        };
        throw new QmTunnelException(id, kind, Profile.Listen, $"Reverse tunnel '{Profile.Name}' cannot listen on {Profile.Listen} at {_hopServers[^1]}: {refusal.Reason}");
    }

    /// <summary>
    /// Opens the Bind on <paramref name="link"/> (registered before its Open leaves) and waits for the last server's
    /// OpenAck and bound endpoint; the Bind, or why not (the registration is then gone).
    /// </summary>
    private async Task<(MuxStream? Hold, string? Failure)> OpenBindAsync(Link link, CancellationToken token)
    {
        var binds = Binds ?? throw new InvalidOperationException("a reverse tunnel needs the server's Bind table");
        var options = (Profile.NoDelay ? OpenOptions.NoDelay : OpenOptions.None) | (Profile.KeepAlive ? OpenOptions.KeepAlive : OpenOptions.None);
        MuxStream bind;
        try
        {
            bind = link.OpenStream(NewOpen(StreamProtocol.Bind, options, "bind"), new TrafficCounters(), 0,
                created => binds.Register(created, Profile.Name, Profile.MaxConnections, AcceptReverseAsync));
        }
        catch (StreamResetException ex)
        {
            return (null, Down(ex.Code, ex.Message));
        }
        var timeout = HoldAnswerTimeout;
        string? failure;
        try
        {
            failure = await bind.Opened.WaitAsync(timeout, _time, token).ConfigureAwait(false)
                ? await ReadBoundAsync(bind).WaitAsync(timeout, _time, token).ConfigureAwait(false)
                : Refused(bind);
        }
        catch (TimeoutException)
        {
            bind.Reset(ProtocolErrorCode.ConnectionReset, "no answer in time");
            failure = $"the far listener is down: the last server did not answer the Bind within {timeout} (ConnectTimeout for each server of -Via)";
        }
        catch (OperationCanceledException)
        {
            bind.Reset(ProtocolErrorCode.ConnectionReset, "the tunnel no longer holds its listener");
            binds.Unregister(bind);
            return (null, null);
        }
        catch (StreamResetException)
        {
            failure = Refused(bind);
        }
        if (failure is null)
        {
            return (bind, null);
        }
        binds.Unregister(bind);
        return (null, failure);
    }

    /// <summary>Why the Bind was reset (remembered: a refusal of the first attempt fails Start-QmTunnel).</summary>
    private string Refused(MuxStream bind)
    {
        var reason = bind.ResetReason ?? "reset";
        if (bind.ResetCode is ProtocolErrorCode.PermissionDenied or ProtocolErrorCode.PortInUse or ProtocolErrorCode.BindFailed)
        {
            _lastBindRefusal = (bind.ResetCode, reason);
        }
        return Down(bind.ResetCode, reason);
    }

    /// <summary>Reads the Bind's answer (u16 length, the bound endpoint): null once <see cref="BoundListen"/> shows it, else why not.</summary>
    private async Task<string?> ReadBoundAsync(MuxStream bind)
    {
        while (true)
        {
            ReadResult result;
            try
            {
                result = await bind.Input.ReadAsync().ConfigureAwait(false);
            }
            catch (Exception) when (bind.IsReset)
            {
                return Refused(bind);
            }
            var buffer = result.Buffer;
            if (buffer.Length >= 2)
            {
                var length = (ushort)((buffer.Slice(0, 1).FirstSpan[0] << 8) | buffer.Slice(1, 1).FirstSpan[0]);
                if (2 + length > FarListener.MaxAnswerBytes)
                {
                    bind.Input.AdvanceTo(buffer.Start);
                    bind.Reset(ProtocolErrorCode.ConnectionReset, "the Bind's answer is too long");
                    return $"the last server answered the Bind with {length} bytes for its endpoint (at most {FarListener.MaxAnswerBytes - 2})";
                }
                if (buffer.Length >= 2 + length)
                {
                    var text = buffer.Slice(2, length);
                    string bound;
                    try
                    {
                        bound = EndpointUri.ParseApplication(new UTF8Encoding(false, true).GetString(text.ToArray()), "Bound").ToString();
                    }
                    catch (Exception ex) when (ex is QmTunnelException or DecoderFallbackException)
                    {
                        bind.Input.AdvanceTo(buffer.Start);
                        bind.Reset(ProtocolErrorCode.ConnectionReset, "the Bind's answer is not an endpoint");
                        return $"the last server answered the Bind with something that is not an endpoint ({ex.Message})";
                    }
                    bind.Input.AdvanceTo(buffer.GetPosition(2 + length));
                    bind.Consumed(2 + length);
                    BoundListen = bound;
                    return null;
                }
            }
            if (result.IsCompleted)
            {
                bind.Input.AdvanceTo(buffer.End);
                return "the far listener is down: the last server closed the Bind without saying where it listens";
            }
            bind.Input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>After a Bind ended: its registration goes, and the far listener it made is no longer shown.</summary>
    private void EndBind(MuxStream? hold)
    {
        if (hold is not null && IsReverse)
        {
            Binds?.Unregister(hold);
            BoundListen = null;
        }
    }

    /// <summary>
    /// A Reverse stream of this tunnel's Bind: one client of the far listener. Refused over MaxConnections (counted as
    /// rejected); else connected to the target from this server and relayed, in the tunnel's connections and counters.
    /// </summary>
    private Task AcceptReverseAsync(MuxStream stream, OpenMessage open, CancellationToken serverStop)
    {
        Task task;
        lock (_statsGate)
        {
            var stop = _stop;
            if (stop is null || !IsRunning)
            {
                stream.Reset(ProtocolErrorCode.TunnelStopped, $"reverse tunnel '{Profile.Name}' is stopping");
                return Task.CompletedTask;
            }
            if (_open.Count >= Profile.MaxConnections)
            {
                _rejected++;
                stream.Reset(ProtocolErrorCode.StreamLimit, $"reverse tunnel '{Profile.Name}' has MaxConnections ({Profile.MaxConnections}) open");
                RecordError($"refused a client from {open.Client}: MaxConnections ({Profile.MaxConnections}) are open");
                return Task.CompletedTask;
            }
            var record = Connections.Add(open.Client, _target, stream.Counters, reverse: true);
            _open.Add(record);
            Interlocked.Increment(ref _clients);
            _total++;
            task = RelayReverseAsync(stream, record, stop.Token);
            _connections.Add(task);
            _ = task.ContinueWith(t =>
            {
                lock (_statsGate)
                {
                    _connections.Remove(t);
                }
            }, TaskScheduler.Default);
        }
        return task;
    }

    private async Task RelayReverseAsync(MuxStream stream, ConnectionRecord record, CancellationToken cancellationToken)
    {
        await Task.Yield();
        string? error = null;
        var failed = false;
        try
        {
            var options = (Profile.NoDelay ? OpenOptions.NoDelay : OpenOptions.None) | (Profile.KeepAlive ? OpenOptions.KeepAlive : OpenOptions.None);
            var target = EndpointUri.ParseTarget(_target, "Target");
            var (connection, why) = await TargetDialer.ConnectAsync(target, options, Profile.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            if (connection is null)
            {
                error = $"cannot connect to {target} from {_linkOptions.ServerName}: {why}";
                failed = true;
                stream.Reset(ProtocolErrorCode.TargetConnectFailed, error);
                return;
            }
            stream.SendOpenAck();
            record.State = ConnectionState.Open;
            // A UDP target: the far listener's association carried as datagrams; this side runs its idle timer.
            var result = connection.IsDatagram
                ? await DatagramRelay.RunAsync(connection, stream, record.Datagrams ??= DatagramCounters.FacingTarget(), _time, Profile.UdpIdleTimeout, cancellationToken).ConfigureAwait(false)
                : await Relay.RunAsync(connection, stream, _linkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
            if (!result.Clean)
            {
                error = result.Error ?? result.ResetCode.ToString();
            }
        }
        finally
        {
            if (error is not null && !cancellationToken.IsCancellationRequested)
            {
                RecordError(error);
            }
            if (failed)
            {
                Interlocked.Increment(ref _failed);
            }
            lock (_statsGate)
            {
                _open.Remove(record);
                Interlocked.Decrement(ref _clients);
                _closedIn += record.BytesFromClient;
                _closedOut += record.BytesToClient;
                _closedLinkSent += record.Counters.LinkBytesSent;
                _closedLinkReceived += record.Counters.LinkBytesReceived;
                if (record.Datagrams is { } datagrams)
                {
                    _closedDatagrams.Add(datagrams);
                }
                Connections.Close(record, error);
            }
        }
    }
}

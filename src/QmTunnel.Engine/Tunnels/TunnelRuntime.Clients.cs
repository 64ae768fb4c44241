using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The tunnel's clients: the accept loop (MaxConnections, accept errors) and each connection's life (on-demand chain,
/// the handler's target, the owner's check, the stream, the relay of bytes or datagrams, and its bookkeeping).
/// </summary>
internal sealed partial class TunnelRuntime
{
    private async Task AcceptLoopAsync(IAppListener listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            AppConnection client;
            try
            {
                client = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (AppAcceptException) when (_state == TunnelState.Stopping)
            {
                return;
            }
            catch (AppAcceptException ex) when (ex.Transient)
            {
                continue;
            }
            catch (AppAcceptException ex)
            {
                RecordError(ex.Message);
                await Task.Delay(50, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            lock (_statsGate)
            {
                if (_open.Count >= Profile.MaxConnections)
                {
                    _rejected++;
                    client.Abort();
                    if (client is UdpAssociation refused)
                    {
                        _closedDatagrams.Add(refused.Counters); // its datagrams were dropped (counted by Abort)
                    }
                    RecordError($"refused a client: MaxConnections ({Profile.MaxConnections}) are open");
                    continue;
                }
                var record = Connections.Add(client.Remote, _target);
                record.Datagrams = (client as UdpAssociation)?.Counters ?? (client.IsDatagram ? new DatagramCounters() : null);
                _open.Add(record);
                Interlocked.Increment(ref _clients);
                _total++;
                var task = HandleClientAsync(client, record, cancellationToken);
                _connections.Add(task);
                _ = task.ContinueWith(t =>
                {
                    lock (_statsGate)
                    {
                        _connections.Remove(t);
                    }
                }, TaskScheduler.Default);
            }
        }
    }

    private async Task HandleClientAsync(AppConnection client, ConnectionRecord record, CancellationToken cancellationToken)
    {
        await Task.Yield();
        string? error = null;
        var failed = false;
        var quiet = false;
        try
        {
            client.SetOptions(Profile.NoDelay, Profile.KeepAlive);
            if (Profile.Mode == TunnelMode.OnDemand && await DemandChainAsync(cancellationToken).ConfigureAwait(false) is { } down)
            {
                error = down;
                failed = true;
                client.Abort();
                return;
            }
            var decision = await _handler.ChooseTargetAsync(client, cancellationToken).ConfigureAwait(false);
            if (decision.Target is not { } target)
            {
                // the handler answered the client (a malformed SOCKS request): the connection's error, not the tunnel's
                error = decision.Refusal ?? "refused by the connection handler";
                failed = true;
                quiet = true;
                TunnelLog.ClientRefused(_logger, Profile.Name, error);
                Close(client);
                return;
            }
            record.Target = target.ToString();
            if (_handler is not FixedTargetHandler && OwnerCheck?.Invoke(Security.AccessControl.RequestFor(_listen, _hops, target)) is { } denial)
            {
                error = "The connection was refused by " + denial;
                failed = true;
                await _handler.FailedAsync(client, ProtocolErrorCode.PermissionDenied, error, cancellationToken).ConfigureAwait(false);
                Close(client);
                return;
            }
            Link link;
            try
            {
                link = await _links.GetAsync(_firstHop, _firstLogin, Profile.ConnectTimeout, cancellationToken, Session).ConfigureAwait(false);
            }
            catch (QmTunnelException ex)
            {
                error = ex.Message;
                failed = true;
                await _handler.FailedAsync(client, ProtocolErrorCode.TargetConnectFailed, ex.Message, cancellationToken).ConfigureAwait(false);
                Close(client);
                return;
            }
            var options = (Profile.NoDelay ? OpenOptions.NoDelay : OpenOptions.None) | (Profile.KeepAlive ? OpenOptions.KeepAlive : OpenOptions.None);
            var open = NewOpen(client.IsDatagram ? StreamProtocol.Udp : StreamProtocol.Tcp, options, record.Client, record.Target);
            MuxStream stream;
            try
            {
                stream = link.OpenStream(open, record.Counters, Profile.BufferSize);
            }
            catch (StreamResetException ex)
            {
                error = ex.Message;
                failed = true;
                await _handler.FailedAsync(client, ex.Code, ex.Message, cancellationToken).ConfigureAwait(false);
                Close(client);
                return;
            }
            if (_handler.WaitsForOpen)
            {
                if (await WaitOpenedAsync(stream, cancellationToken).ConfigureAwait(false) is { } refused)
                {
                    error = refused.Reason;
                    failed = true;
                    await _handler.FailedAsync(client, refused.Code, error, cancellationToken).ConfigureAwait(false);
                    Close(client);
                    return;
                }
                await _handler.OpenedAsync(client, cancellationToken).ConfigureAwait(false);
            }
            _ = stream.Opened.ContinueWith(t =>
            {
                if (t.Result && record.State == ConnectionState.Connecting)
                {
                    record.State = ConnectionState.Open;
                }
            }, TaskScheduler.Default);
            var result = client.IsDatagram
                ? await DatagramRelay.RunAsync(client, stream, record.Datagrams ?? new DatagramCounters(), _time, Profile.UdpIdleTimeout, cancellationToken).ConfigureAwait(false)
                : await Relay.RunAsync(client, stream, _linkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
            if (!result.Clean)
            {
                error = result.Error ?? result.ResetCode.ToString();
                if (ProtocolErrorCodes.IsTargetFailure(result.ResetCode) || result.ResetCode == ProtocolErrorCode.LinkLimit)
                {
                    failed = true;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            error = ex.Message;
            client.Abort();
        }
        finally
        {
            if (error is not null && !quiet && !cancellationToken.IsCancellationRequested)
            {
                RecordError(error);
            }
            if (failed)
            {
                // After LastError: whoever sees the count rise sees the error that raised it.
                Interlocked.Increment(ref _failed);
            }
            lock (_statsGate)
            {
                _open.Remove(record);
                Interlocked.Decrement(ref _clients);
                _closedIn += record.Counters.AppBytesIn;
                _closedOut += record.Counters.AppBytesOut;
                _closedLinkSent += record.Counters.LinkBytesSent;
                _closedLinkReceived += record.Counters.LinkBytesReceived;
                if (record.Datagrams is { } datagrams)
                {
                    _closedDatagrams.Add(datagrams);
                }
                Connections.Close(record, error);
                if (_open.Count == 0)
                {
                    NoClientLeft();
                }
            }
        }
    }
}

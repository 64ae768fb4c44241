using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The far listeners of this server (the last server of reverse tunnels): at most <see cref="MaxPerUser"/> per user;
/// a new Bind of the same user and tunnel for an endpoint still held by a Bind whose link is waiting to resume (the
/// stale-listener case: an owner that came back on a new link session while the old one has not expired yet), or that
/// came on the same link (the owner replaced its Bind), takes the endpoint over; one held over another link that is
/// up keeps it (the new one gets PortInUse), so two owners of one name do not take it from each other in turn.
/// </summary>
internal sealed class FarListeners
{
    /// <summary>Far listeners one user may hold on this server at once.</summary>
    public const int MaxPerUser = 64;

    private readonly List<FarListener> _listeners = [];
    private readonly Dictionary<string, int> _perUser = new(StringComparer.Ordinal); // Binds being served, by user: checked and counted under one lock

    public int Count
    {
        get
        {
            lock (_listeners)
            {
                return _listeners.Count;
            }
        }
    }

    /// <summary>The Bind streams served now: the link each came on and its id (tests).</summary>
    public IReadOnlyList<(Link Link, uint BindId)> Binds
    {
        get
        {
            lock (_listeners)
            {
                return _listeners.Select(l => (l.Bind.Link, l.Bind.Id)).ToList();
            }
        }
    }

    /// <summary>Serves one admitted Bind at the last server until it ends (the owner's Fin, a reset, the server stopping).</summary>
    public async Task ServeAsync(FarListener.Context context, CancellationToken cancellationToken)
    {
        FarListener? stale = null;
        lock (_listeners)
        {
            var held = _perUser.GetValueOrDefault(context.User);
            if (held >= MaxPerUser)
            {
                var refusal = $"{context.ServerName}: user '{context.User}' already holds {MaxPerUser} reverse-tunnel listeners on this server (the most one user may hold); stop one of those tunnels first.";
                ReverseLog.BindRefused(context.Logger, context.Open.Tunnel, context.User, refusal);
                context.Bind.Reset(ProtocolErrorCode.StreamLimit, refusal);
                return;
            }
            _perUser[context.User] = held + 1;
            stale = _listeners.FirstOrDefault(l => l.User == context.User && l.Tunnel == context.Open.Tunnel
                && string.Equals(l.Requested, context.Open.Listen, StringComparison.OrdinalIgnoreCase)
                && (l.Bind.Link.State == LinkState.Resuming || ReferenceEquals(l.Bind.Link, context.Bind.Link)));
        }
        FarListener? listener = null;
        try
        {
            if (stale is not null)
            {
                ReverseLog.BindReplaced(context.Logger, stale.Tunnel, stale.User, stale.Requested);
                await stale.CloseAsync(ProtocolErrorCode.Shutdown, $"{context.ServerName}: the listener was taken over by a new Bind of tunnel '{stale.Tunnel}' from {context.Bind.Link.RemoteEndPoint}").ConfigureAwait(false);
            }
            listener = await FarListener.OpenAsync(context, cancellationToken).ConfigureAwait(false);
            if (listener is null)
            {
                return;
            }
            lock (_listeners)
            {
                _listeners.Add(listener);
            }
            await listener.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_listeners)
            {
                if (listener is not null)
                {
                    _listeners.Remove(listener);
                }
                if (--_perUser[context.User] == 0)
                {
                    _perUser.Remove(context.User);
                }
            }
        }
    }
}

/// <summary>
/// One reverse tunnel's listener on the last server: bound for the Bind stream's life, it opens a Reverse stream back
/// on the Bind's link for each client (at most the Bind's MaxConnections at once; more are closed at once) and relays.
/// </summary>
internal sealed class FarListener
{
    /// <summary>Longest bound-endpoint answer a Bind carries (u16 length + UTF-8).</summary>
    public const int MaxAnswerBytes = 2 + 512;

    internal sealed record Context(string ServerName, string User, MuxStream Bind, OpenMessage Open, LinkOptions LinkOptions, ILogger Logger,
        TrafficCounters Transit, Action CountTransit, TimeProvider Time);

    private readonly Context _context;
    private readonly IAppListener _listener;
    private readonly string _bound;
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _open;

    private FarListener(Context context, IAppListener listener)
    {
        _context = context;
        _listener = listener;
        _bound = listener.Bound.ToString();
    }

    public string User => _context.User;
    public string Tunnel => _context.Open.Tunnel;
    public string Requested => _context.Open.Listen;
    public MuxStream Bind => _context.Bind;

    /// <summary>Binds the listener the Bind asks for; null after resetting the Bind with PortInUse or BindFailed naming this server and the port.</summary>
    public static async Task<FarListener?> OpenAsync(Context context, CancellationToken cancellationToken)
    {
        var open = context.Open;
        string? refusal = null;
        var code = ProtocolErrorCode.BindFailed;
        try
        {
            var listen = ListenOf(open);
            if (listen.Scheme == EndpointScheme.Socks5)
            {
                throw new QmTunnelException(ErrorIds.BindFailed, QmErrorKind.InvalidArgument, listen.ToString(),
                    $"{context.ServerName}: a reverse tunnel's far listener is tcp://, udp://, unix:/// or pipe://, not {listen}.");
            }
            var listener = await AppEndpoint.For(listen.Scheme).ListenAsync(listen, new AppListenOptions(
                $"{context.ServerName} (reverse tunnel '{open.Tunnel}' of user '{context.User}')",
                $"Free it on {context.ServerName}, or choose another one with Set-QmTunnel -Name {open.Tunnel} -Listen.",
                $"Give an address of {context.ServerName} and a port (or path) it may bind in -Listen."), cancellationToken).ConfigureAwait(false);
            return new FarListener(context, listener);
        }
        catch (QmTunnelException ex)
        {
            code = ex.ErrorId == ErrorIds.PortInUse ? ProtocolErrorCode.PortInUse : ProtocolErrorCode.BindFailed;
            refusal = ex.Message;
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or ProtocolException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            refusal = $"{context.ServerName} (reverse tunnel '{open.Tunnel}' of user '{context.User}') cannot listen on {open.Listen}: {ex.Message}";
        }
        catch (OperationCanceledException)
        {
            refusal = $"{context.ServerName} is stopping";
            code = ProtocolErrorCode.Shutdown;
        }
        ReverseLog.BindRefused(context.Logger, open.Tunnel, context.User, refusal);
        context.Bind.Reset(code, refusal);
        return null;
    }

    /// <summary>The endpoint a Bind's listen field names: <c>host:port</c> (tcp), <c>udp://host:port</c>, or a path endpoint's URI (unix, pipe).</summary>
    internal static EndpointUri ListenOf(OpenMessage open) =>
        EndpointUri.ParseApplication(AccessControl.IsPathText(open.Listen) || AccessControl.IsUdpText(open.Listen) ? open.Listen : "tcp://" + open.Listen, "Listen");

    /// <summary>
    /// Answers the Bind (OpenAck and the bound endpoint), accepts until the Bind ends, then closes the listener (the port
    /// is free on return) and answers the owner's Fin with Fin.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var bind = _context.Bind;
        ReverseLog.Listening(_context.Logger, Tunnel, User, _bound, bind.Link.RemoteEndPoint);
        bind.SendOpenAck();
        var why = "the owner closed the tunnel";
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        var accepting = Task.Run(() => AcceptLoopAsync(stop.Token, cancellationToken), CancellationToken.None);
        try
        {
            await bind.SendAsync(Answer(_bound), stop.Token).ConfigureAwait(false);
            await bind.ReadToEndAsync(0, stop.Token).ConfigureAwait(false);
            bind.SendFin();
        }
        catch (StreamResetException ex)
        {
            why = $"the Bind was reset: {ex.Code}, {ex.Message}";
        }
        catch (InvalidDataException)
        {
            why = "the owner sent data on the Bind";
            bind.Reset(ProtocolErrorCode.ConnectionReset, $"{_context.ServerName}: a Bind stream carries no data from its owner");
        }
        catch (OperationCanceledException)
        {
            why = _closed.IsCancellationRequested ? "taken over by a new Bind" : "the server is stopping";
            bind.Reset(ProtocolErrorCode.Shutdown, _closed.IsCancellationRequested ? "the listener was taken over by a new Bind" : $"{_context.ServerName} is stopping");
        }
        finally
        {
            _listener.Dispose();
            await stop.CancelAsync().ConfigureAwait(false);
            await accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            ReverseLog.ListenerClosed(_context.Logger, Tunnel, User, _bound, why);
            _ended.TrySetResult();
        }
    }

    /// <summary>Closes this listener for a new Bind (the port is free on return).</summary>
    public async Task CloseAsync(ProtocolErrorCode code, string reason)
    {
        _context.Bind.Reset(code, reason);
        _closed.Cancel();
        await _ended.Task.ConfigureAwait(false);
    }

    /// <summary>The Bind's answer after its OpenAck: u16 length, the bound endpoint (UTF-8).</summary>
    internal static byte[] Answer(string bound)
    {
        var text = Encoding.UTF8.GetBytes(bound);
        var answer = new byte[2 + text.Length];
        BinaryPrimitives.WriteUInt16BigEndian(answer, (ushort)text.Length);
        text.CopyTo(answer, 2);
        return answer;
    }

    /// <summary>Accepts until <paramref name="cancellationToken"/> (the listener closes); clients relay until <paramref name="server"/> (they outlive the listener, as a local tunnel's do its stop's drain).</summary>
    private async Task AcceptLoopAsync(CancellationToken cancellationToken, CancellationToken server)
    {
        var max = (int)_context.Open.MaxConnections;
        var noDelay = (_context.Open.Options & OpenOptions.NoDelay) != 0;
        var keepAlive = (_context.Open.Options & OpenOptions.KeepAlive) != 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            AppConnection client;
            try
            {
                client = await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (AppAcceptException ex) when (ex.Transient)
            {
                continue;
            }
            catch (AppAcceptException ex)
            {
                // The listener is unusable for now (out of descriptors): said once per failure, tried again shortly.
                ReverseLog.ClientRefused(_context.Logger, Tunnel, "?", ex.Message);
                await Task.Delay(50, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            var address = client.Remote;
            if (Interlocked.Increment(ref _open) > max)
            {
                Interlocked.Decrement(ref _open);
                ReverseLog.ClientRefused(_context.Logger, Tunnel, address, $"{max} connections are open (the tunnel's MaxConnections)");
                client.Abort();
                continue;
            }
            _ = Task.Run(() => RelayClientAsync(client, address, noDelay, keepAlive, server), CancellationToken.None);
        }
    }

    private async Task RelayClientAsync(AppConnection client, string address, bool noDelay, bool keepAlive, CancellationToken cancellationToken)
    {
        try
        {
            _context.CountTransit();
            client.SetOptions(noDelay, keepAlive);
            var open = _context.Open;
            var reverse = new OpenMessage(StreamProtocol.Reverse, open.Tunnel, open.Target, [], open.ConnectTimeoutMs,
                open.Options & (OpenOptions.NoDelay | OpenOptions.KeepAlive | OpenOptions.RemoteToLocal), address)
            {
                Listen = open.Listen,
                BindStreamId = _context.Bind.Id,
            };
            MuxStream stream;
            try
            {
                stream = _context.Bind.Link.OpenStream(reverse, _context.Transit, _context.LinkOptions.InitialWindow);
            }
            catch (StreamResetException ex)
            {
                ReverseLog.ClientRefused(_context.Logger, Tunnel, address, ex.Message);
                client.Abort();
                return;
            }
            // A Bind that ended (its link closed) is not waited for: the owner refuses the stream, which closes the client.
            if (client.IsDatagram)
            {
                // A UDP association: datagrams framed in the stream; the owner runs the idle timer and ends it with Fin.
                await DatagramRelay.RunAsync(client, stream, (client as UdpAssociation)?.Counters ?? new DatagramCounters(), _context.Time,
                    idleTimeout: null, cancellationToken).ConfigureAwait(false);
                return;
            }
            await Relay.RunAsync(client, stream, _context.LinkOptions.ChunkSize, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or ObjectDisposedException or IOException)
        {
            client.Abort();
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }
}

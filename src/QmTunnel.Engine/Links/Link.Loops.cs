using QmTunnel.Engine.Diagnostics;
using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

public sealed partial class Link
{
    /// <summary>A frame waiting for the writer: header and payload in one buffer rented from the shared pool.</summary>
    private readonly record struct OutFrame(byte[] Buffer, int Length);

    private const int MaxBatchBytes = 1024 * 1024;
    private const int MaxBatchFrames = 256;

    private long _lastPingAt;

    /// <summary>Round trip of the last answered Ping (the handshake's until then).</summary>
    public TimeSpan LastRoundTrip { get; private set; }

    /// <summary>Sends a Ping in the background when the last measurement is older than <paramref name="maxAge"/>.</summary>
    public void RefreshRoundTrip(TimeSpan maxAge)
    {
        if (!IsClosed && _pings.IsEmpty && Stopwatch.GetElapsedTime(Volatile.Read(ref _lastPingAt)) > maxAge)
        {
            _ = PingAsync(_closing.Token).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    /// <summary>Measures the round trip of a Ping on this link.</summary>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken)
    {
        var stamp = Stopwatch.GetTimestamp();
        var waiter = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pings[stamp] = waiter;
        try
        {
            var buffer = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 8);
            new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8).Write(buffer);
            BinaryPrimitives.WriteInt64BigEndian(buffer.AsSpan(FrameHeader.Size), stamp);
            Enqueue(new OutFrame(buffer, FrameHeader.Size + 8));
            return await waiter.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _pings.TryRemove(stamp, out _);
        }
    }

    private async Task WriteLoopAsync()
    {
        var segments = new List<ArraySegment<byte>>(MaxBatchFrames);
        try
        {
            var reader = _out.Reader;
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                var total = 0;
                long cost = 0;
                while (segments.Count < MaxBatchFrames && total < MaxBatchBytes && reader.TryRead(out var frame))
                {
                    segments.Add(new ArraySegment<byte>(frame.Buffer, 0, frame.Length));
                    total += frame.Length;
                    cost += Cost(frame.Length);
                }
                try
                {
                    if (_tls is not null)
                    {
                        await WriteTlsAsync(segments, total).ConfigureAwait(false);
                        Interlocked.Add(ref _bytesSent, total);
                        continue;
                    }
                    var sent = segments.Count == 1
                        ? await _socket.SendAsync(segments[0].AsMemory(), SocketFlags.None).ConfigureAwait(false)
                        : await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
                    if (sent < total)
                    {
                        await SendRestAsync(segments, sent).ConfigureAwait(false);
                    }
                    Interlocked.Add(ref _bytesSent, total);
                }
                finally
                {
                    foreach (var segment in segments)
                    {
                        ArrayPool<byte>.Shared.Return(segment.Array!);
                    }
                    segments.Clear();
                    AddQueued(-cost); // the socket has them (or the link failed): room for more
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            Teardown($"sending failed: {ex.Message}");
        }
        finally
        {
            while (_out.Reader.TryRead(out var frame))
            {
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                AddQueued(-Cost(frame.Length));
            }
        }
    }

    /// <summary>TLS: one write per batch (one or a few TLS records) instead of one per frame.</summary>
    private async Task WriteTlsAsync(List<ArraySegment<byte>> segments, int total)
    {
        if (segments.Count == 1)
        {
            await _tls!.WriteAsync(segments[0].AsMemory()).ConfigureAwait(false);
            await _tls.FlushAsync().ConfigureAwait(false);
            return;
        }
        var joined = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var offset = 0;
            foreach (var segment in segments)
            {
                segment.AsSpan().CopyTo(joined.AsSpan(offset));
                offset += segment.Count;
            }
            await _tls!.WriteAsync(joined.AsMemory(0, total)).ConfigureAwait(false);
            await _tls.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(joined);
        }
    }

    private async Task SendRestAsync(List<ArraySegment<byte>> segments, int alreadySent)
    {
        foreach (var segment in segments)
        {
            if (alreadySent >= segment.Count)
            {
                alreadySent -= segment.Count;
                continue;
            }
            var rest = segment.AsMemory(alreadySent);
            alreadySent = 0;
            while (!rest.IsEmpty)
            {
                var n = await _socket.SendAsync(rest, SocketFlags.None).ConfigureAwait(false);
                rest = rest[n..];
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        string reason = "the peer closed the link";
        try
        {
            while (true)
            {
                var result = await _reader.ReadAsync(_closing.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var goAway = false;
                var paused = false;
                while (!goAway && FrameCodec.TryReadFrame(ref buffer, Options.MaxPayload, out var header, out var payload))
                {
                    Interlocked.Add(ref _bytesReceived, FrameHeader.Size + header.Length);
                    if (header.Type == FrameType.GoAway)
                    {
                        var message = (GoAwayMessage)ControlCodec.Read(header.Type, payload);
                        reason = $"the peer closed the link ({message.Code}): {message.Reason}";
                        goAway = true;
                        break;
                    }
                    var flush = Dispatch(header, payload);
                    if (!flush.IsCompletedSuccessfully)
                    {
                        await flush.ConfigureAwait(false);
                    }
                    if (SendQueueOverflowing)
                    {
                        paused = true;
                        break;
                    }
                }
                if (paused)
                {
                    // The peer sends what needs answers faster than it reads them: stop reading (TCP then throttles
                    // it) until our queue has drained. Frames already buffered are read after the pause.
                    _reader.AdvanceTo(buffer.Start);
                    if (Interlocked.Increment(ref _readPauses) == 1)
                    {
                        LinkLog.ReadPaused(_logger, RemoteEndPoint, User ?? "?", QueuedBytes);
                    }
                    await WaitForQueueToDrainAsync(_closing.Token).ConfigureAwait(false);
                    continue;
                }
                _reader.AdvanceTo(buffer.Start, buffer.End);
                if (goAway)
                {
                    break;
                }
                if (result.IsCompleted)
                {
                    if (!buffer.IsEmpty)
                    {
                        throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"the link ended inside a frame ({buffer.Length} bytes left)");
                    }
                    break;
                }
            }
        }
        catch (ProtocolException ex)
        {
            reason = $"protocol error ({ex.Code}): {ex.Message}";
            LinkLog.ProtocolViolation(_logger, RemoteEndPoint, ex.Code, ex.Message);
            ProtocolError?.Invoke(ex);
            await SendGoAwayAndFlushAsync(ex.Code, ex.Message).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            reason = CloseReason ?? "closed by this side";
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            reason = $"the link failed: {ex.Message}";
        }
        Teardown(reason);
    }

    private ValueTask<System.IO.Pipelines.FlushResult> Dispatch(FrameHeader header, System.Buffers.ReadOnlySequence<byte> payload)
    {
        switch (header.Type)
        {
            case FrameType.Data:
                if (_streams.TryGetValue(header.StreamId, out var dataStream))
                {
                    if (dataStream.FinReceived && !dataStream.IsReset)
                    {
                        throw new ProtocolException(ProtocolErrorCode.StreamStateError, $"data on stream {header.StreamId} after its FIN");
                    }
                    return dataStream.OnDataAsync(payload, (header.Flags & FrameFlags.Fin) != 0);
                }
                if (!IsKnownStreamId(header.StreamId))
                {
                    throw new ProtocolException(ProtocolErrorCode.StreamStateError, $"data on stream {header.StreamId}, which was never opened");
                }
                break; // a stream we already reset or finished: late data is dropped
            case FrameType.WindowUpdate:
                var increment = BinaryPrimitives.ReadInt32BigEndian(payload.FirstSpan.Length >= 4 ? payload.FirstSpan : payload.ToArray());
                if (increment <= 0)
                {
                    throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"window update of {increment} on stream {header.StreamId}");
                }
                if (_streams.TryGetValue(header.StreamId, out var updated))
                {
                    updated.OnWindowUpdate(increment);
                }
                break;
            case FrameType.Open:
                OnOpen(header.StreamId, (OpenMessage)ControlCodec.Read(header.Type, payload));
                break;
            case FrameType.OpenAck:
                if (_streams.TryGetValue(header.StreamId, out var acked))
                {
                    acked.OnOpenAck();
                }
                break;
            case FrameType.Reset:
                var reset = (ResetMessage)ControlCodec.Read(header.Type, payload);
                if (_streams.TryGetValue(header.StreamId, out var resetStream))
                {
                    resetStream.OnReset(reset.Code, reset.Reason);
                }
                break;
            case FrameType.Ping:
                var pong = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 8);
                new FrameHeader(FrameType.Pong, FrameFlags.None, 0, 8).Write(pong);
                payload.CopyTo(pong.AsSpan(FrameHeader.Size));
                Enqueue(new OutFrame(pong, FrameHeader.Size + 8));
                break;
            case FrameType.Pong:
                Span<byte> stampBytes = stackalloc byte[8];
                payload.CopyTo(stampBytes);
                var stamp = BinaryPrimitives.ReadInt64BigEndian(stampBytes);
                if (_pings.TryRemove(stamp, out var waiter))
                {
                    var rtt = Stopwatch.GetElapsedTime(stamp);
                    LastRoundTrip = rtt;
                    _lastPingAt = Stopwatch.GetTimestamp();
                    waiter.TrySetResult(rtt);
                }
                break;
            case FrameType.Ack:
                break; // reserved for session resume (protocol.md); version 1 peers never send it, and it is harmless
            case FrameType.Hello:
                throw new ProtocolException(ProtocolErrorCode.StreamStateError, "a second Hello after the handshake");
            default:
                throw new ProtocolException(ProtocolErrorCode.UnknownFrameType, $"unexpected {header.Type} frame");
        }
        return default;
    }

    /// <summary>Queues a GoAway behind what is queued, stops the queue and waits (1 s at most) for the writer to send it.</summary>
    private async Task SendGoAwayAndFlushAsync(ProtocolErrorCode code, string reason)
    {
        EnqueueControl(0, new GoAwayMessage(code, reason.Length > 1000 ? reason[..1000] : reason));
        _out.Writer.TryComplete();
        if (_writeLoop is not null)
        {
            await Task.WhenAny(_writeLoop, Task.Delay(TimeSpan.FromSeconds(1))).ConfigureAwait(false);
        }
    }

    /// <summary>Closes the link politely: GoAway, then the socket. Streams still open are reset with LinkLost.</summary>
    public async Task CloseAsync(ProtocolErrorCode code, string reason)
    {
        if (!IsClosed)
        {
            CloseReason ??= reason;
            EnqueueControl(0, new GoAwayMessage(code, reason));
            _out.Writer.TryComplete();
            if (_writeLoop is not null)
            {
                await Task.WhenAny(_writeLoop, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
            }
        }
        Teardown(reason);
        await _closed.Task.ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => new(CloseAsync(ProtocolErrorCode.Shutdown, "the server is closing the link"));

    private void Teardown(string reason)
    {
        if (Interlocked.Exchange(ref _closeStarted, 1) != 0)
        {
            return;
        }
        CloseReason ??= reason;
        _closing.Cancel();
        _out.Writer.TryComplete();
        foreach (var stream in _streams.Values)
        {
            stream.OnReset(ProtocolErrorCode.LinkLost, $"the link to {RemoteEndPoint} closed: {CloseReason}");
        }
        _streams.Clear();
        SignalRoom(); // senders waiting for room see the link closed
        foreach (var ping in _pings.Values)
        {
            ping.TrySetException(new IOException($"the link to {RemoteEndPoint} closed: {CloseReason}"));
        }
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // already gone
        }
        _tls?.Dispose();
        _socket.Dispose();
        LinkLog.Closed(_logger, RemoteEndPoint, CloseReason);
        _closed.TrySetResult();
    }
}

internal static partial class LinkLog
{
    // Event ids: Diagnostics/EventIds.cs (links, 100-199).
    [LoggerMessage(EventId = EventIds.LinkProtocolViolation, Level = LogLevel.Warning, Message = "Link {Peer}: protocol error {Code}: {Detail}; link closed")]
    public static partial void ProtocolViolation(ILogger logger, string peer, ProtocolErrorCode code, string detail);

    [LoggerMessage(EventId = EventIds.StreamHandlerFailed, Level = LogLevel.Error, Message = "Link {Peer}: handler of stream {StreamId} failed")]
    public static partial void StreamHandlerFailed(ILogger logger, uint streamId, string peer, Exception exception);

    [LoggerMessage(EventId = EventIds.LinkClosed, Level = LogLevel.Information, Message = "Link {Peer} closed: {Reason}")]
    public static partial void Closed(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = EventIds.LinkUp, Level = LogLevel.Information, Message = "Link {Peer} up (peer {PeerName}, {Rtt} ms handshake)")]
    public static partial void Up(ILogger logger, string peer, string peerName, double rtt);
}

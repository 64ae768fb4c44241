using System.Buffers;
using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>
/// The two loops that run on one <see cref="LinkTransport"/>: the writer drains the session's queue into the
/// connection in gathered batches (resending first what the peer lacks after a resume), the reader parses frames and
/// dispatches them. Both end with their transport; a lost transport is reported to the session, never torn down here.
/// </summary>
public sealed partial class Link
{
    /// <summary>A frame waiting for the writer: header and payload in one buffer rented from the shared pool.</summary>
    private readonly record struct OutFrame(byte[] Buffer, int Length)
    {
        /// <summary>
        /// Read from the header when the frame is made, never from the buffer later: once written, a numbered frame's
        /// buffer belongs to the retained queue, and an Ack may return it to the pool (and someone else fill it)
        /// before the write call has returned.
        /// </summary>
        public bool IsNumbered { get; } = FrameCodec.IsNumbered((FrameType)Buffer[0]);
    }

    private const int MaxBatchBytes = 1024 * 1024;
    private const int MaxBatchFrames = 256;

    private long _lastPingAt;

    /// <summary>Round trip of the last answered Ping (the handshake's until then).</summary>
    public TimeSpan LastRoundTrip { get; private set; }

    /// <summary>Sends a Ping in the background when the last measurement is older than <paramref name="maxAge"/>.</summary>
    public void RefreshRoundTrip(TimeSpan maxAge)
    {
        if (!IsClosed && _transport is not null && _pings.IsEmpty && Options.Time.GetElapsedTime(Volatile.Read(ref _lastPingAt)) > maxAge)
        {
            _ = PingAsync(_closing.Token).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    /// <summary>Measures the round trip of a Ping on this link.</summary>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken)
    {
        var stamp = Options.Time.GetTimestamp();
        while (!_pings.TryAdd(stamp, new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously)))
        {
            stamp++; // a fake clock that stands still: still one waiter per Ping
        }
        var waiter = _pings[stamp];
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

    /// <summary>Starts the loops on <paramref name="transport"/>; <paramref name="resend"/> goes out first, in order.</summary>
    private void RunTransport(LinkTransport transport, List<OutFrame> resend)
    {
        Volatile.Write(ref _previousTransport, transport);
        transport.WriteLoop = Task.Run(() => WriteLoopAsync(transport, resend));
        transport.ReadLoop = Task.Run(() => ReadLoopAsync(transport));
    }

    private async Task WriteLoopAsync(LinkTransport transport, List<OutFrame> resend)
    {
        var segments = new List<ArraySegment<byte>>(MaxBatchFrames + 1);
        var batch = new List<OutFrame>(MaxBatchFrames);
        try
        {
            // Frames the peer lacks after a resume: still kept (and counted) until acknowledged, so only written here.
            for (var i = 0; i < resend.Count;)
            {
                var total = 0;
                while (i < resend.Count && segments.Count < MaxBatchFrames && total < MaxBatchBytes)
                {
                    segments.Add(new ArraySegment<byte>(resend[i].Buffer, 0, resend[i].Length));
                    total += resend[i].Length;
                    i++;
                }
                await transport.WriteAsync(segments, total).ConfigureAwait(false);
                segments.Clear();
                transport.MarkSent();
                Interlocked.Add(ref _bytesSent, total);
            }
            var reader = _out.Reader;
            var goAwayWritten = false;
            while (await reader.WaitToReadAsync(transport.Closing.Token).ConfigureAwait(false))
            {
                var total = 0;
                while (batch.Count < MaxBatchFrames && total < MaxBatchBytes && !goAwayWritten && reader.TryRead(out var frame))
                {
                    batch.Add(frame);
                    total += frame.Length;
                    // A GoAway is the last frame on the wire: what others queued behind it is dropped below.
                    goAwayWritten = (FrameType)frame.Buffer[0] == FrameType.GoAway;
                }
                if (batch.Count == 0)
                {
                    DiscardQueued(reader);
                    continue;
                }
                // Kept before the write: an Ack may come back before the write call returns.
                Retain(batch);
                // Our count rides in front of the batch (never behind a GoAway that ends it).
                var ack = PiggybackAck();
                if (ack is not null)
                {
                    segments.Add(new ArraySegment<byte>(ack, 0, FrameHeader.Size + 8));
                    total += FrameHeader.Size + 8;
                }
                foreach (var frame in batch)
                {
                    segments.Add(new ArraySegment<byte>(frame.Buffer, 0, frame.Length));
                }
                try
                {
                    await transport.WriteAsync(segments, total).ConfigureAwait(false);
                    transport.MarkSent();
                    Interlocked.Add(ref _bytesSent, total);
                }
                finally
                {
                    if (ack is not null)
                    {
                        ArrayPool<byte>.Shared.Return(ack);
                    }
                    ReleaseWritten(batch);
                    batch.Clear();
                    segments.Clear();
                }
            }
        }
        catch (OperationCanceledException) when (transport.Closing.IsCancellationRequested)
        {
            // aborted by the session (lost, replaced or closed)
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        {
            TransportLost(transport, $"sending failed: {ex.Message}");
        }
        finally
        {
            if (IsClosed)
            {
                DrainQueue();
                ReleaseRetained(); // a batch taken as the session ended may have been kept after Teardown released the rest
            }
        }
    }

    /// <summary>After a GoAway: frames queued behind it are not sent, only returned.</summary>
    private void DiscardQueued(System.Threading.Channels.ChannelReader<OutFrame> reader)
    {
        while (reader.TryRead(out var frame))
        {
            ArrayPool<byte>.Shared.Return(frame.Buffer);
            Interlocked.Add(ref _unwritten, -Cost(frame.Length));
            AddQueued(-Cost(frame.Length));
        }
    }

    private async Task ReadLoopAsync(LinkTransport transport)
    {
        var input = transport.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(transport.Closing.Token).ConfigureAwait(false);
                transport.MarkReceived();
                var buffer = result.Buffer;
                ProtocolErrorCode? goAway = null;
                var paused = false;
                while (FrameCodec.TryReadFrame(ref buffer, Options.MaxPayload, out var header, out var payload))
                {
                    Interlocked.Add(ref _bytesReceived, FrameHeader.Size + header.Length);
                    if (header.Type == FrameType.GoAway)
                    {
                        var message = (GoAwayMessage)ControlCodec.Read(header.Type, payload);
                        CloseReason ??= $"the peer closed the link ({message.Code}): {message.Reason}";
                        goAway = message.Code;
                        break;
                    }
                    if (FrameCodec.IsNumbered(header.Type))
                    {
                        CountReceived(FrameHeader.Size + header.Length);
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
                    input.AdvanceTo(buffer.Start);
                    if (Interlocked.Increment(ref _readPauses) == 1)
                    {
                        LinkLog.ReadPaused(_logger, RemoteEndPoint, User ?? "?", QueuedBytes);
                    }
                    await WaitForQueueToDrainAsync(transport.Closing.Token).ConfigureAwait(false);
                    continue;
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                MaybeAck();
                if (goAway is { } code)
                {
                    // Refused over the peer's MaxLinks: streams learn why (the rest only that the link is gone).
                    Teardown(CloseReason!, code == ProtocolErrorCode.LinkLimit ? ProtocolErrorCode.LinkLimit : ProtocolErrorCode.LinkLost);
                    return;
                }
                if (result.IsCompleted)
                {
                    if (!buffer.IsEmpty && !Session.Resumable)
                    {
                        throw new ProtocolException(ProtocolErrorCode.MalformedFrame, $"the link ended inside a frame ({buffer.Length} bytes left)");
                    }
                    // On a session, an end inside a frame is a connection closed in the middle of a write (by a
                    // middlebox, or by the peer's side giving the connection up), not a protocol error: the partial
                    // frame was not counted, so a resume sends it again.
                    TransportLost(transport, buffer.IsEmpty
                        ? "the peer closed the connection without a GoAway"
                        : $"the connection ended inside a frame ({buffer.Length} bytes of it received)");
                    return;
                }
            }
        }
        catch (ProtocolException ex)
        {
            LinkLog.ProtocolViolation(_logger, RemoteEndPoint, ex.Code, ex.Message);
            ProtocolError?.Invoke(ex);
            CloseReason ??= $"protocol error ({ex.Code}): {ex.Message}";
            await SendGoAwayAndFlushAsync(ex.Code, ex.Message).ConfigureAwait(false);
            Teardown(CloseReason);
        }
        catch (OperationCanceledException) when (transport.Closing.IsCancellationRequested)
        {
            // aborted by the session (lost, replaced or closed)
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            TransportLost(transport, $"the connection failed: {ex.Message}");
        }
    }

    private ValueTask<System.IO.Pipelines.FlushResult> Dispatch(FrameHeader header, ReadOnlySequence<byte> payload)
    {
        switch (header.Type)
        {
            case FrameType.Data:
                var declared = ReceivedData(header, payload); // a compressed payload's length checked before anything is allocated
                if (_streams.TryGetValue(header.StreamId, out var dataStream))
                {
                    if (dataStream.FinReceived && !dataStream.IsReset)
                    {
                        throw new ProtocolException(ProtocolErrorCode.StreamStateError, $"data on stream {header.StreamId} after its FIN");
                    }
                    var fin = (header.Flags & FrameFlags.Fin) != 0;
                    return declared < 0 ? dataStream.OnDataAsync(payload, fin) : OnCompressedData(dataStream, declared, payload, fin);
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
                    var rtt = Options.Time.GetElapsedTime(stamp);
                    LastRoundTrip = rtt;
                    Volatile.Write(ref _lastPingAt, Options.Time.GetTimestamp());
                    waiter.TrySetResult(rtt);
                }
                break;
            case FrameType.Ack:
                Span<byte> countBytes = stackalloc byte[8];
                payload.CopyTo(countBytes);
                OnAck(BinaryPrimitives.ReadUInt64BigEndian(countBytes));
                break;
            case FrameType.Hello:
                throw new ProtocolException(ProtocolErrorCode.StreamStateError, "a second Hello after the handshake");
            default:
                throw new ProtocolException(ProtocolErrorCode.UnknownFrameType, $"unexpected {header.Type} frame after the handshake");
        }
        return default;
    }
}

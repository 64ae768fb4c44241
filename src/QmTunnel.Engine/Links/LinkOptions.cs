namespace QmTunnel.Engine.Links;

/// <summary>Settings of one link (both ends announce theirs in the Hello).</summary>
public sealed record LinkOptions
{
    /// <summary>Protocol versions this build speaks.</summary>
    public const ushort MinVersion = 4, MaxVersion = 4;

    public string ServerId { get; init; } = Guid.NewGuid().ToString("n");
    public string ServerName { get; init; } = Environment.MachineName;
    /// <summary>Largest payload this side accepts (announced; the peer must not send more).</summary>
    public int MaxPayload { get; init; } = 256 * 1024;
    /// <summary>Window this side grants each new stream unless the opener asks for another.</summary>
    public int InitialWindow { get; init; } = 1024 * 1024;
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Largest data chunk read from an application socket into one frame.</summary>
    public int ChunkSize { get; init; } = 128 * 1024 - Protocol.FrameHeader.Size;

    /// <summary>
    /// Bound of the send queue for Data: bytes of frames waiting for the socket (each counted with
    /// <see cref="Link.FrameOverhead"/>), over which senders of Data wait for room.
    /// </summary>
    public int MaxQueuedBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>
    /// Room above <see cref="MaxQueuedBytes"/> for control frames (Pong, WindowUpdate, OpenAck, Reset...): when the
    /// queue holds more than both, the link stops reading from the peer until the queue has drained to
    /// <see cref="MaxQueuedBytes"/>, so a peer that sends without reading is throttled by TCP instead of growing memory.
    /// </summary>
    public int QueueSlackBytes { get; init; } = 1024 * 1024;

    /// <summary>Limits that may change while links run; shared by every link made with these options.</summary>
    public LinkLimits Limits { get; init; } = new();

    /// <summary>The longest a session of a dialer is kept waiting for its connection here, whatever it asks (memory is held meanwhile).</summary>
    public TimeSpan MaxSessionTolerance { get; init; } = TimeSpan.FromHours(1);

    /// <summary>The clock of idle times, heartbeats, receive timeouts, failure tolerance and reconnect backoff (tests pass a fake one).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}

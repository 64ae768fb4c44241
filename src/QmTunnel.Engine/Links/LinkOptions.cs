namespace QmTunnel.Engine.Links;

/// <summary>Settings of one link (both ends announce theirs in the Hello).</summary>
public sealed record LinkOptions
{
    /// <summary>Protocol versions this build speaks.</summary>
    public const ushort MinVersion = 2, MaxVersion = 2;

    public string ServerId { get; init; } = Guid.NewGuid().ToString("n");
    public string ServerName { get; init; } = Environment.MachineName;
    /// <summary>Largest payload this side accepts (announced; the peer must not send more).</summary>
    public int MaxPayload { get; init; } = 256 * 1024;
    /// <summary>Window this side grants each new stream unless the opener asks for another.</summary>
    public int InitialWindow { get; init; } = 1024 * 1024;
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Largest data chunk read from an application socket into one frame.</summary>
    public int ChunkSize { get; init; } = 128 * 1024 - Protocol.FrameHeader.Size;
}

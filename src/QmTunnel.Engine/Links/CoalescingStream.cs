namespace QmTunnel.Engine.Links;

/// <summary>
/// Sits under an SslStream: once <see cref="Coalesce"/> is on, the 16 KiB records TLS writes are gathered and sent
/// with one socket write per flush (up to 256 KiB) instead of one write per record, and reads are served from one
/// 64 KiB socket read at a time. Before that, and for zero-byte reads, everything passes straight through and no buffer
/// is held. The link's writer flushes after each batch, so nothing waits in it. It does not encrypt, and it is not
/// thread-safe beyond one reader and one writer (as SslStream uses it).
/// </summary>
internal sealed class CoalescingStream(Stream inner) : Stream
{
    private const int Capacity = 256 * 1024;
    private byte[]? _buffer;
    private int _length;

    /// <summary>
    /// Off during the handshake (its messages go out at once, reads are not buffered), on for the link's frames: an
    /// accepted link turns it on after the login, so a connection that has not logged in holds neither buffer.
    /// </summary>
    public bool Coalesce { get; set; }

    /// <summary>Whether it holds a write or a read buffer now (none is made while <see cref="Coalesce"/> is off).</summary>
    internal bool HoldsBuffers => _buffer is not null || _readBuffer is not null;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (!Coalesce)
        {
            await inner.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (_length + data.Length > Capacity)
        {
            await SendBufferAsync(cancellationToken).ConfigureAwait(false);
        }
        if (data.Length >= Capacity)
        {
            await inner.WriteAsync(data, cancellationToken).ConfigureAwait(false);
            return;
        }
        // Not pooled: a link torn down mid-write must not hand a buffer still in use back to the pool.
        _buffer ??= new byte[Capacity];
        data.Span.CopyTo(_buffer.AsSpan(_length));
        _length += data.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        await SendBufferAsync(cancellationToken).ConfigureAwait(false);
        await inner.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

    private async ValueTask SendBufferAsync(CancellationToken cancellationToken)
    {
        if (_length > 0)
        {
            var length = _length;
            _length = 0;
            await inner.WriteAsync(_buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
    }

    // Read side: TLS asks for a record header, then its body, in small reads; one socket read of up to 64 KiB serves
    // many of them (strace: 9 KiB per recv without it).
    private byte[]? _readBuffer;
    private int _readStart, _readEnd;
    private const int ReadCapacity = 64 * 1024;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_readStart == _readEnd)
        {
            // Before the link is up, for a zero-byte read (wait for data, hold no buffer) and for a large read: straight through.
            if (!Coalesce || buffer.Length == 0 || buffer.Length >= ReadCapacity)
            {
                return await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            _readBuffer ??= new byte[ReadCapacity];
            _readStart = 0;
            _readEnd = await inner.ReadAsync(_readBuffer, cancellationToken).ConfigureAwait(false);
            if (_readEnd == 0)
            {
                return 0;
            }
        }
        var n = Math.Min(buffer.Length, _readEnd - _readStart);
        _readBuffer.AsSpan(_readStart, n).CopyTo(buffer.Span);
        _readStart += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }
}

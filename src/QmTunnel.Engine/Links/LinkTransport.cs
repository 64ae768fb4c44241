using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace QmTunnel.Engine.Links;

/// <summary>
/// One connection under a <see cref="Link"/> session: reads bytes into a pipe and writes batches of frames. It can die
/// and be replaced under a live session (docs/architecture.md, "Link session over link transport"); it knows nothing
/// of frames, streams or sequence numbers. The loops that run on it belong to the session.
/// </summary>
public abstract class LinkTransport
{
    private long _lastReceived, _lastSent;
    private int _aborted;

    protected LinkTransport(TimeProvider time)
    {
        Time = time;
        _lastReceived = _lastSent = time.GetTimestamp();
    }

    internal TimeProvider Time { get; }

    /// <summary>Bytes from the peer.</summary>
    public abstract PipeReader Input { get; }

    /// <summary>The peer's address (host:port), for logs and allow-rules.</summary>
    public abstract string RemoteEndPoint { get; }

    /// <summary>The TLS stream, or null on a plain connection.</summary>
    public virtual SslStream? Tls => null;

    /// <summary>True when the bytes are encrypted on the wire.</summary>
    public virtual bool IsEncrypted => false;

    /// <summary>SHA-256 thumbprint of the peer's TLS certificate; null on a plain link or when it sent none.</summary>
    public string? PeerCertificateThumbprint =>
        Tls?.RemoteCertificate is { } c ? Security.ServerCertificate.Thumbprint(c as X509Certificate2 ?? new X509Certificate2(c)) : null;

    /// <summary>Writes <paramref name="total"/> bytes held by <paramref name="segments"/>, in order, as one batch.</summary>
    public abstract ValueTask WriteAsync(List<ArraySegment<byte>> segments, int total);

    /// <summary>Closes the connection at once (both ways); pending reads and writes fail.</summary>
    protected abstract void Close();

    /// <summary>Cancelled when the transport is aborted: its loops stop.</summary>
    internal CancellationTokenSource Closing { get; } = new();

    internal Task? ReadLoop { get; set; }
    internal Task? WriteLoop { get; set; }

    /// <summary>When bytes last arrived / were last handed to the connection (timestamps of <see cref="Time"/>).</summary>
    internal long LastReceived => Interlocked.Read(ref _lastReceived);
    internal long LastSent => Interlocked.Read(ref _lastSent);
    internal void MarkReceived() => Interlocked.Exchange(ref _lastReceived, Time.GetTimestamp());
    internal void MarkSent() => Interlocked.Exchange(ref _lastSent, Time.GetTimestamp());

    public bool IsAborted => Volatile.Read(ref _aborted) != 0;

    /// <summary>Stops the loops and closes the connection; once.</summary>
    public void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }
        Closing.Cancel();
        Close();
    }

    /// <summary>Waits until the loops running on this transport have ended.</summary>
    internal async Task LoopsEndedAsync()
    {
        if (ReadLoop is { } read)
        {
            await read.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        if (WriteLoop is { } write)
        {
            await write.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }
}

/// <summary>A TCP connection, with TLS or without: gathered sends on plain sockets, one TLS write per batch.</summary>
public sealed class SocketLinkTransport : LinkTransport
{
    private readonly Socket _socket;
    private readonly Stream? _tls;
    private readonly PipeReader _input;

    /// <param name="tls">The TLS stream over <paramref name="socket"/> (any stream that encrypts, in tests), or null.</param>
    public SocketLinkTransport(Socket socket, Stream? tls, PipeReader input, TimeProvider time) : base(time)
    {
        _socket = socket;
        _tls = tls;
        _input = input;
        RemoteEndPoint = socket.RemoteEndPoint?.ToString() ?? "?";
    }

    public override PipeReader Input => _input;
    public override string RemoteEndPoint { get; }
    public override SslStream? Tls => _tls as SslStream;
    public override bool IsEncrypted => _tls is not null;

    public override async ValueTask WriteAsync(List<ArraySegment<byte>> segments, int total)
    {
        if (_tls is not null)
        {
            await WriteTlsAsync(segments, total).ConfigureAwait(false);
            return;
        }
        var sent = segments.Count == 1
            ? await _socket.SendAsync(segments[0].AsMemory(), SocketFlags.None).ConfigureAwait(false)
            : await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
        if (sent < total)
        {
            await SendRestAsync(segments, sent).ConfigureAwait(false);
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

    protected override void Close()
    {
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
    }
}

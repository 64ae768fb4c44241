using System.Buffers;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// One application connection, whatever carries it: a TCP or Unix socket (<see cref="SocketAppConnection"/>), a stream
/// such as a named pipe (<see cref="StreamAppConnection"/>), or a datagram association (<see cref="IsDatagram"/>: each
/// receive is one datagram, each send one datagram). The relay moves bytes through this and nothing else. Dispose closes
/// it cleanly; <see cref="Abort"/> closes it with a reset where the transport has one.
/// </summary>
public abstract class AppConnection : IDisposable
{
    /// <summary>The peer as connection lists and logs show it (an address and port, a socket path, a pipe name).</summary>
    public abstract string Remote { get; }

    /// <summary>Whether each receive and send is one whole datagram (UDP), rather than a byte stream.</summary>
    public virtual bool IsDatagram => false;

    /// <summary>
    /// Completes when data (or the end) can be read, without holding a buffer meanwhile where the transport allows it (a
    /// socket's zero-byte receive): idle connections then cost no buffer. May complete before data is there.
    /// </summary>
    public abstract ValueTask WaitForDataAsync(CancellationToken cancellationToken);

    /// <summary>Reads into <paramref name="buffer"/>; 0 is the end of the peer's sending half.</summary>
    public abstract ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Writes all of <paramref name="data"/>.</summary>
    public abstract ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken);

    /// <summary>Closes this side's sending half (the peer reads its end), where the transport can; see each type.</summary>
    public abstract void ShutdownSend();

    /// <summary>Closes the connection so the peer sees a failure, not a clean end (a TCP RST).</summary>
    public abstract void Abort();

    /// <summary>Sets TCP_NODELAY and keepalive where they mean something (TCP); nothing elsewhere.</summary>
    public virtual void SetOptions(bool noDelay, bool keepAlive)
    {
    }

    public abstract void Dispose();
}

/// <summary>A connection over a connected stream socket: TCP or a Unix domain socket.</summary>
public sealed class SocketAppConnection(Socket socket, string remote) : AppConnection
{
    private List<ArraySegment<byte>>? _gather;

    public Socket Socket { get; } = socket;

    public override string Remote { get; } = remote;

    public override async ValueTask WaitForDataAsync(CancellationToken cancellationToken) =>
        await Socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).ConfigureAwait(false);

    public override ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
        Socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    public override async ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        if (data.IsSingleSegment)
        {
            await SendAllAsync(data.First, cancellationToken).ConfigureAwait(false);
            return;
        }
        // several segments: one gathered send instead of one send per segment
        _gather ??= new List<ArraySegment<byte>>(8);
        _gather.Clear();
        foreach (var segment in data)
        {
            if (!MemoryMarshal.TryGetArray(segment, out var array))
            {
                throw new InvalidOperationException("pipe memory is not array-backed");
            }
            _gather.Add(array);
        }
        var sent = await Socket.SendAsync(_gather, SocketFlags.None).ConfigureAwait(false);
        if (sent < data.Length)
        {
            foreach (var segment in data.Slice(sent))
            {
                await SendAllAsync(segment, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> memory, CancellationToken cancellationToken)
    {
        while (!memory.IsEmpty)
        {
            var sent = await Socket.SendAsync(memory, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            memory = memory[sent..];
        }
    }

    public override void ShutdownSend() => Socket.Shutdown(SocketShutdown.Send);

    public override void SetOptions(bool noDelay, bool keepAlive)
    {
        if (Socket.ProtocolType == ProtocolType.Tcp)
        {
            Socket.NoDelay = noDelay;
            Socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, keepAlive);
        }
    }

    public override void Abort()
    {
        try
        {
            if (Socket.ProtocolType == ProtocolType.Tcp)
            {
                Socket.LingerState = new LingerOption(true, 0);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        Socket.Dispose();
    }

    public override void Dispose()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        Socket.Dispose();
    }
}

/// <summary>
/// A connection over a <see cref="Stream"/> (a named pipe). A stream has no half-close: <see cref="ShutdownSend"/> closes
/// the whole stream once what was written before it is flushed, so the peer reads its end (and can send no more), and
/// there is no reset either (<see cref="Abort"/> closes it). Every wait for data holds a read buffer.
/// </summary>
public sealed class StreamAppConnection(Stream stream, string remote) : AppConnection
{
    public Stream Stream { get; } = stream;

    public override string Remote { get; } = remote;

    public override ValueTask WaitForDataAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    private volatile bool _sendClosed;

    public override async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            return await Stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (_sendClosed && ex is ObjectDisposedException or IOException or SocketException)
        {
            return 0; // closed by ShutdownSend: the end of this direction too, not a failure
        }
    }

    public override async ValueTask SendAsync(ReadOnlySequence<byte> data, CancellationToken cancellationToken)
    {
        foreach (var segment in data)
        {
            await Stream.WriteAsync(segment, cancellationToken).ConfigureAwait(false);
        }
    }

    public override void ShutdownSend()
    {
        _sendClosed = true;
        try
        {
            Stream.Flush();
        }
        finally
        {
            Stream.Dispose();
        }
    }

    public override void Abort() => Stream.Dispose();

    public override void Dispose() => Stream.Dispose();
}

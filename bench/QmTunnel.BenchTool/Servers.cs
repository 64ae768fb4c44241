using System.Buffers;
using System.Net;
using System.Net.Sockets;

namespace QmTunnel.BenchTool;

/// <summary>
/// Echo and sink servers: one accept loop, one task per connection. An idle connection holds no buffer (a zero-byte
/// read waits for data first), so 10,000 idle connections cost the target little. Not a general-purpose server.
/// </summary>
internal static class Servers
{
    private const int BufferSize = 128 * 1024;

    public static async Task<int> RunAsync(Options options, bool echo, CancellationToken cancel)
    {
        var address = IPAddress.Parse(options.String("address", "127.0.0.1"));
        using var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(address, options.Int("port", 0)));
        listener.Listen(65535);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Console.WriteLine($"LISTENING {port}");
        Console.Out.Flush();
        using var registration = cancel.Register(listener.Dispose);
        while (!cancel.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(cancel);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                if (cancel.IsCancellationRequested)
                {
                    break;
                }
                if (ex is SocketException { SocketErrorCode: SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable })
                {
                    Console.Error.WriteLine($"accept: {ex.Message}");
                    await Task.Delay(50, CancellationToken.None);
                }
                continue;
            }
            client.NoDelay = true;
            _ = echo ? EchoAsync(client) : SinkAsync(client);
        }
        return 0;
    }

    private static async Task EchoAsync(Socket socket)
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                if (buffer is null)
                {
                    // Wait for data without holding a buffer.
                    await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
                    buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
                }
                var read = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
                if (read == 0)
                {
                    socket.Shutdown(SocketShutdown.Send);
                    return;
                }
                var sent = 0;
                while (sent < read)
                {
                    sent += await socket.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None);
                }
                if (socket.Available == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Reset or closed: nothing to do.
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            socket.Dispose();
        }
    }

    private static async Task SinkAsync(Socket socket)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            while (await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None) > 0)
            {
            }
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Reset or closed: nothing to do.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            socket.Dispose();
        }
    }
}

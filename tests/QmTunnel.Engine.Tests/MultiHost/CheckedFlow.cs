using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// One TCP connection through a tunnel with a known shape: <see cref="Up"/> bytes from the client to the target and
/// <see cref="Down"/> bytes back, at once, each side half-closing when done; or, with <see cref="Echo"/>, the target
/// sends back what it receives (<see cref="Down"/> is then ignored). Contents are pseudo-random from the id.
/// </summary>
internal sealed record FlowSpec(int Id, long Up, long Down, bool Echo = false)
{
    public override string ToString() => Echo ? $"flow {Id}: echo {Up} B" : $"flow {Id}: {Up} B up, {Down} B down";
}

/// <summary>What one end of a flow sent and received: byte counts and SHA-256 of the bytes.</summary>
internal sealed record FlowEnd(long Sent, string SentSha256, long Received, string ReceivedSha256);

/// <summary>
/// Both ends of <see cref="FlowSpec"/> flows. The client end (<see cref="RunAsync"/>) sends a 21-byte header (id,
/// up, down, echo) and then its bytes; the target end (<see cref="HandleAsync"/>, a <see cref="HostListener"/>
/// handler) reads the header and plays its part. Each end hashes what it sends and what it receives, so
/// <see cref="AssertIntact"/> compares SHA-256 at both ends of each direction.
/// </summary>
internal sealed class CheckedFlow
{
    /// <summary>The header each client sends before its bytes (counted by the tunnel as the client's bytes).</summary>
    public const int HeaderSize = 21;
    private const int Chunk = 256 * 1024;

    private readonly ConcurrentDictionary<int, FlowEnd> _targets = new();

    /// <summary>The target's end of each flow it finished, by id.</summary>
    public IReadOnlyDictionary<int, FlowEnd> Targets => _targets;

    /// <summary>The target's part, for <see cref="HostListener.Start"/>.</summary>
    public async Task HandleAsync(Socket socket)
    {
        var header = new byte[HeaderSize];
        var read = 0;
        while (read < HeaderSize)
        {
            var n = await socket.ReceiveAsync(header.AsMemory(read), SocketFlags.None);
            if (n == 0)
            {
                throw new IOException($"the connection ended after {read} bytes of the flow header");
            }
            read += n;
        }
        var id = BinaryPrimitives.ReadInt32BigEndian(header);
        var down = BinaryPrimitives.ReadInt64BigEndian(header.AsSpan(12));
        var echo = header[20] == 1;
        if (echo)
        {
            var (count, hash) = await EchoAsync(socket);
            _targets[id] = new FlowEnd(count, hash, count, hash);
            return;
        }
        var receiving = ReceiveAsync(socket);
        var (sent, sentHash) = await SendAsync(socket, Seed(id, up: false), down);
        var (received, receivedHash) = await receiving;
        _targets[id] = new FlowEnd(sent, sentHash, received, receivedHash);
    }

    /// <summary>The client's part over <paramref name="socket"/> (connected to the tunnel's listener); closes it.</summary>
    public static async Task<FlowEnd> RunAsync(Socket socket, FlowSpec spec)
    {
        using (socket)
        {
            var header = new byte[HeaderSize];
            BinaryPrimitives.WriteInt32BigEndian(header, spec.Id);
            BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(4), spec.Up);
            BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(12), spec.Echo ? spec.Up : spec.Down);
            header[20] = spec.Echo ? (byte)1 : (byte)0;
            await SendAllAsync(socket, header);
            var receiving = ReceiveAsync(socket);
            var (sent, sentHash) = await SendAsync(socket, Seed(spec.Id, up: true), spec.Up);
            var (received, receivedHash) = await receiving;
            return new FlowEnd(sent, sentHash, received, receivedHash);
        }
    }

    /// <summary>
    /// Asserts that the flow arrived whole both ways: the target received exactly what the client sent (count and
    /// SHA-256) and the client exactly what the target sent, in the sizes <paramref name="spec"/> asked for.
    /// </summary>
    public void AssertIntact(FlowSpec spec, FlowEnd client)
    {
        Assert.True(_targets.TryGetValue(spec.Id, out var target), $"{spec}: the target never finished it");
        var down = spec.Echo ? spec.Up : spec.Down;
        Assert.True(client.Sent == spec.Up && target.Received == spec.Up && client.SentSha256 == target.ReceivedSha256,
            $"{spec}: client sent {client.Sent} B (SHA-256 {client.SentSha256}), target received {target.Received} B ({target.ReceivedSha256})");
        Assert.True(target.Sent == down && client.Received == down && target.SentSha256 == client.ReceivedSha256,
            $"{spec}: target sent {target.Sent} B (SHA-256 {target.SentSha256}), client received {client.Received} B ({client.ReceivedSha256})");
        if (spec.Echo)
        {
            Assert.Equal(client.SentSha256, client.ReceivedSha256);
        }
    }

    private static int Seed(int id, bool up) => id * 2 + (up ? 0 : 1);

    /// <summary>Sends <paramref name="count"/> pseudo-random bytes, then half-closes; returns the count and their SHA-256.</summary>
    private static async Task<(long, string)> SendAsync(Socket socket, int seed, long count)
    {
        var random = new Random(seed);
        var buffer = new byte[(int)Math.Min(Chunk, Math.Max(count, 1))];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var sent = 0L;
        while (sent < count)
        {
            var n = (int)Math.Min(buffer.Length, count - sent);
            random.NextBytes(buffer.AsSpan(0, n));
            hash.AppendData(buffer, 0, n);
            await SendAllAsync(socket, buffer.AsMemory(0, n));
            sent += n;
        }
        socket.Shutdown(SocketShutdown.Send);
        return (sent, Convert.ToHexString(hash.GetHashAndReset()));
    }

    /// <summary>Receives until the peer half-closes; returns the count and the SHA-256 of what came.</summary>
    private static async Task<(long, string)> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[Chunk];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var received = 0L;
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                return (received, Convert.ToHexString(hash.GetHashAndReset()));
            }
            hash.AppendData(buffer, 0, n);
            received += n;
        }
    }

    /// <summary>Sends back everything until the peer half-closes, then half-closes; returns the count and SHA-256.</summary>
    private static async Task<(long, string)> EchoAsync(Socket socket)
    {
        var buffer = new byte[Chunk];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var count = 0L;
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                socket.Shutdown(SocketShutdown.Send);
                return (count, Convert.ToHexString(hash.GetHashAndReset()));
            }
            hash.AppendData(buffer, 0, n);
            await SendAllAsync(socket, buffer.AsMemory(0, n));
            count += n;
        }
    }

    private static async Task SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = await socket.SendAsync(data, SocketFlags.None);
            data = data[n..];
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>A SOCKS5 client (RFC 1928, no authentication, CONNECT) for tests, with raw access for malformed messages.</summary>
internal static class Socks5Client
{
    /// <summary>A CONNECT request's address: ATYP 1 (IPv4), 4 (IPv6) or 3 (a domain name).</summary>
    public static byte[] Address(string host) =>
        IPAddress.TryParse(host, out var ip)
            ? [(byte)(ip.AddressFamily == AddressFamily.InterNetwork ? 1 : 4), .. ip.GetAddressBytes()]
            : [3, (byte)Encoding.ASCII.GetByteCount(host), .. Encoding.ASCII.GetBytes(host)];

    public static byte[] Request(string host, int port, byte command = 1) =>
        [5, command, 0, .. Address(host), (byte)(port >> 8), (byte)port];

    public static async Task<Socket> OpenAsync(int proxyPort)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(IPAddress.Loopback, proxyPort);
        return s;
    }

    /// <summary>Greets (method 0x00), sends CONNECT and reads the 10-byte reply: the socket and the reply code.</summary>
    public static async Task<(Socket Socket, byte Reply)> ConnectAsync(int proxyPort, string host, int port)
    {
        var s = await OpenAsync(proxyPort);
        await s.SendAllAsync(new byte[] { 5, 1, 0 });
        var method = await ReadExactAsync(s, 2);
        Assert.Equal(new byte[] { 5, 0 }, method);
        await s.SendAllAsync(Request(host, port));
        var reply = await ReadExactAsync(s, 10);
        Assert.Equal(5, reply[0]);
        return (s, reply[1]);
    }

    /// <summary>The reply code of a CONNECT (the connection closed after it).</summary>
    public static async Task<byte> ReplyAsync(int proxyPort, string host, int port)
    {
        var (s, reply) = await ConnectAsync(proxyPort, host, port);
        using (s)
        {
            return reply;
        }
    }

    /// <summary>Exactly <paramref name="count"/> bytes, within 30 s; fewer when the peer closed first.</summary>
    public static async Task<byte[]> ReadExactAsync(Socket s, int count)
    {
        var buffer = new byte[count];
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (read < count)
        {
            var n = await s.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            if (n == 0)
            {
                return buffer[..read];
            }
            read += n;
        }
        return buffer;
    }

    /// <summary>Everything until the peer closes (a reset counts as closed), within 30 s.</summary>
    public static async Task<byte[]> ReadUntilClosedAsync(Socket s)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            return await s.ReadToEndAsync(timeout.Token);
        }
        catch (SocketException)
        {
            return [];
        }
    }
}

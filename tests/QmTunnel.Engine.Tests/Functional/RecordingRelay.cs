using System.Net;
using System.Net.Sockets;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// One TCP connection relayed to a port on 127.0.0.1, recording every byte each side sends: what an eavesdropper on
/// a plain link reads. Tests use it to check the wire itself, not only what the other end makes of it.
/// </summary>
internal sealed class RecordingRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly MemoryStream _fromClient = new();
    private readonly MemoryStream _fromServer = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _relaying;

    public RecordingRelay(int targetPort)
    {
        _listener.Start();
        _relaying = RelayAsync(targetPort);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Every byte the client sent so far.</summary>
    public byte[] FromClient => Snapshot(_fromClient);

    /// <summary>Every byte the server sent so far.</summary>
    public byte[] FromServer => Snapshot(_fromServer);

    private static byte[] Snapshot(MemoryStream recording)
    {
        lock (recording)
        {
            return recording.ToArray();
        }
    }

    private async Task RelayAsync(int targetPort)
    {
        using var client = await _listener.AcceptSocketAsync(_stop.Token);
        using var server = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await server.ConnectAsync(IPAddress.Loopback, targetPort, _stop.Token);
        await Task.WhenAny(PumpAsync(client, server, _fromClient), PumpAsync(server, client, _fromServer));
    }

    private async Task PumpAsync(Socket from, Socket to, MemoryStream recording)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            int n;
            while ((n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)) > 0)
            {
                lock (recording)
                {
                    recording.Write(buffer, 0, n);
                }
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // one side closed, or the test is over: the relay ends
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _relaying.ContinueWith(_ => { }, TaskScheduler.Default);
    }
}

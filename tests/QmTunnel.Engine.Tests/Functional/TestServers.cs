using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>A real TCP echo server on 127.0.0.1, port 0. Echoes until the client half-closes, then half-closes.</summary>
public sealed class EchoServer : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _accepted;

    public EchoServer()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1024);
        _loop = Task.Run(AcceptAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;
    public string Uri => $"tcp://127.0.0.1:{Port}";
    public int Accepted => Volatile.Read(ref _accepted);
    /// <summary>When set, each connection first sends this many bytes and then echoes.</summary>
    public Func<Socket, Task>? OnConnection { get; set; }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _listener.AcceptAsync(_stop.Token);
            }
            catch
            {
                return;
            }
            Interlocked.Increment(ref _accepted);
            _ = Task.Run(async () =>
            {
                using (s)
                {
                    try
                    {
                        if (OnConnection is { } handler)
                        {
                            await handler(s);
                            return;
                        }
                        var buffer = new byte[64 * 1024];
                        while (true)
                        {
                            var n = await s.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                            if (n == 0)
                            {
                                s.Shutdown(SocketShutdown.Send);
                                return;
                            }
                            await s.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                        }
                    }
                    catch
                    {
                        // test server: a client that vanished is fine
                    }
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _loop;
    }
}

/// <summary>Engines with throwaway data paths, stopped and deleted at the end.</summary>
public sealed class EngineFixture : IAsyncDisposable
{
    /// <summary>The admin password of every test engine (set on its first start).</summary>
    public const string AdminPassword = "test-admin-password";

    /// <summary>The fewest PBKDF2 iterations a server allows: fast enough for tests.</summary>
    public const int TestIterations = 100_000;

    /// <summary>The admin login every test tunnel uses at each hop.</summary>
    public static HopLogin AdminLogin => new(QmTunnel.Engine.Security.User.AdminName, AdminPassword);

    private readonly List<(QmTunnelEngine Engine, string Path)> _engines = [];

    public async Task<QmTunnelEngine> StartAsync(string? dataPath = null, bool allowPlainLinks = true)
    {
        var path = dataPath ?? Path.Combine(Path.GetTempPath(), "qmt-test-" + Guid.NewGuid().ToString("n"));
        var engine = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = path, AllowPlainLinks = allowPlainLinks, AdminPassword = AdminPassword, PasswordIterations = TestIterations });
        await engine.StartAsync();
        _engines.Add((engine, path));
        return engine;
    }

    /// <summary>Starts an engine with the given options and clock (its data path is deleted at the end).</summary>
    public async Task<QmTunnelEngine> StartAsync(ServerOptions options, TimeProvider? time = null, Microsoft.Extensions.Logging.ILoggerFactory? loggers = null)
    {
        var engine = new QmTunnelEngine(options, loggers, time);
        await engine.StartAsync();
        _engines.Add((engine, options.DataPath));
        return engine;
    }

    /// <summary>
    /// Keys for a user "admin" with a fixed salt, for tunnels that must exist but never connect (no server is asked):
    /// every hop of a tunnel needs a login (HopCredentialMissing otherwise).
    /// </summary>
    public static IReadOnlyList<HopCredential?> OfflineCredentials(int hops)
    {
        var keys = QmTunnel.Engine.Security.ScramKeys.Derive("unused-password", new byte[16], TestIterations);
        return Enumerable.Range(0, hops).Select(_ => (HopCredential?)HopCredential.FromKeys(QmTunnel.Engine.Security.User.AdminName, keys)).ToList();
    }

    public static string Hop(QmTunnelEngine engine) => $"qmt+plain://127.0.0.1:{engine.Port}";

    public static string TlsHop(QmTunnelEngine engine) => $"qmt://127.0.0.1:{engine.Port}";

    public async ValueTask DisposeAsync()
    {
        foreach (var (engine, path) in _engines)
        {
            await engine.DisposeAsync();
            try
            {
                Directory.Delete(path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

public static class EngineTestExtensions
{
    /// <summary>Creates a tunnel logging in as the test admin at every hop (the chain is checked, as New-QmTunnel does).</summary>
    public static TunnelInfo NewTestTunnel(this QmTunnelEngine engine, TunnelProfile profile) =>
        engine.NewTunnelAsync(profile, profile.Via.Select(_ => (HopLogin?)EngineFixture.AdminLogin).ToList()).GetAwaiter().GetResult();
}

public static class SocketTestExtensions
{
    /// <summary>Connects to a tunnel's listener, sends <paramref name="payload"/>, half-closes, and returns all it reads back.</summary>
    public static async Task<byte[]> EchoAsync(string listen, byte[] payload)
    {
        using var client = await ConnectAsync(listen);
        var reading = client.ReadToEndAsync();
        await client.SendAllAsync(payload);
        client.Shutdown(SocketShutdown.Send);
        return await reading.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public static async Task<Socket> ConnectAsync(string tcpUri)
    {
        var port = int.Parse(tcpUri[(tcpUri.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(IPAddress.Loopback, port);
        return s;
    }

    public static async Task<byte[]> ReadToEndAsync(this Socket s, CancellationToken ct = default)
    {
        var ms = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await s.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0)
            {
                return ms.ToArray();
            }
            ms.Write(buffer, 0, n);
        }
    }

    public static async Task SendAllAsync(this Socket s, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = await s.SendAsync(data, SocketFlags.None);
            data = data[n..];
        }
    }
}

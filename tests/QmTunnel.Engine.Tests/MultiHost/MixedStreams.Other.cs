using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// A Unix-socket listener on A (the daemon's socket file, in a directory of the test's own) carried through the chain
/// to a TCP target on B; the same checked flows as TCP (a Unix socket is a byte stream with half-close).
/// </summary>
internal sealed class UnixListenMixedScheme : IMixedScheme
{
    private static readonly long[] Sizes = [0, 1, 4096, 256 * 1024, 1024 * 1024];
    private readonly CheckedFlow _flows = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-mixed-").FullName;
    private HostListener? _target;
    private string _path = string.Empty;

    public string Scheme => "unix";

    public IReadOnlyList<Exception> TargetErrors => _target?.Errors ?? [];

    public async Task StartAsync(ChainNetwork network, string tunnel)
    {
        _target = HostListener.Start(network.B, _flows.HandleAsync);
        _path = Path.Combine(_dir, "mixed.sock");
        var bound = await network.StartTunnelAsync(tunnel, _target.Uri, change: p => p with { Listen = "unix://" + _path });
        Assert.Equal("unix://" + _path, bound);
    }

    public IReadOnlyList<Func<Task>> Flows(int count) => [.. Enumerable.Range(0, count).Select(i =>
    {
        var size = Sizes[i % Sizes.Length];
        var spec = (i % 3) switch
        {
            0 => new FlowSpec(10_000 + i, size, Sizes[(i + 2) % Sizes.Length]),
            1 => new FlowSpec(10_000 + i, 0, size),
            _ => new FlowSpec(10_000 + i, size, 0, Echo: true),
        };
        return (Func<Task>)(async () =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(_path));
            var client = await CheckedFlow.RunAsync(socket, spec);
            await Functional.TunnelTests.WaitUntil(() => _flows.Targets.ContainsKey(spec.Id), 10_000);
            _flows.AssertIntact(spec, client);
        });
    })];

    public async ValueTask DisposeAsync()
    {
        if (_target is not null)
        {
            await _target.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>
/// A udp:// tunnel from A to a UDP echo server on B: each flow is one association (its own client socket in A) that
/// sends datagrams of sizes up to 65,507 bytes one at a time and checks each echo byte for byte (boundaries kept). UDP
/// may lose a datagram (the tunnel drops what a stream has no credit for): a lost one is sent again, a wrong or clipped
/// one fails the flow.
/// </summary>
internal sealed class UdpMixedScheme : IMixedScheme
{
    private static readonly int[] Sizes = [1, 512, 1400, 9000, 65_507];
    private readonly CancellationTokenSource _stop = new();
    private ChainNetwork _network = null!;
    private Socket? _echo;
    private Task? _echoLoop;
    private int _port;

    public string Scheme => "udp";

    public async Task StartAsync(ChainNetwork network, string tunnel)
    {
        _network = network;
        _echo = network.B.Ns.Inside(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveBufferSize = 4 << 20, SendBufferSize = 4 << 20 };
            s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return s;
        });
        _echoLoop = Task.Run(EchoAsync);
        var target = $"udp://127.0.0.1:{((IPEndPoint)_echo.LocalEndPoint!).Port}";
        var bound = await network.StartTunnelAsync(tunnel, target, change: p => p with { Listen = "udp://127.0.0.1:0" });
        _port = ChainNetwork.PortOf(bound);
    }

    private async Task EchoAsync()
    {
        var buffer = new byte[65_535];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var got = await _echo!.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
                await _echo.SendToAsync(buffer.AsMemory(0, got.ReceivedBytes), SocketFlags.None, got.RemoteEndPoint, _stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    public IReadOnlyList<Func<Task>> Flows(int count) => [.. Enumerable.Range(0, count).Select(i => (Func<Task>)(async () =>
    {
        using var client = _network.A.Ns.Inside(() => new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveBufferSize = 1 << 20 });
        client.Connect(new IPEndPoint(IPAddress.Loopback, _port));
        var back = new byte[65_535];
        for (var n = 0; n < 10; n++)
        {
            var size = Sizes[(i + n) % Sizes.Length];
            var datagram = RandomNumberGenerator.GetBytes(size);
            var answered = false;
            for (var attempt = 0; attempt < 5 && !answered; attempt++)
            {
                await client.SendAsync(datagram, SocketFlags.None);
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                try
                {
                    while (true)
                    {
                        var got = await client.ReceiveAsync(back, SocketFlags.None, wait.Token);
                        if (got == size && back.AsSpan(0, got).SequenceEqual(datagram))
                        {
                            answered = true;
                            break;
                        }
                        // anything else is a late echo of an earlier attempt; a clipped or changed datagram never matches,
                        // so its flow fails after five tries
                    }
                }
                catch (OperationCanceledException)
                {
                    // lost (UDP): send it again
                }
            }
            Assert.True(answered, $"udp flow {i}: datagram {n} of {size} B never came back in 5 tries");
        }
    }))];

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _echo?.Dispose();
        if (_echoLoop is not null)
        {
            await _echoLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        _stop.Dispose();
    }
}

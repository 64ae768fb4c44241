using System.Net;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// One application scheme's part of the mixed-streams test (<see cref="ChainTests"/>): it starts its target and a
/// tunnel of its scheme through the chain of a <see cref="ChainNetwork"/>, then hands out flows that run all at once
/// with those of the other schemes, each asserting its own data intact. TCP is <see cref="TcpMixedScheme"/>; other
/// schemes (udp://, unix://) implement this and are added to <see cref="ChainTests.MixedSchemes"/>.
/// </summary>
internal interface IMixedScheme : IAsyncDisposable
{
    /// <summary>The scheme, for messages ("tcp").</summary>
    string Scheme { get; }

    /// <summary>Starts the target (in B, the chain's last host) and a tunnel named <paramref name="tunnel"/> on A to it.</summary>
    Task StartAsync(ChainNetwork network, string tunnel);

    /// <summary><paramref name="count"/> flows of mixed sizes and directions; each runs one connection or association and asserts it intact.</summary>
    IReadOnlyList<Func<Task>> Flows(int count);
}

/// <summary>
/// TCP flows of six sizes (0 B to 4 MiB) and four shapes (up only, down only, both ways at once, echo), every one
/// checked with SHA-256 at both ends (<see cref="CheckedFlow"/>).
/// </summary>
internal sealed class TcpMixedScheme : IMixedScheme
{
    private static readonly long[] Sizes = [0, 1, 1024, 64 * 1024, 1024 * 1024, 4 * 1024 * 1024];
    private readonly CheckedFlow _flows = new();
    private ChainNetwork _network = null!;
    private HostListener? _target;
    private int _port;

    public string Scheme => "tcp";

    /// <summary>The target's failures (asserted empty by the test).</summary>
    public IReadOnlyList<Exception> TargetErrors => _target?.Errors ?? [];

    public async Task StartAsync(ChainNetwork network, string tunnel)
    {
        _network = network;
        _target = HostListener.Start(network.B, _flows.HandleAsync);
        _port = ChainNetwork.PortOf(await network.StartTunnelAsync(tunnel, _target.Uri));
    }

    public IReadOnlyList<Func<Task>> Flows(int count) => [.. Enumerable.Range(0, count).Select(i =>
    {
        var size = Sizes[i % Sizes.Length];
        var spec = (i / Sizes.Length % 4) switch
        {
            0 => new FlowSpec(i, size, 0),
            1 => new FlowSpec(i, 0, size),
            2 => new FlowSpec(i, size, Sizes[(i + 3) % Sizes.Length]),
            _ => new FlowSpec(i, size, 0, Echo: true),
        };
        return (Func<Task>)(async () =>
        {
            var socket = await _network.A.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _port));
            var client = await CheckedFlow.RunAsync(socket, spec);
            // The target records its end after its last send; the client's read of the end can come first.
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
    }
}

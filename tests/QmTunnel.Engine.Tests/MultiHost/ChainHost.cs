using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// One host of a <see cref="ChainNetwork"/>: a network namespace (<see cref="Ns"/>), its addresses on the veth links
/// to its neighbours, and (for A, G1, G2 and B) a qmtunnel-server daemon listening on 0.0.0.0 there. It does not route:
/// it reaches its neighbours only. Made and disposed by the network.
/// </summary>
internal sealed class ChainHost
{
    private readonly Dictionary<ChainHost, VethEnd> _ends = [];
    private readonly List<ChainHost> _neighbours = [];
    private QmTunnelSession? _session;

    internal ChainHost(string name, NetNs ns)
    {
        Name = name;
        Ns = ns;
    }

    /// <summary>"A", "G1", "G2", "B" or "T".</summary>
    public string Name { get; }

    /// <summary>The namespace: <see cref="NetNs.Exec"/> runs a program in it, <see cref="NetNs.Inside{T}"/> makes sockets there.</summary>
    public NetNs Ns { get; }

    /// <summary>The host's daemon (null for T, which runs none).</summary>
    public DaemonProcess? Daemon { get; internal set; }

    /// <summary>SHA-256 of the daemon's TLS certificate (what <c>?sha256=</c> pins).</summary>
    public string Thumbprint { get; internal set; } = string.Empty;

    /// <summary>The daemon's port (the same on every address of the host).</summary>
    public int Port => (Daemon ?? throw new InvalidOperationException($"host {Name} runs no daemon")).Port;

    /// <summary>The hosts joined to this one by a veth pair.</summary>
    public IReadOnlyList<ChainHost> Neighbours => _neighbours;

    /// <summary>This host's address on its link to <paramref name="neighbour"/> (what the neighbour dials).</summary>
    public IPAddress AddressFacing(ChainHost neighbour) => EndFacing(neighbour).Address;

    /// <summary>The interface of this host on its link to <paramref name="neighbour"/>.</summary>
    public string InterfaceFacing(ChainHost neighbour) => EndFacing(neighbour).Interface;

    /// <summary>
    /// This host's daemon as the hop <paramref name="from"/> dials: <c>qmt://address:port</c> (TLS; with
    /// <paramref name="pin"/>, <c>?sha256=</c> its thumbprint) or <c>qmt+plain://</c>, then <paramref name="options"/>
    /// (e.g. "heartbeat=1s&amp;receive-timeout=3s") as more query options.
    /// </summary>
    public string Hop(ChainHost from, bool plain = false, bool pin = false, string? options = null)
    {
        var query = new List<string>();
        if (pin)
        {
            query.Add($"sha256={Thumbprint}");
        }
        if (!string.IsNullOrEmpty(options))
        {
            query.Add(options);
        }
        return $"{(plain ? "qmt+plain" : "qmt")}://{AddressFacing(from)}:{Port}{(query.Count > 0 ? "?" + string.Join('&', query) : "")}";
    }

    /// <summary>
    /// A management session to this host's daemon as the test admin, from the host itself over its loopback; one per
    /// host, opened on first use and closed with the network (do not dispose it).
    /// </summary>
    public async Task<QmTunnelSession> SessionAsync()
    {
        if (_session is { IsOpen: true } open)
        {
            return open;
        }
        _session = await (Daemon ?? throw new InvalidOperationException($"host {Name} runs no daemon")).ConnectAsync(Ns, IPAddress.Loopback);
        return _session;
    }

    /// <summary>A TCP socket of this host connected to <paramref name="to"/> (10 s at most).</summary>
    public async Task<Socket> ConnectAsync(IPEndPoint to)
    {
        var socket = Ns.NewTcpSocket();
        try
        {
            await socket.ConnectAsync(to).WaitAsync(TimeSpan.FromSeconds(10));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>How a connect from this host to <paramref name="to"/> ends within 1 s: "Connected", "TimedOut" or the socket error.</summary>
    public async Task<string> TryConnectAsync(IPEndPoint to)
    {
        using var socket = Ns.NewTcpSocket();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await socket.ConnectAsync(to, timeout.Token);
            return "Connected";
        }
        catch (OperationCanceledException)
        {
            return "TimedOut";
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode.ToString();
        }
    }

    /// <summary>Runs a program in this host (killed with the network); see <see cref="NetNs.Exec"/>.</summary>
    public Process Exec(string file, IEnumerable<string> arguments, Action<string>? output = null) => Ns.Exec(file, arguments, output);

    public override string ToString() => Name;

    internal void Join(ChainHost neighbour, VethEnd end)
    {
        _ends[neighbour] = end;
        _neighbours.Add(neighbour);
    }

    internal async Task CloseSessionAsync()
    {
        if (_session is not null)
        {
            await _session.DisposeAsync();
            _session = null;
        }
    }

    private VethEnd EndFacing(ChainHost neighbour) =>
        _ends.TryGetValue(neighbour, out var end) ? end : throw new ArgumentException($"{Name} and {neighbour.Name} are not neighbours", nameof(neighbour));
}

using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// The multi-host test network of issue 9: four hosts in a line, each a network namespace with a qmtunnel-server
/// daemon, joined by veth pairs, and optionally a fifth host T on B's LAN (figure 2 of the original):
/// <code>
///   A ──────────── G1 ──────────── G2 ──────────── B ──────────── T
///   .1   .0/30   .2  .5  .4/30  .6   .9  .8/30  .10  .13 .12/30 .14      (198.51.100.x)
/// </code>
/// No host routes or forwards (IPv4 forwarding is off in every namespace): each reaches only its neighbours, so a
/// tunnel from A to B must pass G1 and G2. Every daemon listens on 0.0.0.0 at a port of its own, accepts plain links
/// unless told otherwise, and has the admin of the tests (<see cref="Login"/>), with which every server logs in to
/// the next. T runs no daemon: it is a target reached from B.
/// Dispose it (<c>await using</c>): the sessions, daemons and namespaces go, also when a test failed; a run that was
/// killed leaves namespaces that the next run deletes (<see cref="NetNs.CleanLeftovers"/>).
/// Needs root and iproute2: tests use <see cref="NetNsFactAttribute"/> (Nft = true for <see cref="HostRules"/>).
/// </summary>
internal sealed class ChainNetwork : IAsyncDisposable
{
    private readonly List<ChainHost> _hosts = [];

    private ChainNetwork()
    {
    }

    public ChainHost A { get; private set; } = null!;
    public ChainHost G1 { get; private set; } = null!;
    public ChainHost G2 { get; private set; } = null!;
    public ChainHost B { get; private set; } = null!;

    /// <summary>The host on B's LAN (null unless started with <c>lan: true</c>); it runs no daemon.</summary>
    public ChainHost? T { get; private set; }

    /// <summary>A, G1, G2, B: the hosts with a daemon, in chain order.</summary>
    public IReadOnlyList<ChainHost> Servers => [A, G1, G2, B];

    /// <summary>Every host made (with T when there is one).</summary>
    public IReadOnlyList<ChainHost> Hosts => _hosts;

    /// <summary>The login every daemon accepts (the tests' admin: user "admin", <see cref="EngineFixture.AdminPassword"/>).</summary>
    public static HopLogin Login => EngineFixture.AdminLogin;

    /// <summary>
    /// Makes the hosts and links, starts the four daemons at once and opens a management session to each (which reads
    /// its certificate thumbprint). <paramref name="daemonArguments"/> adds command-line options of a host's daemon
    /// (after --listen 0.0.0.0 and --allow-plain-links). Anything that fails on the way is torn down before the error is
    /// thrown.
    /// </summary>
    /// <param name="lan">Also make T on a link of its own from B (figure 2: a LAN behind the tunnel).</param>
    /// <param name="allowPlainLinks">Whether the daemons accept qmt+plain:// links.</param>
    public static async Task<ChainNetwork> StartAsync(bool lan = false, bool allowPlainLinks = true, Func<ChainHost, string[]>? daemonArguments = null)
    {
        var network = new ChainNetwork();
        try
        {
            network.A = network.Add("a", "A");
            network.G1 = network.Add("g1", "G1");
            network.G2 = network.Add("g2", "G2");
            network.B = network.Add("b", "B");
            Join(network.A, network.G1, "198.51.100.0/30");
            Join(network.G1, network.G2, "198.51.100.4/30");
            Join(network.G2, network.B, "198.51.100.8/30");
            if (lan)
            {
                network.T = network.Add("t", "T");
                Join(network.B, network.T, "198.51.100.12/30");
            }
            await Task.WhenAll(network.Servers.Select(async host =>
            {
                string[] arguments = ["--listen", "0.0.0.0", "--allow-plain-links", allowPlainLinks ? "true" : "false", .. daemonArguments?.Invoke(host) ?? []];
                host.Daemon = await DaemonProcess.StartAsync(arguments, netns: host.Ns.Name);
                var session = await host.SessionAsync();
                host.Thumbprint = (await session.GetServerInfoAsync(CancellationToken.None)).CertificateThumbprint
                    ?? throw new InvalidOperationException($"the daemon of {host.Name} has no certificate thumbprint");
            }));
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// The hops of the full chain A → G1 → G2 → B, each as its server dials it: G1 as A sees it, G2 as G1 does, B as G2
    /// does; TLS (qmt://) with the thumbprint pinned.
    /// </summary>
    public IReadOnlyList<string> Via() => [G1.Hop(A, pin: true), G2.Hop(G1, pin: true), B.Hop(G2, pin: true)];

    /// <summary>
    /// Creates the tunnel <paramref name="name"/> on A's daemon (through its session, A's admin as owner) from a port
    /// on A's loopback through <paramref name="via"/> (the full chain when null) to <paramref name="target"/> (as the
    /// last server of the chain reaches it), with the tests' admin login at every hop, starts it, and returns its
    /// bound listen address (<c>tcp://127.0.0.1:port</c>, in A).
    /// </summary>
    public async Task<string> StartTunnelAsync(string name, string target, IReadOnlyList<string>? via = null, Func<TunnelProfile, TunnelProfile>? change = null)
    {
        via ??= Via();
        var profile = new TunnelProfile
        {
            Name = name,
            Listen = "tcp://127.0.0.1:0",
            Via = [.. via],
            Target = target,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            MaxConnections = 1000,
        };
        profile = change?.Invoke(profile) ?? profile;
        var session = await A.SessionAsync();
        await session.NewTunnelAsync(profile, [.. via.Select(_ => (HopLogin?)Login)], CancellationToken.None);
        return (await session.StartTunnelAsync(name, CancellationToken.None)).BoundListen
            ?? throw new InvalidOperationException($"tunnel {name} started without a listen address");
    }

    /// <summary>The port of a listen address such as <c>tcp://127.0.0.1:40123</c>.</summary>
    public static int PortOf(string listen) => new Uri(listen).Port;

    /// <summary>What each daemon wrote to its log (for assertion messages).</summary>
    public string Logs() => string.Join("\n", Servers.Where(h => h.Daemon is not null).Select(h => $"--- {h.Name} ---\n{h.Daemon!.Log()}"));

    public async ValueTask DisposeAsync()
    {
        foreach (var host in _hosts)
        {
            try
            {
                await host.CloseSessionAsync();
            }
            catch (Exception)
            {
                // the daemon may be gone already; the namespace goes below either way
            }
        }
        foreach (var host in _hosts)
        {
            if (host.Daemon is { } daemon)
            {
                await daemon.DisposeAsync();
            }
            host.Ns.Dispose();
        }
    }

    private ChainHost Add(string name, string display)
    {
        var host = new ChainHost(display, NetNs.Create("mh-" + name));
        _hosts.Add(host);
        return host;
    }

    private static void Join(ChainHost a, ChainHost b, string subnet)
    {
        var link = NetNs.Link(a.Ns, b.Ns, subnet);
        a.Join(b, link.A);
        b.Join(a, link.B);
    }
}

using System.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Daemon;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Udp;

/// <summary>
/// A real DNS query through a udp:// tunnel of two hops across three hosts (network namespaces): A, where the tunnel
/// listens and dig asks; gateway G; B, where dnsmasq answers on B's loopback. A reaches only G, B only G. Each host
/// runs a qmtunnel-server daemon.
/// </summary>
public sealed class UdpMultiHostTests
{
    private const string Name = "udp-tunnel.test";
    private const string Answer = "198.51.100.77";

    [NetNsDnsFact]
    public async Task Dig_at_the_first_host_gets_dnsmasqs_answer_from_the_last_through_two_hops()
    {
        using var a = NetNs.Create("udp-a");
        using var g = NetNs.Create("udp-g");
        using var b = NetNs.Create("udp-b");
        var ag = NetNs.Link(a, g, "198.51.100.0/30");
        var gb = NetNs.Link(g, b, "198.51.100.4/30");
        b.Exec("dnsmasq", ["-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--port=5353", $"--address=/{Name}/{Answer}", "--user=root", "--pid-file="]);
        await using var daemonA = await DaemonProcess.StartAsync(["--listen", "0.0.0.0"], netns: a.Name);
        await using var daemonG = await DaemonProcess.StartAsync(["--listen", "0.0.0.0"], netns: g.Name);
        await using var daemonB = await DaemonProcess.StartAsync(["--listen", "0.0.0.0", "--udp-port-range", "41000-41099"], netns: b.Name);

        // A is managed from its neighbour G (this process's own namespace reaches none of them)
        await using var session = await daemonA.ConnectAsync(g, ag.A.Address);
        await session.NewTunnelAsync(new TunnelProfile
        {
            Name = "dns", Listen = "udp://127.0.0.1:5300", Via = [$"qmt://{ag.B.Address}:{daemonG.Port}", $"qmt://{gb.B.Address}:{daemonB.Port}"],
            Target = "udp://127.0.0.1:5353", ConnectTimeout = TimeSpan.FromSeconds(10),
        }, [EngineFixture.AdminLogin, EngineFixture.AdminLogin], CancellationToken.None);
        await session.StartTunnelAsync("dns", CancellationToken.None);

        var answers = new List<string>();
        var dig = a.Exec("dig", ["@127.0.0.1", "-p", "5300", Name, "A", "+short", "+tries=3", "+time=3"], line => { lock (answers) { answers.Add(line); } });
        await dig.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(dig.ExitCode == 0, $"dig failed ({dig.ExitCode}): {string.Join(" | ", answers)}; A: {daemonA.Log()}");
        Assert.Contains(Answer, answers);

        var stats = await session.GetTunnelStatsAsync("dns", CancellationToken.None);
        Assert.True(stats.DatagramsFromClients >= 1 && stats.DatagramsToClients >= 1, $"{stats.DatagramsFromClients} in, {stats.DatagramsToClients} out");
        Assert.Equal(0, stats.DatagramsDropped);
    }
}

/// <summary>A <see cref="NetNsFactAttribute"/> test that also needs dnsmasq and dig: skipped, with the reason, when they are missing.</summary>
public sealed class NetNsDnsFactAttribute : FactAttribute
{
    public NetNsDnsFactAttribute()
    {
        Skip = new NetNsFactAttribute().Skip
            ?? (OnPath("dnsmasq") ? null : "dnsmasq not found: apt-get install dnsmasq-base")
            ?? (OnPath("dig") ? null : "dig not found: apt-get install dnsutils");
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)))
        || File.Exists("/usr/sbin/" + program);
}

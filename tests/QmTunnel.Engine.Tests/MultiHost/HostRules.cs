using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Tests.Faults;

namespace QmTunnel.Engine.Tests.MultiHost;

/// <summary>
/// nftables rules of one <see cref="ChainHost"/>, in a table of their own (<c>inet qmtmh</c>, gone with the
/// namespace) rewritten whole at each change, looking at what arrives from a neighbour: which links it opens to a
/// port of this host, by their first bytes (a TLS ClientHello, 0x16, or a plain link's preamble <c>QMTL</c>), and a
/// block that drops every packet from it (the neighbour's connections stall with no RST; ARP still works, so its sends
/// do not fail: only the silence tells). The counters restart at each change. Needs nft (<c>[NetNsFact(Nft = true)]</c>).
/// </summary>
internal sealed partial class HostRules(ChainHost host)
{
    private readonly Lock _lock = new();
    private readonly List<(IPAddress From, int Port)> _watched = [];
    private readonly HashSet<IPAddress> _blocked = [];

    /// <summary>Counts the links <paramref name="from"/> opens to <paramref name="port"/> of this host, by how they begin.</summary>
    public void Watch(ChainHost from, int port)
    {
        lock (_lock)
        {
            _watched.Add((from.AddressFacing(host), port));
            Apply();
        }
    }

    /// <summary>Packets from <paramref name="from"/> that opened a TLS link (a ClientHello) or a plain one (QMTL), so far.</summary>
    public (long Tls, long Plain) Openings(ChainHost from)
    {
        var address = from.AddressFacing(host).ToString();
        var listing = NetNs.Run("ip", ["netns", "exec", host.Ns.Name, "nft", "list", "table", "inet", "qmtmh"]);
        long Count(string kind) => Counter().Matches(listing).Where(m => m.Groups["name"].Value == $"{kind} {address}")
            .Sum(m => long.Parse(m.Groups["packets"].Value, CultureInfo.InvariantCulture));
        return (Count("tls"), Count("plain"));
    }

    /// <summary>While on, every packet from <paramref name="from"/> to this host is dropped.</summary>
    public void Block(ChainHost from, bool on = true)
    {
        lock (_lock)
        {
            var address = from.AddressFacing(host);
            if (on)
            {
                _blocked.Add(address);
            }
            else
            {
                _blocked.Remove(address);
            }
            Apply();
        }
    }

    private void Apply()
    {
        var script = new StringBuilder("table inet qmtmh\ndelete table inet qmtmh\n");
        script.Append("table inet qmtmh {\n  chain input {\n    type filter hook input priority -10; policy accept;\n");
        foreach (var address in _blocked)
        {
            script.Append(CultureInfo.InvariantCulture, $"    ip saddr {address} drop\n");
        }
        foreach (var (from, port) in _watched)
        {
            script.Append(CultureInfo.InvariantCulture, $"    ip saddr {from} tcp dport {port} @ih,0,8 0x16 counter comment \"tls {from}\"\n");
            script.Append(CultureInfo.InvariantCulture, $"    ip saddr {from} tcp dport {port} @ih,0,32 0x514d544c counter comment \"plain {from}\"\n");
        }
        script.Append("  }\n}\n");
        NetNs.Run("ip", ["netns", "exec", host.Ns.Name, "nft", "-f", "-"], script.ToString());
    }

    [GeneratedRegex("counter packets (?<packets>\\d+) bytes \\d+ comment \"(?<name>[^\"]+)\"")]
    private static partial Regex Counter();
}

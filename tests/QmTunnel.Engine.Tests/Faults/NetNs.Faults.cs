using System.Text;
using System.Text.RegularExpressions;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// The nftables faults of a host: one table, <c>inet qmtfault</c>, in the host's namespace only (it goes with the
/// namespace), rewritten whole in one transaction at each change. Rules look at what arrives at the host (the input
/// hook) and never at its loopback. They do not touch forwarded traffic or what the host sends.
/// </summary>
public sealed partial class NetNs
{
    private readonly Lock _rules = new();
    private bool _dropNewInbound;
    private int _dropPercent;

    /// <summary>
    /// While on, SYNs that open TCP connections to this host are dropped (the host unreachable for new connections: a
    /// connect times out); connections already open go on.
    /// </summary>
    public void DropNewInbound(bool on = true)
    {
        lock (_rules)
        {
            _dropNewInbound = on;
            ApplyRules();
        }
    }

    /// <summary>
    /// Drops <paramref name="percent"/> of the packets arriving at this host, at random (<c>numgen random mod 100 &lt; N</c>);
    /// 0 stops it. Put it on both hosts of a link for loss both ways.
    /// </summary>
    public void DropPercent(int percent)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(percent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 100);
        lock (_rules)
        {
            _dropPercent = percent;
            ApplyRules();
        }
    }

    /// <summary>Packets the rules dropped since they were last changed.</summary>
    public long DroppedPackets()
    {
        lock (_rules)
        {
            if (!_dropNewInbound && _dropPercent == 0)
            {
                return 0;
            }
            var listing = Run("ip", ["netns", "exec", Name, "nft", "list", "table", "inet", "qmtfault"]);
            return Counters().Matches(listing).Sum(m => long.Parse(m.Groups["packets"].Value, System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    private void ApplyRules()
    {
        // "table" makes it when missing, so the delete always has one to delete: the same script works every time.
        var script = new StringBuilder("table inet qmtfault\ndelete table inet qmtfault\n");
        if (_dropNewInbound || _dropPercent > 0)
        {
            script.Append("table inet qmtfault {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    iif \"lo\" accept\n");
            if (_dropNewInbound)
            {
                script.Append("    tcp flags & (syn | ack) == syn counter drop\n");
            }
            if (_dropPercent > 0)
            {
                script.Append(System.Globalization.CultureInfo.InvariantCulture, $"    numgen random mod 100 < {_dropPercent} counter drop\n");
            }
            script.Append("  }\n}\n");
        }
        Run("ip", ["netns", "exec", Name, "nft", "-f", "-"], script.ToString());
    }

    [GeneratedRegex(@"counter packets (?<packets>\d+)")]
    private static partial Regex Counters();
}

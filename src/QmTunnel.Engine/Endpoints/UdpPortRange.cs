using System.Globalization;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// The local ports a server's outgoing UDP sockets (one per association it dials at the end of a chain) are bound
/// from, as in the original qmTunnel (33001-63000): a firewall can then allow exactly these. A server setting
/// (Set-QmTunnelServerConfig -UdpPortRange). Immutable.
/// </summary>
public sealed record UdpPortRange(int First, int Last)
{
    public static readonly UdpPortRange Default = new(33001, 63000);

    public int Count => Last - First + 1;

    /// <summary>Why <paramref name="first"/>-<paramref name="last"/> is no port range, or null when it is one.</summary>
    public static string? Problem(int first, int last) =>
        first is < 1 or > 65535 || last is < 1 or > 65535 ? $"UdpPortRange {first}-{last} is out of range: give ports from 1 to 65535, e.g. 33001-63000 (the default)."
        : first > last ? $"UdpPortRange {first}-{last} is empty: give the lower port first, e.g. 33001-63000 (the default)."
        : null;

    /// <summary>Parses "first-last" (or one port); null and why not when it is not a valid range.</summary>
    public static (UdpPortRange? Range, string? Problem) Parse(string? text)
    {
        var parts = (text ?? string.Empty).Split('-', StringSplitOptions.TrimEntries);
        if (parts.Length is 1 or 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first)
            && int.TryParse(parts[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var last))
        {
            return Problem(first, last) is { } problem ? (null, problem) : (new UdpPortRange(first, last), null);
        }
        return (null, $"UdpPortRange '{text}' is not a port range: write it as FIRST-LAST, e.g. 33001-63000 (the default).");
    }

    public override string ToString() => First == Last ? First.ToString(CultureInfo.InvariantCulture) : $"{First}-{Last}";
}

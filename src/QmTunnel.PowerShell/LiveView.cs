using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Text;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell;

/// <summary>
/// The terminal view of -Follow: redraws a small table in place (VT escape sequences) on each update, with byte
/// rates from the previous update. Used only when a person watches (see <see cref="IsWanted"/>); otherwise the
/// cmdlets write objects. It does not read input and does not keep history.
/// </summary>
internal sealed class LiveView(PSHostUserInterface ui)
{
    private int _lines;
    private DateTime _lastAt;
    private Dictionary<string, (long In, long Out)> _lastBytes = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Typed at the prompt, last in its pipeline, on a terminal that understands VT sequences.</summary>
    public static bool IsWanted(InvocationInfo invocation, PSHost host) =>
        invocation.CommandOrigin == CommandOrigin.Runspace
        && invocation.PipelinePosition == invocation.PipelineLength
        && host.UI.SupportsVirtualTerminal
        && !Console.IsOutputRedirected;

    public void Show(IReadOnlyList<TunnelStats> stats)
    {
        var now = DateTime.UtcNow;
        var seconds = _lastAt == default ? 0 : (now - _lastAt).TotalSeconds;
        var text = new StringBuilder();
        text.AppendLine(Row("Name", "State", "Conn", "Failed", "From clients", "To clients", "Latency", "Last error"));
        foreach (var s in stats)
        {
            var rateIn = "";
            var rateOut = "";
            if (seconds > 0 && _lastBytes.TryGetValue(s.Name, out var before))
            {
                rateIn = " " + Size((s.BytesFromClients - before.In) / seconds) + "/s";
                rateOut = " " + Size((s.BytesToClients - before.Out) / seconds) + "/s";
            }
            text.AppendLine(Row(
                s.Name,
                s.State.ToString(),
                string.Create(CultureInfo.InvariantCulture, $"{s.ConnectionsCurrent}/{s.ConnectionsTotal}"),
                (s.FailedConnections + s.RejectedConnections).ToString(CultureInfo.InvariantCulture),
                Size(s.BytesFromClients) + rateIn,
                Size(s.BytesToClients) + rateOut,
                s.LinkLatency is { } latency ? string.Create(CultureInfo.InvariantCulture, $"{latency.TotalMilliseconds:0.0} ms") : "",
                s.LastError ?? ""));
        }
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss}  {stats.Count} tunnel(s) — Ctrl+C stops"));
        _lastBytes = stats.ToDictionary(s => s.Name, s => (s.BytesFromClients, s.BytesToClients), StringComparer.OrdinalIgnoreCase);
        _lastAt = now;
        Draw(text.ToString());
    }

    public void Show(IReadOnlyList<ConnectionInfo> connections)
    {
        var text = new StringBuilder();
        text.AppendLine(Row("Tunnel", "Id", "State", "Client", "From client", "To client", "Duration", "Error"));
        foreach (var c in connections.OrderBy(c => c.State is ConnectionState.Closed or ConnectionState.Failed).ThenByDescending(c => c.ConnectedAt).Take(40))
        {
            text.AppendLine(Row(c.Tunnel, c.Id.ToString(CultureInfo.InvariantCulture), c.State.ToString(), c.Client,
                Size(c.BytesFromClient), Size(c.BytesToClient), c.Duration.ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture), c.Error ?? ""));
        }
        var open = connections.Count(c => c.State is ConnectionState.Open or ConnectionState.Connecting);
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss}  {open} open, {connections.Count} listed — Ctrl+C stops"));
        Draw(text.ToString());
    }

    private void Draw(string text)
    {
        var width = Math.Max(40, SafeWidth() - 1);
        var lines = text.Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Length > width ? l[..(width - 1)] + "…" : l).ToList();
        var output = new StringBuilder();
        if (_lines > 0)
        {
            output.Append("\u001b[").Append(_lines.ToString(CultureInfo.InvariantCulture)).Append('F').Append("\u001b[J");
        }
        foreach (var line in lines)
        {
            output.Append(line).Append('\n');
        }
        ui.Write(output.ToString());
        _lines = lines.Count;
    }

    private int SafeWidth()
    {
        try
        {
            return ui.RawUI.BufferSize.Width > 0 ? ui.RawUI.BufferSize.Width : 120;
        }
        // Hosts without a raw console (hosted runspaces, some remoting hosts) throw NotImplementedException here.
        catch (Exception ex) when (ex is NotImplementedException or HostException or IOException)
        {
            return 120;
        }
    }

    private static string Row(string a, string b, string c, string d, string e, string f, string g, string h) =>
        string.Create(CultureInfo.InvariantCulture, $"{Cut(a, 20),-20} {Cut(b, 11),-11} {c,9} {d,6} {e,22} {f,22} {g,9}  {h}");

    private static string Cut(string s, int n) => s.Length > n ? s[..(n - 1)] + "…" : s;

    internal static string Size(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        var unit = 0;
        while (Math.Abs(bytes) >= 1024 && unit < units.Length - 1)
        {
            bytes /= 1024;
            unit++;
        }
        return bytes.ToString(unit == 0 ? "0" : "0.0", CultureInfo.InvariantCulture) + " " + units[unit];
    }
}

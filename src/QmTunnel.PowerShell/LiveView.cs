using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Text;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell;

/// <summary>
/// The terminal view of -Follow: redraws a small table in place (VT escape sequences) on each update, with byte
/// rates from the previous update. It fits the window it is drawn in: every line shorter than the window is wide
/// (a full-width line would wrap), and no more lines than the window is high (more would scroll, and a redraw could
/// not move back over them), so rows that do not fit are counted in a "… more" line. At 80 columns it keeps every
/// column that matters (name, state, connections, failures, bytes and rates each way, the chain's hops and end-to-end
/// round trip), narrowing only the name; under the table, one line per tunnel whose hops are not all up names each
/// hop's state, so a hop going down, resuming and coming back shows as it happens. Used only when a person watches
/// (see <see cref="IsWanted"/>); otherwise the cmdlets write objects. It does not read input and does not keep history.
/// </summary>
internal sealed class LiveView(PSHostUserInterface ui)
{
    /// <summary>The window assumed when the host cannot say.</summary>
    private const int DefaultWidth = 120, DefaultHeight = 30;

    private int _lines;
    private DateTime _lastAt;
    private Dictionary<string, (long In, long Out)> _lastBytes = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Typed at the prompt, last in its pipeline, on a host that understands VT sequences (and, for the console host,
    /// whose output is a terminal rather than a file or a pipe).
    /// </summary>
    public static bool IsWanted(InvocationInfo invocation, PSHost host) =>
        invocation.CommandOrigin == CommandOrigin.Runspace
        && invocation.PipelinePosition == invocation.PipelineLength
        && host.UI.SupportsVirtualTerminal
        && (host.Name != "ConsoleHost" || !Console.IsOutputRedirected);

    public void Show(IReadOnlyList<TunnelStats> stats)
    {
        var now = DateTime.UtcNow;
        var seconds = _lastAt == default ? 0 : (now - _lastAt).TotalSeconds;
        var (width, height) = WindowSize();
        // Name takes what the fixed columns leave (at least 8); the fixed ones fit 80 columns with an 8-wide name.
        int[] fixedWidths = [11, 7, 4, 6, 8, 6, 8, 6, 6];
        var nameWidth = Math.Max(8, width - 1 - fixedWidths.Sum() - fixedWidths.Length);
        string Row(params string[] cells) => Cells([nameWidth, .. fixedWidths], [false, false, true, true, true, true, true, true, true, true], cells);
        var rows = new List<string>();
        foreach (var s in stats)
        {
            var rateIn = "";
            var rateOut = "";
            if (seconds > 0 && _lastBytes.TryGetValue(s.Name, out var before))
            {
                rateIn = Size((s.BytesFromClients - before.In) / seconds) + "/s";
                rateOut = Size((s.BytesToClients - before.Out) / seconds) + "/s";
            }
            rows.Add(Row(
                s.Name,
                s.State.ToString(),
                string.Create(CultureInfo.InvariantCulture, $"{Count(s.ConnectionsCurrent)}/{Count(s.ConnectionsTotal)}"),
                Count(s.FailedConnections + s.RejectedConnections),
                Size(s.BytesFromClients),
                rateIn,
                Size(s.BytesToClients),
                rateOut,
                s.HopSummary,
                s.EndToEndLatency is { } latency ? Milliseconds(latency) : ""));
        }
        // Under the table (they do not fit in a column at 80): the hops of chains not all up, then the last errors.
        var notes = stats.Where(s => s.Hops.Any(h => h.State != TunnelHopState.Up))
            .Select(s => $"{s.Name}: " + string.Join("  ", s.Hops.Select(h => $"{h.Hop} {Host(h.Server)} {h.State}{(h.Latency is { } rtt ? " " + Milliseconds(rtt) : "")}")))
            .Concat(stats.Where(s => !string.IsNullOrEmpty(s.LastError)).Select(s => $"{s.Name}: {s.LastError}")).ToList();
        _lastBytes = stats.ToDictionary(s => s.Name, s => (s.BytesFromClients, s.BytesToClients), StringComparer.OrdinalIgnoreCase);
        _lastAt = now;
        Draw(width, height, Row("Name", "State", "Conn", "Fail", "In", "In/s", "Out", "Out/s", "Hops", "RTT"), rows, notes,
            string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss}  {stats.Count} tunnel(s)  In: from clients, Out: to clients  Ctrl+C stops"));
    }

    public void Show(IReadOnlyList<ConnectionInfo> connections)
    {
        var (width, height) = WindowSize();
        int[] fixedWidths = [6, 10, 19, 7, 7, 8];
        var errorWidth = Math.Max(5, width - 1 - 10 - fixedWidths.Sum() - fixedWidths.Length - 1);
        string Row(params string[] cells) => Cells([10, .. fixedWidths, errorWidth], [false, true, false, false, true, true, true, false], cells);
        var rows = connections.OrderBy(c => c.State is ConnectionState.Closed or ConnectionState.Failed).ThenByDescending(c => c.ConnectedAt)
            .Select(c => Row(c.Tunnel, c.Id.ToString(CultureInfo.InvariantCulture), c.State.ToString(), c.Client,
                Size(c.BytesFromClient), Size(c.BytesToClient), c.Duration.ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture), c.Error ?? ""))
            .ToList();
        var open = connections.Count(c => c.State is ConnectionState.Open or ConnectionState.Connecting);
        Draw(width, height, Row("Tunnel", "Id", "State", "Client", "In", "Out", "Duration", "Error"), rows, [],
            string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss}  {open} open, {connections.Count} listed  Ctrl+C stops"));
    }

    /// <summary>
    /// Draws header, rows, notes and footer over the previous frame, within <paramref name="width"/> - 1 columns and
    /// <paramref name="height"/> - 1 lines; rows beyond that are summed up in a "… more" line.
    /// </summary>
    private void Draw(int width, int height, string header, List<string> rows, List<string> notes, string footer)
    {
        var room = Math.Max(1, height - 1 - 2); // header and footer
        var lines = new List<string> { header };
        var shownNotes = notes.Take(Math.Max(0, Math.Min(notes.Count, room / 3))).ToList();
        var rowRoom = room - shownNotes.Count;
        if (rows.Count <= rowRoom)
        {
            lines.AddRange(rows);
        }
        else
        {
            lines.AddRange(rows.Take(rowRoom - 1));
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"… {rows.Count - (rowRoom - 1)} more (a taller window shows them; without -Follow all are listed)"));
        }
        lines.AddRange(shownNotes);
        lines.Add(footer);
        var fit = Math.Max(20, width - 1);
        var output = new StringBuilder();
        if (_lines > 0)
        {
            output.Append("\u001b[").Append(_lines.ToString(CultureInfo.InvariantCulture)).Append('F').Append("\u001b[J");
        }
        foreach (var line in lines)
        {
            output.Append(line.Length > fit ? line[..(fit - 1)] + "…" : line.TrimEnd()).Append('\n');
        }
        ui.Write(output.ToString());
        _lines = lines.Count;
    }

    /// <summary>The visible window (not the scroll-back buffer), or a default when the host cannot say.</summary>
    private (int Width, int Height) WindowSize()
    {
        try
        {
            var size = ui.RawUI.WindowSize;
            return (size.Width > 0 ? size.Width : DefaultWidth, size.Height > 0 ? size.Height : DefaultHeight);
        }
        // Hosts without a raw console (hosted runspaces, some remoting hosts) throw NotImplementedException here, or have none.
        catch (Exception ex) when (ex is NotImplementedException or HostException or IOException or NullReferenceException)
        {
            return (DefaultWidth, DefaultHeight);
        }
    }

    /// <summary>Cells cut to their widths, left- or right-aligned, separated by one space.</summary>
    private static string Cells(int[] widths, bool[] right, string[] cells)
    {
        var text = new StringBuilder();
        for (var i = 0; i < cells.Length; i++)
        {
            var cell = cells[i].Length > widths[i] ? cells[i][..Math.Max(0, widths[i] - 1)] + "…" : cells[i];
            if (i > 0)
            {
                text.Append(' ');
            }
            text.Append(right[i] ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]));
        }
        return text.ToString();
    }

    /// <summary>A round trip in at most 6 characters: 0.4ms, 123ms, 1.2s.</summary>
    private static string Milliseconds(TimeSpan rtt) => rtt.TotalMilliseconds switch
    {
        < 100 => rtt.TotalMilliseconds.ToString("0.0", CultureInfo.InvariantCulture) + "ms",
        < 1000 => rtt.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture) + "ms",
        _ => rtt.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + "s",
    };

    /// <summary>A hop's server without its scheme (host:port), for the hop lines.</summary>
    private static string Host(string server) => server.IndexOf("://", StringComparison.Ordinal) is var at and >= 0 ? server[(at + 3)..] : server;

    /// <summary>A count in at most 4 characters: 999, 12k, 3.4M.</summary>
    private static string Count(long n) => n switch
    {
        < 1000 => n.ToString(CultureInfo.InvariantCulture),
        < 10_000 => (n / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "k",
        < 1_000_000 => (n / 1000).ToString(CultureInfo.InvariantCulture) + "k",
        _ => (n / 1_000_000.0).ToString("0.0", CultureInfo.InvariantCulture) + "M",
    };

    /// <summary>Bytes in at most 6 characters: 512B, 12.3K, 1023M, 4.5G.</summary>
    internal static string Size(double bytes)
    {
        string[] units = ["B", "K", "M", "G", "T"];
        var unit = 0;
        while (Math.Abs(bytes) >= 1000 && unit < units.Length - 1)
        {
            bytes /= 1024;
            unit++;
        }
        var digits = unit == 0 || Math.Abs(bytes) >= 100 ? "0" : "0.0";
        return bytes.ToString(digits, CultureInfo.InvariantCulture) + units[unit];
    }
}

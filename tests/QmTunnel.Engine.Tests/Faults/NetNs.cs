using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace QmTunnel.Engine.Tests.Faults;

/// <summary>One end of a veth pair made by <see cref="NetNs.Link"/>: the namespace, the interface name there, its address.</summary>
public sealed record VethEnd(NetNs Host, string Interface, IPAddress Address);

/// <summary>A veth pair between two namespaces, each end with an address of one small subnet.</summary>
public sealed record VethLink(VethEnd A, VethEnd B, int PrefixLength);

/// <summary>
/// A Linux network namespace for multi-host tests (a "host"): made with <c>ip netns add</c> under a unique name
/// (<see cref="Prefix"/>, this process's id, the test's name), its loopback up, deleted on <see cref="Dispose"/> with
/// every process still in it (and, failing that, at process exit, or by the next run's <see cref="CleanLeftovers"/>).
/// Hosts are joined by veth pairs (<see cref="Link"/>) with addresses of the documentation ranges 198.51.100.0/24 and
/// 203.0.113.0/24 only (192.0.2.0/24 and fd00::/64 are this machine's own). A host reaches its neighbours only: no
/// routes beyond a link are made, and forwarding is off unless <see cref="EnableForwarding"/>.
/// Faults: <see cref="SetLinkDown"/> (a silent cut the neighbour's kernel sees as loss: no RST, TCP retransmits and
/// carries on after <see cref="SetLinkUp"/>), and nftables rules (NetNs.Faults.cs). The test process itself stays in
/// the root namespace: it runs programs inside with <see cref="Exec"/> and makes sockets inside with
/// <see cref="Inside{T}"/>.
/// Needs root, iproute2 (and nftables for the rules); tests use <see cref="NetNsFactAttribute"/>, which skips them
/// with the reason when that is missing.
/// </summary>
public sealed partial class NetNs : IDisposable
{
    /// <summary>Every namespace these tests make starts with this (and the creating process's id after it).</summary>
    public const string Prefix = "qmtf-";

    private const int CloneNewNet = 0x40000000;
    private static readonly Lock Registry = new();
    private static readonly HashSet<NetNs> Alive = [];
    private static readonly Lazy<int> Cleaned = new(() =>
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => DisposeAlive();
        return CleanLeftovers();
    });
    private static int _created;

    private readonly List<Process> _processes = [];
    private int _interfaces;
    private bool _disposed;

    private NetNs(string name)
    {
        Name = name;
    }

    /// <summary>The namespace's full name (for <c>ip netns exec</c>).</summary>
    public string Name { get; }

    /// <summary>
    /// Makes a namespace named <see cref="Prefix"/>, this process's id, <paramref name="name"/> and a counter (so tests
    /// running at once never share one), with its loopback up. Leftovers of crashed runs are deleted first (once).
    /// </summary>
    public static NetNs Create(string name)
    {
        if (!NameRule().IsMatch(name))
        {
            throw new ArgumentException($"'{name}' is not a short name (letters, digits, '-', up to 20).", nameof(name));
        }
        _ = Cleaned.Value;
        var ns = new NetNs($"{Prefix}{Environment.ProcessId}-{name}-{Interlocked.Increment(ref _created)}");
        lock (Registry)
        {
            Ip("netns", "add", ns.Name);
            Alive.Add(ns);
        }
        try
        {
            Ip("-n", ns.Name, "link", "set", "lo", "up");
        }
        catch
        {
            ns.Dispose();
            throw;
        }
        return ns;
    }

    /// <summary>
    /// Joins <paramref name="a"/> and <paramref name="b"/> with a veth pair in <paramref name="subnet"/> (e.g.
    /// "198.51.100.0/30", inside 198.51.100.0/24 or 203.0.113.0/24): <paramref name="a"/> gets its first address,
    /// <paramref name="b"/> the second, both ends up. Each pair needs a subnet of its own on a host.
    /// </summary>
    public static VethLink Link(NetNs a, NetNs b, string subnet)
    {
        var (network, prefix) = ParseSubnet(subnet);
        var first = Offset(network, 1);
        var second = Offset(network, 2);
        var aName = a.NextInterface();
        var bName = b.NextInterface();
        Ip("link", "add", "name", aName, "netns", a.Name, "type", "veth", "peer", "name", bName, "netns", b.Name);
        foreach (var (ns, ifname, address) in new[] { (a, aName, first), (b, bName, second) })
        {
            Ip("-n", ns.Name, "addr", "add", $"{address}/{prefix}", "dev", ifname);
            Ip("-n", ns.Name, "link", "set", ifname, "up");
        }
        return new VethLink(new VethEnd(a, aName, first), new VethEnd(b, bName, second), prefix);
    }

    /// <summary>
    /// Takes an interface of this host down (<c>ip link set down</c>). For the neighbour this is a silent cut: what it
    /// sends over the link vanishes (its end stays up without carrier and keeps its route), so its connects time out
    /// and its open connections stall without an RST, and TCP carries on after <see cref="SetLinkUp"/>. This host
    /// itself loses the link's route: its own new connects over it fail at once with "network is unreachable". So cut
    /// the far end of the link from the side under test. Addresses stay.
    /// </summary>
    public void SetLinkDown(string ifname) => Ip("-n", Name, "link", "set", ifname, "down");

    /// <summary>Brings an interface up again (its addresses and the route of its subnet come back).</summary>
    public void SetLinkUp(string ifname) => Ip("-n", Name, "link", "set", ifname, "up");

    /// <summary>Turns on IPv4 forwarding in this host (only for a host that routes between two others).</summary>
    public void EnableForwarding() => Ip("netns", "exec", Name, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward");

    /// <summary>
    /// Starts <paramref name="file"/> inside this host (<c>ip netns exec</c>, which execs it: the process id is the
    /// program's). Its standard output and error lines go to <paramref name="output"/> (or are dropped). Killed, with
    /// its children, on <see cref="Dispose"/>.
    /// </summary>
    public Process Exec(string file, IEnumerable<string> arguments, Action<string>? output = null)
    {
        var start = new ProcessStartInfo("ip")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in (string[])["netns", "exec", Name, file, .. arguments])
        {
            start.ArgumentList.Add(argument);
        }
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => Pass(e.Data);
        process.ErrorDataReceived += (_, e) => Pass(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        lock (_processes)
        {
            _processes.Add(process);
        }
        return process;

        void Pass(string? line)
        {
            if (line is not null)
            {
                output?.Invoke(line);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on a thread of its own that has entered this host's namespace (setns), and
    /// returns its result: sockets made there belong to this host for good, whichever thread uses them later. The
    /// thread ends with the action, so nothing else ever runs in the namespace by accident.
    /// </summary>
    public T Inside<T>(Func<T> action)
    {
        T result = default!;
        ExceptionDispatchInfo? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{Name}"); // where ip netns keeps them
                if (SetNs((int)handle.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new IOException($"setns into {Name} failed: errno {Marshal.GetLastPInvokeError()}.");
                }
                result = action();
            }
            catch (Exception ex)
            {
                error = ExceptionDispatchInfo.Capture(ex);
            }
        })
        { IsBackground = true, Name = $"in {Name}" };
        thread.Start();
        thread.Join();
        error?.Throw();
        return result;
    }

    /// <summary>A TCP/IPv4 socket (NoDelay) that belongs to this host: connect it to a neighbour, or bind and listen.</summary>
    public Socket NewTcpSocket() => Inside(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });

    /// <summary>Kills what runs inside (processes started here and any other), then deletes the namespace (and its veths).</summary>
    public void Dispose()
    {
        lock (Registry)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            Alive.Remove(this);
        }
        lock (_processes)
        {
            foreach (var process in _processes)
            {
                Kill(process);
            }
        }
        Delete(Name);
    }

    /// <summary>
    /// Deletes namespaces of <see cref="Prefix"/> whose creating process has ended (a crashed or killed test run), with
    /// whatever still runs in them; those of running processes (other test runs) are left alone. Returns how many.
    /// </summary>
    public static int CleanLeftovers()
    {
        var deleted = 0;
        foreach (var line in Ip("netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            var match = LeftoverName().Match(name);
            if (match.Success && int.Parse(match.Groups["pid"].Value, System.Globalization.CultureInfo.InvariantCulture) is var pid
                && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
            {
                Delete(name);
                deleted++;
            }
        }
        return deleted;
    }

    private static void DisposeAlive()
    {
        NetNs[] alive;
        lock (Registry)
        {
            alive = [.. Alive];
        }
        foreach (var ns in alive)
        {
            ns.Dispose();
        }
    }

    private static void Delete(string name)
    {
        // A namespace lives on while a process is in it: end them first.
        foreach (var pid in Ip("netns", "pids", name).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                using var process = Process.GetProcessById(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture));
                Kill(process);
            }
            catch (ArgumentException)
            {
                // already gone
            }
        }
        Ip("netns", "delete", name);
    }

    private static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    private string NextInterface() => $"veth{Interlocked.Increment(ref _interfaces) - 1}";

    internal static (IPAddress Network, int Prefix) ParseSubnet(string subnet)
    {
        var parts = subnet.Split('/');
        if (parts.Length != 2 || !IPAddress.TryParse(parts[0], out var network) || network.AddressFamily != AddressFamily.InterNetwork
            || !int.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out var prefix) || prefix is < 24 or > 30)
        {
            throw new ArgumentException($"'{subnet}' is not an IPv4 subnet from /24 to /30 (e.g. 198.51.100.0/30).", nameof(subnet));
        }
        var bytes = network.GetAddressBytes();
        var allowed = (bytes[0], bytes[1], bytes[2]) is (198, 51, 100) or (203, 0, 113);
        if (!allowed || bytes[3] % (1 << (32 - prefix)) != 0)
        {
            throw new ArgumentException($"'{subnet}' is not a subnet of 198.51.100.0/24 or 203.0.113.0/24 starting on its boundary: "
                + "tests use those documentation ranges only (192.0.2.0/24 and fd00::/64 belong to this machine).", nameof(subnet));
        }
        return (network, prefix);
    }

    private static IPAddress Offset(IPAddress network, int offset)
    {
        var bytes = network.GetAddressBytes();
        bytes[3] += (byte)offset;
        return new IPAddress(bytes);
    }

    /// <summary>Runs ip with these arguments and returns its output; throws with its error output when it fails.</summary>
    internal static string Ip(params string[] arguments) => Run("ip", arguments);

    internal static string Run(string file, string[] arguments, string? input = null)
    {
        var start = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardInput = input is not null,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start)!;
        if (input is not null)
        {
            process.StandardInput.Write(input);
            process.StandardInput.Close();
        }
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed (exit code {process.ExitCode}): {error.Result.Trim()}");
        }
        return output;
    }

    [DllImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static extern int SetNs(int fd, int nstype);

    [GeneratedRegex("^[a-z0-9-]{1,20}$")]
    private static partial Regex NameRule();

    [GeneratedRegex(@"^qmtf-(?<pid>\d+)-")]
    private static partial Regex LeftoverName();
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;
using Xunit.Abstractions;

namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>
/// A real daemon under a connection flood that never logs in: 20,000 connections from two flood processes
/// (qmtunnel-bench flood) over 40 source addresses, reopened as the server closes them. The server must live, let a
/// legitimate login through, never hold more pending connections than its caps, and keep its log small. And a daemon
/// out of file descriptors backs off instead of spinning, says so once, and recovers.
/// </summary>
public sealed partial class DaemonFloodTests(ITestOutputHelper output)
{
    private const int FloodConnections = 20_000;

    /// <summary>A qmtunnel-bench flood child process; its stdin closing ends it.</summary>
    private sealed class Flood : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];

        public Flood(int port, int count, string sources, string mode)
        {
            var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "qmtunnel-bench.dll"), "flood", "--port", port.ToString(CultureInfo.InvariantCulture),
                "--count", count.ToString(CultureInfo.InvariantCulture), "--sources", sources, "--mode", mode, "--reopen", "1", "--hold-seconds", "300",
                "--concurrency", "256", "--watch-stdin", "1"])
            {
                start.ArgumentList.Add(argument);
            }
            _process = Process.Start(start)!;
            _process.OutputDataReceived += (_, e) => Keep(e.Data);
            _process.ErrorDataReceived += (_, e) => Keep(e.Data);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        private void Keep(string? line)
        {
            if (line is not null)
            {
                lock (_lines)
                {
                    _lines.Add(line);
                }
            }
        }

        public string Output
        {
            get
            {
                lock (_lines)
                {
                    return string.Join('\n', _lines);
                }
            }
        }

        public bool Ready => Output.Contains("READY", StringComparison.Ordinal) || _process.HasExited;

        /// <summary>Connections the server closed so far (from the last STATUS line).</summary>
        public long ClosedByServer => ClosedCount().Matches(Output) is { Count: > 0 } m ? long.Parse(m[^1].Groups[1].Value, CultureInfo.InvariantCulture) : 0;

        public async ValueTask DisposeAsync()
        {
            try
            {
                _process.StandardInput.Close();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.Dispose();
        }
    }

    /// <summary>To the test's output, and to QMTUNNEL_TEST_PROGRESS (a file) when set, to follow a long test as it runs.</summary>
    private void Progress(string line)
    {
        output.WriteLine(line);
        if (Environment.GetEnvironmentVariable("QMTUNNEL_TEST_PROGRESS") is { Length: > 0 } file)
        {
            File.AppendAllText(file, $"{DateTime.Now:HH:mm:ss} {line}\n");
        }
    }

    [GeneratedRegex(@"closed=(\d+)")]
    private static partial Regex ClosedCount();

    [LinuxFact]
    public async Task Twenty_thousand_idle_pre_login_connections_leave_the_daemon_alive_within_its_caps_and_a_login_gets_through()
    {
        await using var daemon = await DaemonProcess.StartAsync();
        var rssBefore = daemon.RssKiB;
        var clock = Stopwatch.StartNew();
        long rssMax;
        ServerInfo during;
        {
            // Two processes (each may hold 10,000 sockets under the 20,000 open-files limit): silent connections from 4
            // addresses (2,500 each: far over the per-source cap), and TLS ClientHellos, which leave the server inside
            // the TLS handshake, from 36 addresses (64 each would be 2,304: over the overall cap).
            await using var silent = new Flood(daemon.Port, FloodConnections / 2, "127.0.0.10-127.0.0.13", "silent");
            await using var tls = new Flood(daemon.Port, FloodConnections / 2, "127.0.0.20-127.0.0.55", "clienthello");
            await TunnelTests.WaitUntil(() => silent.Ready && tls.Ready, 120_000);
            Progress($"flood ready after {clock.Elapsed.TotalSeconds:0.0} s:\n{silent.Output}\n{tls.Output}");
            Assert.False(daemon.HasExited, daemon.Log());
            await TunnelTests.WaitUntil(() => silent.ClosedByServer > 1000 && tls.ClosedByServer > 1000, 60_000);
            Progress("the server closed 1000 connections of each flood; logging in");

            // A legitimate login (from 127.0.0.1) while the flood holds its connections and keeps opening new ones.
            var login = Stopwatch.StartNew();
            await using (var session = await daemon.ConnectAsync())
            {
                Progress($"login during the flood: {login.ElapsedMilliseconds} ms");
                during = await session.GetServerInfoAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            }
            // And another, on a new connection, still during the flood.
            await using (var again = await daemon.ConnectAsync())
            {
                Assert.Equal(daemon.Port, (await again.GetServerInfoAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token)).Port);
            }
            rssMax = daemon.RssKiB;
            Progress($"server during the flood: pending {during.PendingLinks}, peak {during.PendingLinksPeak}, refused {during.PendingLinksRefused}, evicted {during.PendingLinksEvicted}; RSS {rssBefore} KiB before, {rssMax} KiB during");
            Progress($"flood at its end:\n{silent.Output.Split('\n')[^1]}\n{tls.Output.Split('\n')[^1]}");
        }
        Progress("the flood processes ended");
        Assert.False(daemon.HasExited, daemon.Log());
        Assert.InRange(during.PendingLinks, 0, ServerOptions.DefaultMaxPendingLinks);
        Assert.InRange(during.PendingLinksPeak, 1, ServerOptions.DefaultMaxPendingLinks);
        Assert.True(during.PendingLinksRefused > 0, "the per-source cap never acted");
        Assert.True(during.PendingLinksEvicted > 0, "the overall cap never acted");

        // After the flood: the server answers, its pending connections are gone, its log stayed small.
        await using (var session = await daemon.ConnectAsync())
        {
            Progress("the flood stopped");
            ServerInfo after;
            var deadline = Stopwatch.StartNew();
            while ((after = await session.GetServerInfoAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token)).PendingLinks > 0)
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"{after.PendingLinks} connections still wait for their login 30 s after the flood");
                await Task.Delay(50);
            }
            Assert.InRange(after.PendingLinksPeak, 1, ServerOptions.DefaultMaxPendingLinks);
        }
        var windows = (int)(clock.Elapsed.TotalSeconds / LogThrottle.Window.TotalSeconds) + 2;
        var log = daemon.Log().Split('\n');
        foreach (var id in new[] { EventIds.LinkRefused, EventIds.PendingLinkRefused, EventIds.PendingLinkEvicted })
        {
            var lines = log.Count(l => l.Contains($"[{id}]", StringComparison.Ordinal));
            output.WriteLine($"event {id}: {lines} lines in {clock.Elapsed.TotalSeconds:0} s");
            Assert.InRange(lines, 0, (LogThrottle.Burst + 1) * windows);
        }
        Assert.Equal(0, await daemon.StopAsync());
    }

    [LinuxFact]
    public async Task Out_of_file_descriptors_the_accept_loop_backs_off_says_so_once_and_recovers()
    {
        const int limit = 256;
        await using var daemon = await DaemonProcess.StartAsync(shell: $"ulimit -n {limit}");
        var free = limit - daemon.OpenFiles;
        output.WriteLine($"the daemon has {daemon.OpenFiles} of {limit} descriptors open");
        var sockets = new List<Socket>();
        try
        {
            // More connections than it has descriptors left: accept fails with EMFILE and the socket stays readable.
            for (var i = 0; i < free + 50; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                socket.Bind(new IPEndPoint(IPAddress.Parse($"127.0.1.{1 + (i % 200)}"), 0));
                await socket.ConnectAsync(IPAddress.Loopback, daemon.Port);
            }
            await TunnelTests.WaitUntil(() => daemon.Log().Contains($"[{EventIds.AcceptFailing}]", StringComparison.Ordinal), 30_000);
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
        // The waiting connections end, their descriptors come back, accepting works again.
        await TunnelTests.WaitUntil(() => daemon.Log().Contains($"[{EventIds.AcceptRecovered}]", StringComparison.Ordinal), 30_000);
        var log = daemon.Log();
        output.WriteLine(string.Join('\n', log.Split('\n').Where(l => l.Contains("[106]") || l.Contains("[107]"))));
        var failing = Assert.Single(log.Split('\n'), l => l.Contains($"[{EventIds.AcceptFailing}]", StringComparison.Ordinal));
        Assert.Contains($"TooManyOpenSockets", failing);
        Assert.Contains($"the process is out of file descriptors (open files limit {limit})", failing);
        var recovered = RecoveredLine().Match(log);
        Assert.True(recovered.Success, log);
        var failures = int.Parse(recovered.Groups["failures"].Value, CultureInfo.InvariantCulture);
        var seconds = double.Parse(recovered.Groups["seconds"].Value, CultureInfo.InvariantCulture);
        // Waits of 10 ms doubling to 1 s: a handful of tries per episode. A loop that spins makes thousands in a millisecond.
        Assert.InRange(failures, 1, 20 + (int)seconds);
        await using (var session = await daemon.ConnectAsync())
        {
            Assert.Equal(daemon.Port, (await session.GetServerInfoAsync(default)).Port);
        }
        Assert.Equal(0, await daemon.StopAsync());
    }

    [GeneratedRegex(@"Accepting links again, after (?<failures>\d+) failed accepts over (?<seconds>[\d.]+) s")]
    private static partial Regex RecoveredLine();
}

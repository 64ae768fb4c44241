using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>
/// A real qmtunnel-server daemon (the build next to the tests) on port 0 with a throwaway data folder and a log file,
/// started through bash so a test can set its umask or its open-files limit first. Its standard output and error are
/// pipes that are read (and kept) but, as with Start-QmTunnelServer -Daemon, are not where its log goes. Linux only.
/// It can run in a network namespace (<c>netns</c>, see Faults/NetNs.cs); then <see cref="ConnectAsync"/>, which dials
/// 127.0.0.1 from this process, cannot reach it: dial it from a socket of a neighbour host.
/// </summary>
internal sealed partial class DaemonProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _console = new();

    private DaemonProcess(Process process, string dataPath, string logFile)
    {
        _process = process;
        DataPath = dataPath;
        LogFile = logFile;
    }

    public string DataPath { get; }

    /// <summary>Leave the data folder when disposed (another daemon goes on with it).</summary>
    public bool KeepDataPath { get; set; }
    public string LogFile { get; }
    public int Port { get; private set; }
    public int ProcessId => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>What it wrote to the pipes of its standard output and error.</summary>
    public string Console
    {
        get
        {
            lock (_console)
            {
                return _console.ToString();
            }
        }
    }

    public string Log() => File.Exists(LogFile) ? File.ReadAllText(LogFile) : string.Empty;

    /// <param name="shell">Run before the daemon, e.g. "umask 000" or "ulimit -n 200".</param>
    /// <param name="environment">Extra environment variables (QMTUNNEL_TEST_FAULT...).</param>
    /// <param name="prepare">Called with the data path and log file before the start (to plant an old log, say).</param>
    /// <param name="waitForListening">False for a daemon expected to die while starting.</param>
    /// <param name="dataPath">The data folder (an earlier daemon's, to start it again); a new one when null.</param>
    /// <param name="netns">The network namespace to run it in (<c>ip netns exec</c>; it listens on 127.0.0.1 there unless
    /// <paramref name="arguments"/> say --listen).</param>
    public static async Task<DaemonProcess> StartAsync(string[]? arguments = null, string shell = "", IDictionary<string, string>? environment = null,
        Action<string, string>? prepare = null, bool waitForListening = true, string? netns = null, string? dataPath = null)
    {
        dataPath ??= Path.Combine(Path.GetTempPath(), "qmt-daemon-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dataPath);
        var logFile = Path.Combine(dataPath, "qmtunnel-server.log");
        prepare?.Invoke(dataPath, logFile);
        var listenedBefore = File.Exists(logFile) ? ListeningLine().Matches(File.ReadAllText(logFile)).Count : 0;
        var start = new ProcessStartInfo(netns is null ? "bash" : "ip")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (netns is not null)
        {
            foreach (var argument in (string[])["netns", "exec", netns, "bash"])
            {
                start.ArgumentList.Add(argument); // ip execs bash, which execs the daemon: one process id throughout
            }
        }
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"{(shell.Length > 0 ? shell + " && " : "")}exec \"$0\" \"$@\"");
        start.ArgumentList.Add(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet");
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "qmtunnel-server.dll"));
        foreach (var argument in (string[])["--port", "0", "--data-path", dataPath, "--log-file", logFile, "--password-iterations", "100000", .. arguments ?? []])
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["QMTUNNEL_AdminPassword"] = EngineFixture.AdminPassword;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }
        var process = Process.Start(start)!;
        var daemon = new DaemonProcess(process, dataPath, logFile);
        process.OutputDataReceived += (_, e) => daemon.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => daemon.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (waitForListening)
        {
            try
            {
                // A data folder used before holds earlier daemons' lines: wait for this one's.
                await TunnelTests.WaitUntil(() => ListeningLine().Matches(daemon.Log()).Count > listenedBefore || process.HasExited, 30_000);
                var match = ListeningLine().Matches(daemon.Log()).LastOrDefault() ?? Match.Empty;
                Assert.True(match.Success, $"the daemon did not start: {daemon.Log()} {daemon.Console}");
                daemon.Port = int.Parse(match.Groups["port"].Value, System.Globalization.CultureInfo.InvariantCulture);
            }
            catch
            {
                await daemon.DisposeAsync();
                throw;
            }
        }
        return daemon;
    }

    private void Keep(string? line)
    {
        if (line is not null)
        {
            lock (_console)
            {
                _console.AppendLine(line);
            }
        }
    }

    [GeneratedRegex(@"listening on qmt://\S+:(?<port>\d+) \(pid")]
    private static partial Regex ListeningLine();

    /// <summary>Logs in as the test admin (from 127.0.0.1), pinning the daemon's certificate in a throwaway file.</summary>
    public Task<QmTunnelSession> ConnectAsync() =>
        QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{Port}", "test"), new PasswordLogin("admin", EngineFixture.AdminPassword),
            TimeSpan.FromSeconds(20), CancellationToken.None, new ClientKnownServers(Path.Combine(DataPath, "test-pins.txt")));

    /// <summary>
    /// Logs in as the test admin over TLS to the daemon at <paramref name="address"/> from the host
    /// <paramref name="from"/> (a daemon started with netns, reached from a neighbour). The session's socket is made
    /// on a thread inside <paramref name="from"/>: this relies on the dial making its socket before its first await
    /// (LinkDialer.ConnectAsync); should that change, this fails (this process's own namespace has no route to the test
    /// subnets) rather than connect from the wrong host.
    /// </summary>
    public Task<QmTunnelSession> ConnectAsync(Faults.NetNs from, System.Net.IPAddress address) =>
        from.Inside(() => QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://{address}:{Port}", "test"),
            new PasswordLogin("admin", EngineFixture.AdminPassword), TimeSpan.FromSeconds(20), CancellationToken.None,
            new ClientKnownServers(Path.Combine(DataPath, "test-pins.txt"))));

    /// <summary>Open file descriptors of the daemon now.</summary>
    public int OpenFiles => Directory.GetFiles($"/proc/{ProcessId}/fd").Length;

    /// <summary>Resident memory of the daemon now (KiB).</summary>
    public long RssKiB => long.Parse(File.ReadLines($"/proc/{ProcessId}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>SIGTERM, then the exit code (killed after 20 s).</summary>
    /// <summary>kill -9: the daemon dies at once, with no chance to close anything; returns when it is gone.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync().ConfigureAwait(false);
    }

    public async Task<int> StopAsync()
    {
        if (!_process.HasExited)
        {
            using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync();
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode;
    }

    /// <summary>Waits for the daemon to end by itself (at most 30 s).</summary>
    public async Task<int> WaitForExitAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        if (KeepDataPath)
        {
            return;
        }
        try
        {
            Directory.Delete(DataPath, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

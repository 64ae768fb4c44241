using QmTunnel.Engine.Diagnostics;

namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>
/// The daemon's log says why it died: its file descriptors 1 and 2 point at the log file (what the runtime writes when
/// it fails fast or runs out of memory lands there), unhandled and unobserved exceptions are logged; the file is
/// owner-only whatever the umask and starts anew when it has grown too big (fd 2 follows). The faults are provoked with
/// the daemon's test variable QMTUNNEL_TEST_FAULT.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class DaemonLogTests
{
    private static Dictionary<string, string> Fault(string fault) => new() { ["QMTUNNEL_TEST_FAULT"] = fault };

    [LinuxFact]
    public async Task An_unhandled_exception_is_logged_safely_and_what_the_runtime_prints_as_the_process_dies_is_in_the_log_too()
    {
        await using var daemon = await DaemonProcess.StartAsync(environment: Fault("unhandled"));
        Assert.NotEqual(0, await daemon.WaitForExitAsync());
        var log = daemon.Log();
        var dying = log.Split('\n').Single(l => l.Contains($"QmTunnel.Server[{EventIds.DaemonDying}]", StringComparison.Ordinal));
        Assert.Contains("crit: QmTunnel.Server[903] qmtunnel-server is dying: unhandled exception: System.InvalidOperationException: test fault: an unhandled exception \\x1B[31min red\\x1B[0m\\r\\nforged line", dying);
        Assert.DoesNotContain('\u001b', dying);
        Assert.Contains("Unhandled exception. System.InvalidOperationException: test fault", log); // the runtime's own, through fd 2
        Assert.DoesNotContain("Unhandled exception.", daemon.Console);
    }

    [LinuxFact]
    public async Task What_the_runtime_writes_when_it_fails_fast_goes_to_the_log_not_to_the_unread_pipe()
    {
        await using var daemon = await DaemonProcess.StartAsync(environment: Fault("failfast"));
        Assert.NotEqual(0, await daemon.WaitForExitAsync());
        var log = daemon.Log();
        Assert.Contains("Process terminated.", log);
        Assert.Contains("test fault: fail fast", log);
        // Written where the daemon's own lines are, after them, not over them.
        Assert.True(log.IndexOf("qmtunnel-server listening on", StringComparison.Ordinal) < log.IndexOf("Process terminated.", StringComparison.Ordinal));
        Assert.DoesNotContain("Process terminated", daemon.Console);
    }

    [LinuxFact]
    public async Task An_unobserved_task_exception_is_logged_and_the_daemon_goes_on_and_its_log_is_owner_only_whatever_the_umask()
    {
        await using var daemon = await DaemonProcess.StartAsync(shell: "umask 000", environment: Fault("unobserved"),
            prepare: (_, log) =>
            {
                File.WriteAllText(log, "an older log, readable by all\n");
                File.SetUnixFileMode(log, (UnixFileMode)0b110_100_100); // 0644
            });
        await Functional.TunnelTests.WaitUntil(() => daemon.Log().Contains($"QmTunnel.Server[{EventIds.DaemonUnobservedTaskException}]", StringComparison.Ordinal));
        Assert.Contains("A background task failed and nobody looked at its error: System.AggregateException", daemon.Log());
        Assert.Contains("test fault: an unobserved task exception", daemon.Log());
        Assert.False(daemon.HasExited);
        await using (var session = await daemon.ConnectAsync())
        {
            Assert.Equal(daemon.Port, (await session.GetServerInfoAsync(default)).Port);
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(daemon.LogFile));
        Assert.StartsWith("an older log", daemon.Log());
        Assert.Equal(0, await daemon.StopAsync());
    }

    [LinuxFact]
    public async Task A_log_grown_past_half_its_limit_starts_anew_and_the_runtimes_last_words_go_to_the_new_file()
    {
        var old = string.Concat(Enumerable.Repeat("2025-01-01 00:00:00 info: an old line of the log, 64 bytes long..\n", 50)); // 3200 bytes
        await using var daemon = await DaemonProcess.StartAsync(["--log-max-size", "4KiB", "--log-files", "2"], shell: "umask 022",
            environment: Fault("failfast"), prepare: (_, log) => File.WriteAllText(log, old));
        Assert.NotEqual(0, await daemon.WaitForExitAsync());
        Assert.Equal(old, File.ReadAllText(daemon.LogFile + ".1"));
        var log = daemon.Log();
        Assert.Contains("qmtunnel-server listening on", log);
        Assert.Contains("Process terminated.", log);
        Assert.False(File.Exists(daemon.LogFile + ".2"));
        foreach (var file in new[] { daemon.LogFile, daemon.LogFile + ".1" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;

namespace QmTunnel.PowerShell.Commands;

/// <summary>Start-QmTunnelServer -Daemon: reading what the daemon wrote (its log and console), and finding the dotnet host.</summary>
public sealed partial class StartQmTunnelServerCommand
{
    private static long LogLength(string logFile)
    {
        try
        {
            return File.Exists(logFile) ? new FileInfo(logFile).Length : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>What the log holds after <paramref name="offset"/> (all of it if the daemon truncated it), or null.</summary>
    private static string? ReadLogSince(string logFile, long offset)
    {
        try
        {
            using var stream = new FileStream(logFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            stream.Position = stream.Length >= offset ? offset : 0;
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The daemon's second start line, "qmtunnel-server certificate SHA256 HEX; plain links accepted|refused" (written
    /// right after the listening line; waited for up to 2 s).
    /// </summary>
    private static (string Thumbprint, bool AllowPlainLinks)? ReadAnnouncedSecurity(string logFile, long offset)
    {
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (true)
        {
            var match = AnnouncedSecurityRegex().Match(ReadLogSince(logFile, offset) ?? string.Empty);
            if (match.Success)
            {
                return (match.Groups["thumbprint"].Value, match.Groups["plain"].Value == "accepted");
            }
            if (DateTime.UtcNow > deadline)
            {
                return null;
            }
            Thread.Sleep(20);
        }
    }

    [GeneratedRegex(@"certificate SHA256 (?<thumbprint>[0-9A-F]{64}); plain links (?<plain>accepted|refused)", RegexOptions.CultureInvariant)]
    private static partial Regex AnnouncedSecurityRegex();

    private static string LastLogLines(string logFile, long offset, int count)
    {
        var text = ReadLogSince(logFile, offset) ?? string.Empty;
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return FormatTail(lines, count);
    }

    /// <summary>The last <paramref name="count"/> lines, indented, each cut at 300 characters (stack traces are one long line).</summary>
    private static string FormatTail(IEnumerable<string> lines, int count) =>
        string.Join(Environment.NewLine, lines.TakeLast(count).Select(l => "  " + (l.Length > 300 ? l[..300] + "…" : l)));

    /// <summary>
    /// The last lines the daemon wrote to its (redirected, unread) stdout and stderr. Only once it has exited: the
    /// pipes then hold what it wrote and reach their end, so reading cannot block.
    /// </summary>
    private static string ConsoleOutput(Process process, int count)
    {
        if (!ServerRegistry.HasExited(process))
        {
            return string.Empty;
        }
        var lines = new List<string>();
        foreach (var reader in new[] { process.StandardOutput, process.StandardError })
        {
            try
            {
                var read = reader.ReadToEndAsync();
                if (read.Wait(TimeSpan.FromSeconds(2)))
                {
                    lines.AddRange(read.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                }
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or AggregateException)
            {
                // Nothing to add.
            }
        }
        return FormatTail(lines, count);
    }

    private static void StopQuietly(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(5000);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            // Already gone.
        }
    }

    /// <summary>
    /// The dotnet host of the runtime this pwsh runs on (it can run the framework-dependent daemon); else this
    /// process itself when it is dotnet (pwsh as a dotnet tool); else 'dotnet' on PATH; else null.
    /// </summary>
    internal static string? FindDotnetHost()
    {
        var exe = OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet";
        var beside = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", exe));
        if (File.Exists(beside))
        {
            return beside;
        }
        var self = Environment.ProcessPath;
        if (self is not null && string.Equals(Path.GetFileNameWithoutExtension(self), "dotnet", StringComparison.OrdinalIgnoreCase))
        {
            return self;
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, exe);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>Start-QmTunnelServer -Daemon: launching qmtunnel-server and waiting until it listens, or reporting why it did not.</summary>
public sealed partial class StartQmTunnelServerCommand
{
    private ServerInfo StartDaemon(ServerOptions options)
    {
        var moduleDir = Path.GetDirectoryName(typeof(StartQmTunnelServerCommand).Assembly.Location) ?? AppContext.BaseDirectory;
        var daemonDll = Path.Combine(moduleDir, "daemon", "qmtunnel-server.dll");
        if (!File.Exists(daemonDll))
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerStartFailed, QmErrorKind.ObjectNotFound, daemonDll,
                $"The daemon is missing from the module: '{daemonDll}' does not exist. Rebuild the module " +
                "(dotnet pwsh ./build.ps1 build) or reinstall it."));
        }
        var dotnet = FindDotnetHost();
        if (dotnet is null)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerStartFailed, QmErrorKind.ObjectNotFound, "dotnet",
                "Cannot find the dotnet host to run the daemon with. Install the .NET 10 runtime so 'dotnet' is on PATH, " +
                "or start the server in this process (without -Daemon)."));
        }
        if (ServerUsingDataPath(options.DataPath) is { } owner)
        {
            // Caught here rather than by the daemon's database lock so the running server's log is not shared.
            ThrowTerminatingError(NewErrorRecord(ErrorIds.DatabaseLocked, QmErrorKind.ResourceBusy, options.DataPath,
                $"The data path '{options.DataPath}' is in use by the qmTunnel server {owner.Address} of this session. " +
                "Give the new server another -DataPath, or stop that server first with Stop-QmTunnelServer."));
        }
        try
        {
            // Owner-only before the daemon writes its log there (DataPathInvalid, DataPathInsecure).
            foreach (var change in Engine.Storage.OwnerOnly.PrepareDataFolder(options.DataPath))
            {
                WriteWarning($"Made owner-only, as it was open to other users: {change}.");
            }
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
        var logFile = Path.Combine(options.DataPath, DaemonLogFileName);
        var logStart = LogLength(logFile);

        var startInfo = new ProcessStartInfo
        {
            UseShellExecute = false,
            CreateNoWindow = true,
            // The daemon writes to its --log-file; the pipes only keep it off this console, so they are never read.
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = options.DataPath,
        };
        // On Linux, run it in a session of its own (setsid execs in place, so the process id is the daemon's): then
        // Ctrl+C in this terminal, or closing it, does not reach the daemon.
        const string setsid = "/usr/bin/setsid";
        if (OperatingSystem.IsLinux() && File.Exists(setsid))
        {
            startInfo.FileName = setsid;
            startInfo.ArgumentList.Add(dotnet!);
        }
        else
        {
            startInfo.FileName = dotnet!;
        }
        foreach (var arg in new[]
        {
            daemonDll,
            "--port", options.Port.ToString(CultureInfo.InvariantCulture),
            "--listen", options.ListenAddress,
            "--data-path", options.DataPath,
            "--log-file", logFile,
        })
        {
            startInfo.ArgumentList.Add(arg);
        }
        if (options.AllowPlainLinks is { } allowPlain)
        {
            // Only when given: without it the daemon keeps the setting saved in its database.
            startInfo.ArgumentList.Add("--allow-plain-links");
            startInfo.ArgumentList.Add(allowPlain ? "true" : "false");
        }
        if (options.CertificatePath is { } certificate)
        {
            startInfo.ArgumentList.Add("--certificate");
            startInfo.ArgumentList.Add(certificate);
        }
        if (options.CertificateKeyPath is { } certificateKey)
        {
            startInfo.ArgumentList.Add("--certificate-key");
            startInfo.ArgumentList.Add(certificateKey);
        }
        // A password goes neither on a command line nor in the environment (other users can read the first; the
        // second stays in /proc/PID/environ): the daemon reads them from its standard input, written below.
        startInfo.Environment.Remove("QMTUNNEL_CertificatePassword");
        startInfo.Environment.Remove("QMTUNNEL_AdminPassword");
        startInfo.ArgumentList.Add("--secrets-from-stdin");
        if (options.PasswordIterations is { } iterations)
        {
            startInfo.ArgumentList.Add("--password-iterations");
            startInfo.ArgumentList.Add(iterations.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        WriteVerbose($"Starting the qmtunnel-server daemon: {startInfo.FileName} {string.Join(' ', startInfo.ArgumentList)}");
        Process process;
        try
        {
            process = Process.Start(startInfo) ?? throw new InvalidOperationException("Process.Start returned no process.");
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerStartFailed, QmErrorKind.OpenError, dotnet,
                $"Cannot start the daemon with '{dotnet}': {ex.Message} Check that the .NET 10 runtime is installed.", ex));
            throw; // not reached
        }

        WriteSecrets(process, options);
        var listening = WaitForListening(process, logFile, logStart, out var failure);
        if (listening is null)
        {
            StopQuietly(process);
            var tail = LastLogLines(logFile, logStart, 15);
            var console = ConsoleOutput(process, 15);
            var portAdvice = options.Port == 0
                ? string.Empty
                : $"that port {options.Port} is free on {options.ListenAddress} (or use -Port 0 to pick a free one), ";
            var message = failure + Environment.NewLine +
                (tail.Length > 0 ? $"Last lines of {logFile}:{Environment.NewLine}{tail}{Environment.NewLine}" : $"The log {logFile} is empty.{Environment.NewLine}") +
                (console.Length > 0 ? $"Console output of the daemon:{Environment.NewLine}{console}{Environment.NewLine}" : string.Empty) +
                $"Check {portAdvice}that '{options.DataPath}' is writable and not used by another server, and raise -StartTimeout on a slow machine.";
            process.Dispose();
            // A first start that got as far as creating the admin must not leave its password unseen.
            ShowInitialAdminPassword(ReadAndDeleteInitialPassword(options.DataPath), options.DataPath);
            if (ReadStartFailure(logFile, logStart) is { } reason)
            {
                // The daemon's own error (PortInUse, DatabaseLocked, ...), with its id, kind and target; the log tail follows.
                ThrowTerminatingError(NewErrorRecord(reason.Id, reason.Kind, reason.Target ?? logFile,
                    $"qmtunnel-server could not start: {reason.Message}{Environment.NewLine}" +
                    (tail.Length > 0 ? $"Last lines of {logFile}:{Environment.NewLine}{tail}" : string.Empty)));
            }
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerStartFailed, QmErrorKind.OpenError, logFile, message));
        }
        var (port, processId) = listening!.Value;
        if (processId != process.Id)
        {
            // Not expected (setsid does not fork here), but the daemon's own word on its id is the one to keep.
            process.Dispose();
            process = Process.GetProcessById(processId);
        }
        ShowInitialAdminPassword(ReadAndDeleteInitialPassword(options.DataPath), options.DataPath);
        var announced = ReadAnnouncedSecurity(logFile, logStart);
        var info = new ServerInfo
        {
            ServerId = $"qmtunnel-server:{processId}",
            ListenAddress = options.ListenAddress,
            Port = port,
            DataPath = options.DataPath,
            StartedAt = DateTimeOffset.Now,
            ProcessId = processId,
            CertificateThumbprint = announced?.Thumbprint ?? (options.CertificatePath is null ? ReadDaemonThumbprint(options.DataPath) : null),
            // The daemon says it in its log; else only what was asked here is known (it holds its database).
            AllowPlainLinks = announced?.AllowPlainLinks ?? options.AllowPlainLinks ?? false,
        };
        ServerRegistry.AddDaemon(process, info);
        WriteVerbose($"qmtunnel-server (pid {processId}) listening on {info.Address}; log: {logFile}.");
        return info;
    }

    /// <summary>The daemon's secrets on its standard input (--secrets-from-stdin), which is then closed.</summary>
    private static void WriteSecrets(Process process, ServerOptions options)
    {
        try
        {
            var stdin = process.StandardInput;
            if (options.AdminPassword is { } adminPassword)
            {
                stdin.Write("AdminPassword=" + adminPassword + "\n");
            }
            if (options.CertificatePassword is { } certificatePassword)
            {
                stdin.Write("CertificatePassword=" + certificatePassword + "\n");
            }
            stdin.Close();
        }
        catch (IOException)
        {
            // The daemon exited at once: WaitForListening reports why.
        }
    }

    /// <summary>
    /// The SHA-256 thumbprint of the certificate a daemon serves, read from the server.pfx it keeps in its data
    /// folder (it creates the file before it listens). Null, with a warning, when the file cannot be read.
    /// </summary>
    private string? ReadDaemonThumbprint(string dataPath)
    {
        var path = Path.Combine(dataPath, ServerCertificate.FileName);
        try
        {
            // Ephemeral: the private key is not needed and must not be copied into a key store (macOS has no
            // ephemeral keys, and keeps none for a file it only reads).
            var flags = OperatingSystem.IsMacOS() ? X509KeyStorageFlags.DefaultKeySet : X509KeyStorageFlags.EphemeralKeySet;
            using var certificate = X509CertificateLoader.LoadPkcs12FromFile(path, password: null, flags);
            return ServerCertificate.Thumbprint(certificate);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            WriteWarning($"Cannot read the daemon's certificate '{path}' ({ex.Message}); its CertificateThumbprint is not known. " +
                "openssl s_client -connect host:port shows the certificate it serves.");
            return null;
        }
    }

    /// <summary>The server of this session (in-process or daemon) whose data folder is <paramref name="dataPath"/>, or null.</summary>
    private static ServerInfo? ServerUsingDataPath(string dataPath)
    {
        var comparison = OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        var wanted = Normalize(dataPath);
        var servers = ServerRegistry.GetLiveDaemons().Select(d => d.Info).ToList();
        if (ServerRegistry.Engine is { } engine)
        {
            servers.Insert(0, engine.GetServerInfo());
        }
        return servers.FirstOrDefault(s => string.Equals(Normalize(s.DataPath), wanted, comparison));
    }

    /// <summary>
    /// Polls the daemon's log (only what it wrote after <paramref name="logStart"/>) for its "listening on" line;
    /// null with <paramref name="failure"/> set when the process exits or <see cref="StartTimeout"/> passes first.
    /// </summary>
    private (int Port, int ProcessId)? WaitForListening(Process process, string logFile, long logStart, out string failure)
    {
        var deadline = Stopwatch.StartNew();
        ProgressRecord? progress = null;
        try
        {
            return PollForListening(process, logFile, logStart, deadline, ref progress, out failure);
        }
        finally
        {
            if (progress is not null)
            {
                progress.RecordType = ProgressRecordType.Completed;
                WriteProgress(progress);
            }
        }
    }

    private (int Port, int ProcessId)? PollForListening(Process process, string logFile, long logStart, Stopwatch deadline, ref ProgressRecord? progress, out string failure)
    {
        while (true)
        {
            if (deadline.Elapsed >= ProgressDelay)
            {
                const string status = "Waiting for qmtunnel-server to listen";
                progress ??= new ProgressRecord(ProgressId, "Start-QmTunnelServer -Daemon", status);
                ReportProgress(progress, status, deadline.Elapsed, StartTimeout);
            }
            if (ReadLogSince(logFile, logStart) is { } text && ListeningLine().Match(text) is { Success: true } match)
            {
                failure = string.Empty;
                return (int.Parse(match.Groups["port"].Value, CultureInfo.InvariantCulture),
                        int.Parse(match.Groups["pid"].Value, CultureInfo.InvariantCulture));
            }
            if (ServerRegistry.HasExited(process))
            {
                string code;
                try
                {
                    code = process.ExitCode.ToString(CultureInfo.InvariantCulture);
                }
                catch (InvalidOperationException)
                {
                    code = "unknown";
                }
                failure = $"qmtunnel-server exited with code {code} before it was listening.";
                return null;
            }
            if (deadline.Elapsed >= StartTimeout)
            {
                failure = $"qmtunnel-server did not report listening within {StartTimeout.TotalSeconds:0.#} s; it was stopped.";
                return null;
            }
            if (CancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(100)))
            {
                StopQuietly(process);
                process.Dispose();
                throw new PipelineStoppedException();
            }
        }
    }

    /// <summary>
    /// The daemon's own reason for a failed start: the line "qmtunnel-server start failed {json}" it writes before it
    /// exits (error id, kind, target, message), or null when it wrote none (it crashed, or was stopped by the timeout).
    /// </summary>
    private static (string Id, QmErrorKind Kind, string? Target, string Message)? ReadStartFailure(string logFile, long offset)
    {
        var text = ReadLogSince(logFile, offset) ?? string.Empty;
        foreach (var line in text.Split('\n'))
        {
            var at = line.IndexOf(StartFailedPrefix, StringComparison.Ordinal);
            if (at < 0)
            {
                continue;
            }
            try
            {
                var json = System.Text.Json.Nodes.JsonNode.Parse(line[(at + StartFailedPrefix.Length)..].Trim());
                var id = json?["id"]?.GetValue<string>();
                var message = json?["message"]?.GetValue<string>();
                if (string.IsNullOrEmpty(id) || !IdLike().IsMatch(id) || message is null)
                {
                    continue;
                }
                var kind = Enum.TryParse<QmErrorKind>(json?["kind"]?.GetValue<string>(), out var k) ? k : QmErrorKind.OpenError;
                return (id, kind, json?["target"]?.GetValue<string>(), message);
            }
            catch (Exception ex) when (ex is System.Text.Json.JsonException or InvalidOperationException or FormatException)
            {
                // Not the daemon's line after all: keep looking.
            }
        }
        return null;
    }

    /// <summary>What qmtunnel-server writes before the JSON of a failed start (EngineService.StartFailedPrefix).</summary>
    private const string StartFailedPrefix = "qmtunnel-server start failed ";

    [GeneratedRegex(@"^[A-Z][A-Za-z]{2,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex IdLike();

    // "qmtunnel-server listening on qmt://127.0.0.1:9200 (pid 1234, data /path)"; qmt+plain:// from older daemons.
    [GeneratedRegex(@"listening on qmt(?:\+plain)?://\S+:(?<port>\d+)\s+\(pid (?<pid>\d+)", RegexOptions.CultureInvariant)]
    private static partial Regex ListeningLine();
}

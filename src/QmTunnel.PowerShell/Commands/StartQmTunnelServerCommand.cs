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

/// <summary>
/// Start-QmTunnelServer: starts the qmTunnel engine inside this pwsh process (default; one per process), or with
/// -Daemon the qmtunnel-server daemon as a separate background process, returning once it listens.
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "QmTunnelServer")]
[OutputType(typeof(ServerInfo))]
public sealed partial class StartQmTunnelServerCommand : QmTunnelCmdlet
{
    /// <summary>File name of the daemon's log in its data folder; the daemon writes there, never to the console.</summary>
    public const string DaemonLogFileName = "qmtunnel-server.log";

    [Parameter]
    [ValidateRange(0, 65535)]
    public int Port { get; set; } = ServerOptions.DefaultPort;

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string ListenAddress { get; set; } = "127.0.0.1";

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DataPath { get; set; }

    [Parameter]
    public SwitchParameter Daemon { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    [Parameter]
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Accept unencrypted links (qmt+plain://) as well as TLS ones. A saved server setting: given, it is changed
    /// (-AllowPlainLinks:$false turns it off again); not given, the saved value stays (off on a new server).
    /// </summary>
    [Parameter]
    public SwitchParameter AllowPlainLinks { get; set; }

    /// <summary>The server's own certificate (.pfx, or PEM with its key) instead of the generated one.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key of -CertificatePath, when it is in another file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CertificateKeyPath { get; set; }

    /// <summary>Password of the .pfx file or of an encrypted PEM key.</summary>
    [Parameter]
    public System.Security.SecureString? CertificatePassword { get; set; }

    /// <summary>The admin user's password on the first start of the data path (user name: admin).</summary>
    [Parameter]
    [Credential]
    public PSCredential? AdminCredential { get; set; }

    /// <summary>PBKDF2 iterations of password verifiers (saved; 600000 by default, at least 100000).</summary>
    [Parameter]
    [ValidateRange(100_000, 10_000_000)]
    public int PasswordIterations { get; set; }

    /// <summary>-AllowPlainLinks as the engine takes it: its value when given, else null (keep the saved setting).</summary>
    private bool? AllowPlainLinksOption =>
        MyInvocation.BoundParameters.ContainsKey(nameof(AllowPlainLinks)) ? AllowPlainLinks.IsPresent : null;

    protected override void EndProcessing()
    {
        var options = new ServerOptions
        {
            Port = Port,
            ListenAddress = ListenAddress,
            DataPath = DataPath is null
                ? ServerOptions.DefaultDataPath
                : SessionState.Path.GetUnresolvedProviderPathFromPSPath(DataPath),
            AllowPlainLinks = AllowPlainLinksOption,
            CertificatePath = CertificatePath is null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(CertificatePath),
            CertificateKeyPath = CertificateKeyPath is null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(CertificateKeyPath),
            CertificatePassword = CertificatePassword is null ? null : new System.Net.NetworkCredential(string.Empty, CertificatePassword).Password,
            AdminPassword = AdminCredential?.GetNetworkCredential().Password,
            PasswordIterations = MyInvocation.BoundParameters.ContainsKey(nameof(PasswordIterations)) ? PasswordIterations : null,
        };
        if (AdminCredential is not null && !string.Equals(AdminCredential.UserName, Engine.Security.User.AdminName, StringComparison.OrdinalIgnoreCase))
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, AdminCredential.UserName,
                $"-AdminCredential is for the user '{Engine.Security.User.AdminName}', not '{AdminCredential.UserName}': give (Get-Credential {Engine.Security.User.AdminName}). Other users are made with New-QmTunnelUser."));
        }
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, ListenAddress, string.Join(" ", problems)));
        }
        if (StartTimeout <= TimeSpan.Zero)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, StartTimeout,
                $"StartTimeout {StartTimeout} is not positive: give how long to wait for the daemon, e.g. -StartTimeout 00:00:30."));
        }
        if (Daemon)
        {
            WriteObject(StartDaemon(options));
        }
        else
        {
            var info = StartInProcess(options);
            if (PassThru)
            {
                WriteObject(info);
            }
        }
    }

    private ServerInfo StartInProcess(ServerOptions options)
    {
        if (!ServerRegistry.TryBeginStart())
        {
            var running = ServerRegistry.Engine;
            var where = running is null ? "" : $" ({running.GetServerInfo().Address}, data {running.Options.DataPath})";
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerAlreadyRunning, QmErrorKind.ResourceExists, running?.GetServerInfo(),
                $"A qmTunnel server is already running in this PowerShell process{where}. Stop it with Stop-QmTunnelServer first, " +
                "or add -Daemon to run another server as a separate process."));
        }
        var engine = new QmTunnelEngine(options);
        var started = false;
        try
        {
            WriteVerbose($"Starting the qmTunnel server on {options.ListenAddress}:{options.Port} with data in {options.DataPath}.");
            Wait(engine.StartAsync(CancellationToken));
            started = true;
            ServerRegistry.CompleteStart(engine);
            ShowInitialAdminPassword(engine.InitialAdminPassword, options.DataPath);
            var info = Wait(new LocalQmTunnelServer(engine).GetServerInfoAsync(CancellationToken));
            WriteVerbose($"qmTunnel server listening on {info.Address}.");
            return info;
        }
        catch (QmTunnelException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            throw; // not reached
        }
        finally
        {
            if (!started)
            {
                ServerRegistry.AbortStart();
                DisposeQuietly(engine);
            }
        }
    }

    /// <summary>A password generated on a first start: shown once, as a warning (it is not output, so it is not captured by accident).</summary>
    private void ShowInitialAdminPassword(string? password, string dataPath)
    {
        if (password is null)
        {
            return;
        }
        WriteWarning($"First start of the qmTunnel server with data in '{dataPath}': the user '{Engine.Security.User.AdminName}' was created with the generated password " +
            $"{password} . It is shown only this once: keep it in a password manager, or set another with Set-QmTunnelUser {Engine.Security.User.AdminName} -Password. " +
            "Give -AdminCredential on a first start to choose it yourself.");
    }

    /// <summary>The password a daemon generated on its first start (it leaves it in an owner-only file for its starter), then deletes the file.</summary>
    private static string? ReadAndDeleteInitialPassword(string dataPath)
    {
        var path = Path.Combine(dataPath, QmTunnelEngine.InitialAdminPasswordFileName);
        try
        {
            if (!File.Exists(path))
            {
                return null;
            }
            var password = File.ReadAllText(path).Trim();
            File.Delete(path);
            return password.Length == 0 ? null : password;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void DisposeQuietly(QmTunnelEngine engine)
    {
        try
        {
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            // The start already failed; that error is the one to report.
        }
    }

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
        while (true)
        {
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

    // "qmtunnel-server listening on qmt://127.0.0.1:9200 (pid 1234, data /path)"; qmt+plain:// from older daemons.
    [GeneratedRegex(@"listening on qmt(?:\+plain)?://\S+:(?<port>\d+)\s+\(pid (?<pid>\d+)", RegexOptions.CultureInvariant)]
    private static partial Regex ListeningLine();

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

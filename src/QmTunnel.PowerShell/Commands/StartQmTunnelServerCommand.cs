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

/// <summary>
/// Start-QmTunnelServer: starts the qmTunnel engine inside this pwsh process (default; one per process), or with
/// -Daemon the qmtunnel-server daemon as a separate background process, returning once it listens.
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "QmTunnelServer", HelpUri = HelpLinks.Base + "Start-QmTunnelServer.md")]
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
    [SecondsTimeSpan]
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The range of -StartTimeout.</summary>
    private static readonly TimeSpan MinStartTimeout = TimeSpan.FromSeconds(1), MaxStartTimeout = TimeSpan.FromHours(1);

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
        if (TimeSpanRange.Problem(nameof(StartTimeout), StartTimeout, MinStartTimeout, MaxStartTimeout) is { } problem)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, StartTimeout,
                problem + " It is how long to wait for the daemon to listen."));
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
            // Stop-QmTunnelServer -Session from elsewhere stops it as Stop-QmTunnelServer here would.
            engine.StopHandler = () => ServerRegistry.StopOnRequest(engine);
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
}

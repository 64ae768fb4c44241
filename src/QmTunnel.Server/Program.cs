using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Server;

// First, before any socket exists: socket completions inline on the epoll threads (see SocketTuning).
QmTunnel.Engine.Diagnostics.SocketTuning.EnableInlineCompletions();
// umask 077: whatever this process creates (its log, the database and its log, keys) is owner-only (docs/security.md).
QmTunnel.Engine.Storage.OwnerOnly.RestrictProcessUmask();

// qmtunnel-server: the qmTunnel engine as a daemon (.NET Generic Host), also as a systemd service (Type=notify:
// READY=1 once the engine listens) or a Windows service (see docs/service.md).
//   qmtunnel-server [--port 9200] [--listen 127.0.0.1] [--data-path DIR] [--log-file FILE]
if (ServerCommandLine.WantsHelp(args))
{
    Console.WriteLine(ServerCommandLine.Usage);
    return 0;
}

// The server's own settings: QMTUNNEL_ environment variables (QMTUNNEL_Port, ...), overridden by the command line.
// Read apart from the host's configuration, whose unprefixed environment variables (a PORT of the machine, say)
// must not change them.
IConfiguration settings;
ServerOptions options;
(string? Path, long MaxBytes, int Keep) log;
try
{
    settings = ServerCommandLine.ReadSettings(args);
    options = ServerCommandLine.ReadOptions(settings);
    log = ServerCommandLine.ReadLogOptions(settings);
}
catch (Exception ex) when (ex is ArgumentException or FormatException)
{
    Console.Error.WriteLine($"qmtunnel-server: {ex.Message}");
    Console.Error.WriteLine(ServerCommandLine.Usage);
    return 2;
}
finally
{
    // The passwords are in the options now: not left in the environment (/proc/PID/environ) for the daemon's life.
    Secrets.WipeFromEnvironment();
}

// Why the daemon dies, in its log: an unhandled exception is written at once (the logger's queue would not be flushed).
DaemonCrashLog.CatchUnhandled(log.Path is null && SystemdHelpers.IsSystemdService());

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    ContentRootPath = AppContext.BaseDirectory,
});

if (log.Path is { } logFile)
{
    // Start-QmTunnelServer -Daemon: everything the daemon prints goes to this file (owner-only, rotated), and so do its
    // file descriptors 1 and 2, where the runtime writes when the process dies.
    try
    {
        var writer = LogFile.Open(logFile, log.MaxBytes, log.Keep);
        Console.SetOut(writer);
        Console.SetError(writer);
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
    {
        Console.Error.WriteLine($"qmtunnel-server: cannot write the log file '{logFile}': {ex.Message}");
        return 2;
    }
    builder.Logging.ClearProviders();
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "yyyy-MM-dd HH:mm:ss ";
        o.ColorBehavior = Microsoft.Extensions.Logging.Console.LoggerColorBehavior.Disabled;
    });
}
else if (SystemdHelpers.IsSystemdService())
{
    // Under systemd stdout goes to the journal, which stamps the time itself: one line per message, with its
    // level as the syslog priority ("<6>", "<4>", ...).
    builder.Logging.ClearProviders();
    builder.Logging.AddSystemdConsole();
}
else
{
    builder.Logging.ClearProviders();
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "yyyy-MM-dd HH:mm:ss ";
    });
}
// Each one only when the process really runs as such a service; otherwise the console lifetime (Ctrl+C, SIGTERM).
// systemd (Type=notify): READY=1 once every hosted service has started, i.e. after EngineService.StartAsync has
// bound the port; STOPPING=1 on SIGTERM / systemctl stop. Windows: the service control manager's stop request.
// The Windows event log provider is added after ClearProviders above on purpose: it stays.
builder.Services.AddSystemd();
builder.Services.AddWindowsService(o => o.ServiceName = ServerCommandLine.WindowsServiceName);
builder.Services.AddSingleton(options);
builder.Services.AddSingleton(sp => new QmTunnelEngine(options, sp.GetRequiredService<ILoggerFactory>()));
builder.Services.AddHostedService<EngineService>();
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));

using var host = builder.Build();
DaemonCrashLog.CatchUnobserved(host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("QmTunnel.Server"));
try
{
    await host.RunAsync();
    return 0;
}
catch (QmTunnelException ex)
{
    Console.Error.WriteLine($"qmtunnel-server: {ex.ErrorId}: {ex.Message}");
    return 1;
}

using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Management;
using QmTunnel.Server;

// First, before any socket exists: socket completions inline on the epoll threads (see SocketTuning).
QmTunnel.Engine.Diagnostics.SocketTuning.EnableInlineCompletions();

// qmtunnel-server: the qmTunnel engine as a daemon (.NET Generic Host; systemd-aware).
//   qmtunnel-server [--port 9200] [--listen 127.0.0.1] [--data-path DIR]
// Configuration also comes from QMTUNNEL_ environment variables (QMTUNNEL_Port, ...).
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    Args = ServerCommandLine.Normalize(args),
    ContentRootPath = AppContext.BaseDirectory,
});
builder.Configuration.AddEnvironmentVariables("QMTUNNEL_");
if (ServerCommandLine.WantsHelp(args))
{
    Console.WriteLine(ServerCommandLine.Usage);
    return 0;
}

ServerOptions options;
try
{
    options = ServerCommandLine.ReadOptions(builder.Configuration);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"qmtunnel-server: {ex.Message}");
    Console.Error.WriteLine(ServerCommandLine.Usage);
    return 2;
}

if (builder.Configuration["LogFile"] is { Length: > 0 } logFile)
{
    // Start-QmTunnelServer -Daemon: everything the daemon prints goes to this file, not to the parent's console.
    try
    {
        var writer = new StreamWriter(new FileStream(Path.GetFullPath(logFile), FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete)) { AutoFlush = true };
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
builder.Services.AddSystemd();
if (builder.Configuration["LogFile"] is not { Length: > 0 })
{
    builder.Logging.ClearProviders();
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "yyyy-MM-dd HH:mm:ss ";
    });
}
builder.Services.AddSingleton(options);
builder.Services.AddSingleton(sp => new QmTunnelEngine(options, sp.GetRequiredService<ILoggerFactory>()));
builder.Services.AddHostedService<EngineService>();
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));

using var host = builder.Build();
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

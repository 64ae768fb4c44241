using QmTunnel.Engine.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Server;

/// <summary>
/// Runs the engine for the host's lifetime: start = open database, bind, restore tunnels; stop (SIGTERM, Ctrl+C,
/// service stop) = stop accepting, close tunnels and links, close the database.
/// </summary>
internal sealed partial class EngineService(QmTunnelEngine engine, IHostApplicationLifetime lifetime, ILogger<EngineService> logger) : IHostedService
{
    /// <summary>Start of the line that tells Start-QmTunnelServer -Daemon why a start failed (one JSON object follows).</summary>
    public const string StartFailedPrefix = "qmtunnel-server start failed ";

    private LocalStatusChannel? _status;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // A management session's Stop-QmTunnelServer stops the host, as SIGTERM does.
        engine.StopHandler = lifetime.StopApplication;
        try
        {
            await engine.StartAsync(cancellationToken);
        }
        catch (QmTunnelException ex)
        {
            LogStartFailed(logger, ex.ErrorId, ex.Message);
            // A plain line its starter reads, so the error keeps its id (PortInUse, DatabaseLocked, ...).
            Console.Out.WriteLine(StartFailedPrefix + StartFailure(ex));
            Console.Out.Flush();
            throw;
        }
        _status = LocalStatusChannel.TryStart(engine.Options.DataPath, engine.GetServerInfo, logger);
        if (engine.WriteInitialAdminPasswordFile() is { } passwordFile)
        {
            LogInitialPassword(logger, passwordFile);
        }
        var info = engine.GetServerInfo();
        // A plain line on stdout that scripts (and Start-QmTunnelServer -Daemon) can read.
        Console.Out.WriteLine($"qmtunnel-server listening on {info.Address} (pid {Environment.ProcessId}, data {info.DataPath})");
        Console.Out.WriteLine($"qmtunnel-server certificate SHA256 {info.CertificateThumbprint}; plain links {(info.AllowPlainLinks ? "accepted" : "refused")}");
        Console.Out.Flush();
        TestFaults.RunIfAsked();
    }

    /// <summary>The failure as one line of JSON: its error id, kind, target and message.</summary>
    internal static string StartFailure(QmTunnelException ex) => new System.Text.Json.Nodes.JsonObject
    {
        ["id"] = ex.ErrorId,
        ["kind"] = ex.Kind.ToString(),
        ["target"] = ex.Target?.ToString(),
        ["message"] = ex.Message,
    }.ToJsonString();

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        LogStopping(logger);
        if (_status is not null)
        {
            await _status.DisposeAsync();
            _status = null;
        }
        await engine.StopAsync(cancellationToken);
        await engine.DisposeAsync();
    }

    [LoggerMessage(EventId = EventIds.DaemonStartFailed, Level = LogLevel.Critical, Message = "qmTunnel server could not start: {ErrorId}: {Message}")]
    private static partial void LogStartFailed(ILogger logger, string errorId, string message);

    [LoggerMessage(EventId = EventIds.DaemonInitialPassword, Level = LogLevel.Warning, Message = "First start: the admin user's generated password is in {File} (owner-only). Read it, keep it safe, then delete the file.")]
    private static partial void LogInitialPassword(ILogger logger, string file);

    [LoggerMessage(EventId = EventIds.DaemonStopping, Level = LogLevel.Information, Message = "qmTunnel server stopping: closing tunnels and links")]
    private static partial void LogStopping(ILogger logger);
}

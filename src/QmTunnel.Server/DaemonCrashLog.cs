using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;

namespace QmTunnel.Server;

/// <summary>
/// Puts why the daemon dies in its log. An unhandled exception ends the process before the logger's background queue
/// is written, so its line is written at once to Console.Error (the log file, or stderr and the journal) in the
/// logger's format (<see cref="DirectLogger"/>); an unobserved task exception does not end it and is logged as an
/// error. Text is made safe with <see cref="LogText"/>. It does not see what the runtime itself reports (out of memory,
/// fail-fast): that goes to file descriptor 2, which <see cref="LogFile"/> points at the log.
/// </summary>
internal static partial class DaemonCrashLog
{
    /// <param name="journal">Write in the journal's format (under systemd, without a log file).</param>
    public static void CatchUnhandled(bool journal)
    {
        var direct = new DirectLogger("QmTunnel.Server", journal);
        AppDomain.CurrentDomain.UnhandledException += (_, e) =>
        {
            try
            {
                LogDying(direct, e.IsTerminating ? "" : " (or not: the runtime says it goes on)",
                    LogText.Sanitize(e.ExceptionObject?.ToString(), 4 * LogText.MaxLineLength));
            }
            catch (Exception)
            {
                // Dying anyway; the runtime's own message still goes to file descriptor 2.
            }
        };
    }

    public static void CatchUnobserved(ILogger logger) => TaskScheduler.UnobservedTaskException += (_, e) =>
    {
        LogUnobserved(logger, LogText.Sanitize(e.Exception.ToString(), 4 * LogText.MaxLineLength));
        e.SetObserved();
    };

    [LoggerMessage(EventId = EventIds.DaemonDying, Level = LogLevel.Critical, Message = "qmtunnel-server is dying{Terminating}: unhandled exception: {Exception}")]
    private static partial void LogDying(ILogger logger, string terminating, string exception);

    [LoggerMessage(EventId = EventIds.DaemonUnobservedTaskException, Level = LogLevel.Error, Message = "A background task failed and nobody looked at its error: {Exception}")]
    private static partial void LogUnobserved(ILogger logger, string exception);

    /// <summary>
    /// Writes each line at once to Console.Error, as the daemon's console logger formats it ("2025-01-31 12:00:00 crit:
    /// Category[id] message", or "&lt;2&gt;Category[id] message" for the journal). For the last words only.
    /// </summary>
    private sealed class DirectLogger(string category, bool journal) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var level = logLevel switch
            {
                LogLevel.Critical => ("crit", 2),
                LogLevel.Error => ("fail", 3),
                LogLevel.Warning => ("warn", 4),
                _ => ("info", 6),
            };
            var prefix = journal ? $"<{level.Item2}>" : $"{DateTime.Now:yyyy-MM-dd HH:mm:ss} {level.Item1}: ";
            Console.Error.WriteLine($"{prefix}{category}[{eventId.Id}] {formatter(state, exception)}");
            Console.Error.Flush();
        }
    }
}

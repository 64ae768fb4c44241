using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace QmTunnel.Engine.Tests.Diagnostics;

/// <summary>A logger factory that keeps every line it is given (what a log provider would write), for assertions.</summary>
public sealed class CapturingLoggerFactory : ILoggerFactory
{
    public sealed record Line(string Category, LogLevel Level, int EventId, string Message, IReadOnlyList<KeyValuePair<string, object?>> State, Exception? Exception);

    private readonly ConcurrentQueue<Line> _lines = new();

    public IReadOnlyList<Line> Lines => [.. _lines];

    public IReadOnlyList<Line> Event(int id) => Lines.Where(l => l.EventId == id).ToList();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue(new Line(category, logLevel, eventId.Id, formatter(state, exception),
                state as IReadOnlyList<KeyValuePair<string, object?>> ?? [], exception));
    }
}

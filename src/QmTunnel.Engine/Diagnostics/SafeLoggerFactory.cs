using System.Collections;
using Microsoft.Extensions.Logging;

namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// The engine's loggers go through this wrapper around the host's <see cref="ILoggerFactory"/>, so every line the engine
/// writes, now and in future, is safe: its message (and the values of its structured state, and the text of an attached
/// exception) with control characters escaped and cut at <see cref="LogText.MaxLineLength"/> (<see cref="LogText"/>),
/// and a flood of one event held to a few lines and a count (<see cref="LogThrottle"/>). It does not own the wrapped
/// factory: disposing it stops its timers only.
/// </summary>
public sealed class SafeLoggerFactory(ILoggerFactory inner, TimeProvider time) : ILoggerFactory
{
    private readonly LogThrottle _throttle = new(time);

    public ILogger CreateLogger(string categoryName) => new SafeLogger(inner.CreateLogger(categoryName), categoryName, _throttle);

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    /// <summary>Writes the pending "left out" summaries now (before the server says it stopped).</summary>
    public void Flush() => _throttle.Flush();

    public void Dispose() => _throttle.Dispose();
}

internal sealed class SafeLogger(ILogger inner, string category, LogThrottle throttle) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

    public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!inner.IsEnabled(logLevel))
        {
            return;
        }
        var message = LogText.Sanitize(formatter(state, exception));
        if (!throttle.Admit(inner, category, logLevel, eventId, message))
        {
            return;
        }
        inner.Log(logLevel, eventId, new SafeLogState(message, state as IReadOnlyList<KeyValuePair<string, object?>>),
            exception is null ? null : new LoggedException(exception), static (s, _) => s.Message);
    }
}

/// <summary>The state handed on: the safe message, and the original values with strings made safe.</summary>
internal sealed class SafeLogState(string message, IReadOnlyList<KeyValuePair<string, object?>>? values) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public string Message { get; } = message;

    public int Count => values?.Count ?? 0;

    public KeyValuePair<string, object?> this[int index]
    {
        get
        {
            var pair = values![index];
            return pair.Value is string text && pair.Key != "{OriginalFormat}" ? new(pair.Key, LogText.Sanitize(text)) : pair;
        }
    }

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => Message;
}

/// <summary>An exception as logged: its type, and its text (message, inner exceptions, stack) made safe and bounded.</summary>
internal sealed class LoggedException(Exception original) : Exception(LogText.Sanitize(original.Message))
{
    private readonly string _text = LogText.Sanitize(original.ToString(), 4 * LogText.MaxLineLength);

    /// <summary>The exception that was logged.</summary>
    public Exception Original { get; } = original;

    public override string? StackTrace => null;

    public override string ToString() => _text;
}

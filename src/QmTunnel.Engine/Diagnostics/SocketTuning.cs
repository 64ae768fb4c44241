namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// Process-wide socket tuning for hosts of the engine. On Linux/macOS, .NET hands every socket completion from its
/// epoll thread to the thread pool; with <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> it runs it inline, which
/// the relay (that never blocks in a continuation) turns into about half the latency per hop and more throughput on
/// small machines. The runtime reads that variable once, when the process's first asynchronous socket operation
/// starts. This type does not change anything else, and nothing at all when the variable is already set, when
/// <c>QMTUNNEL_INLINE_COMPLETIONS=0</c>, or when sockets were used before (then the setting has no effect).
/// </summary>
public static class SocketTuning
{
    public const string RuntimeVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
    public const string OptOutVariable = "QMTUNNEL_INLINE_COMPLETIONS";

    /// <summary>
    /// Runs <paramref name="start"/> (which must begin the engine's first asynchronous socket operation before it
    /// returns, as <see cref="Management.QmTunnelEngine.StartAsync"/> does) with inline completions requested; when
    /// <paramref name="scoped"/>, the variable is removed again afterwards so child processes do not inherit it.
    /// </summary>
    public static async Task RunWithInlineCompletionsAsync(Func<Task> start, bool scoped)
    {
        ArgumentNullException.ThrowIfNull(start);
        var set = Environment.GetEnvironmentVariable(OptOutVariable) != "0" && Environment.GetEnvironmentVariable(RuntimeVariable) is null;
        if (set)
        {
            Environment.SetEnvironmentVariable(RuntimeVariable, "1");
        }
        try
        {
            await start().ConfigureAwait(false);
        }
        finally
        {
            if (set && scoped)
            {
                Environment.SetEnvironmentVariable(RuntimeVariable, null);
            }
        }
    }
}

namespace QmTunnel.Engine.Diagnostics;

/// <summary>
/// Process-wide socket tuning for a process that hosts the engine and nothing else (the daemon). On Linux/macOS, .NET
/// hands every socket completion from its epoll thread to the thread pool; with
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> it runs it inline, which the relay (that never blocks in a
/// continuation) turns into about half the latency per hop and more throughput on small machines. The runtime reads
/// the variable once, before the process's first socket operation, so this must run first thing in Main. It cannot
/// help inside pwsh, which uses sockets (its IPC pipe) before any module loads. It changes nothing when the variable is
/// already set or when <c>QMTUNNEL_INLINE_COMPLETIONS=0</c>.
/// </summary>
public static class SocketTuning
{
    public const string RuntimeVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
    public const string OptOutVariable = "QMTUNNEL_INLINE_COMPLETIONS";

    /// <summary>
    /// Whether this process runs socket completions inline, judged by the variable (the daemon sets it first thing; in
    /// pwsh it is unset: a value set there after the start would be misjudged, as the runtime read it before).
    /// </summary>
    public static bool InlineCompletionsOn => Environment.GetEnvironmentVariable(RuntimeVariable) == "1";

    /// <summary>Requests inline completions; returns true when the variable was set by this call.</summary>
    public static bool EnableInlineCompletions()
    {
        if (Environment.GetEnvironmentVariable(OptOutVariable) == "0" || Environment.GetEnvironmentVariable(RuntimeVariable) is not null)
        {
            return false;
        }
        Environment.SetEnvironmentVariable(RuntimeVariable, "1");
        return true;
    }
}

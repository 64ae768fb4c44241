namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Looks at a condition the product does not signal until it holds or a deadline passes: a wait for an event, never
/// for time to pass (timers in these tests run on an injected clock).
/// </summary>
internal static class Poll
{
    /// <summary>True as soon as <paramref name="condition"/> holds; false when it still does not after <paramref name="timeoutMs"/>.</summary>
    public static async Task<bool> UntilAsync(Func<bool> condition, int timeoutMs = 20_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < deadline)
        {
            if (condition())
            {
                return true;
            }
            await Task.Delay(20);
        }
        return condition();
    }

    /// <summary>The same for a condition that must be asked for (a remote session, a stream opened each try).</summary>
    public static async Task<bool> UntilAsync(Func<Task<bool>> condition, int timeoutMs = 20_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < deadline)
        {
            if (await condition())
            {
                return true;
            }
            await Task.Delay(20);
        }
        return await condition();
    }
}

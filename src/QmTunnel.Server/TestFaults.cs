namespace QmTunnel.Server;

/// <summary>
/// Faults the tests provoke in a running daemon, to check that its log says why it died: with the environment variable
/// <c>QMTUNNEL_TEST_FAULT</c> set, once the server listens, <c>unhandled</c> throws on a thread of its own (the process
/// dies of an unhandled exception), <c>failfast</c> calls Environment.FailFast (the runtime writes to file descriptor 2
/// and ends the process, as it does when out of memory), <c>unobserved</c> drops a failed task (the process goes on).
/// Without the variable, nothing. It is for tests only: whoever sets a daemon's environment owns that process anyway.
/// </summary>
internal static class TestFaults
{
    public const string Variable = "QMTUNNEL_TEST_FAULT";

    public static void RunIfAsked()
    {
        switch (Environment.GetEnvironmentVariable(Variable))
        {
            case "unhandled":
                new Thread(() => throw new InvalidOperationException("test fault: an unhandled exception \u001b[31min red\u001b[0m\r\nforged line"))
                {
                    IsBackground = true,
                    Name = "test fault",
                }.Start();
                break;
            case "failfast":
                Environment.FailFast("test fault: fail fast");
                break;
            case "unobserved":
                _ = Task.Run(() => Task.FromException(new InvalidOperationException("test fault: an unobserved task exception")));
                Task.Run(async () =>
                {
                    await Task.Delay(100);
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                });
                break;
        }
    }
}

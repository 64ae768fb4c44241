using System.Diagnostics;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Storage;

/// <summary>
/// kill -9 of the real daemon (qmtunnel-server) while management sessions write to its database as fast as they can:
/// the database opens normally after each kill, every write the daemon acknowledged is there, every removal it
/// acknowledged is gone, and nothing is there that nobody asked for.
/// </summary>
public sealed partial class CrashTests : IDisposable
{
    private const int Writers = 3;
    private readonly Xunit.Abstractions.ITestOutputHelper _output;
    private readonly StorageFolders _folders = new();
    private readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-crash-pins-" + Guid.NewGuid().ToString("n"), "known-servers.txt");

    public CrashTests(Xunit.Abstractions.ITestOutputHelper output) => _output = output;

    public void Dispose()
    {
        _folders.Dispose();
        if (Directory.Exists(Path.GetDirectoryName(_pins)))
        {
            Directory.Delete(Path.GetDirectoryName(_pins)!, true);
        }
    }

    [Fact]
    public async Task Kill_9_in_the_middle_of_writes_loses_no_acknowledged_write_and_the_database_opens_every_time()
    {
        var folder = _folders.New();
        var created = new HashSet<string>(StringComparer.OrdinalIgnoreCase);   // acknowledged, not removed since
        var removed = new HashSet<string>(StringComparer.OrdinalIgnoreCase);   // removal acknowledged
        var uncertain = new HashSet<string>(StringComparer.OrdinalIgnoreCase); // in flight when the daemon died
        var total = 0;
        foreach (var (round, killAfter) in new[] { (0, 300), (1, 450), (2, 600) })
        {
            using var daemon = await Daemon.StartAsync(folder);
            var sessions = new List<QmTunnelSession>();
            for (var i = 0; i < Writers; i++)
            {
                sessions.Add(await QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{daemon.Port}", "test"),
                    new PasswordLogin(User.AdminName, EngineFixture.AdminPassword), TimeSpan.FromSeconds(30), CancellationToken.None, new ClientKnownServers(_pins)));
            }
            var acknowledged = 0;
            var killed = new TaskCompletionSource();
            async Task WriteAsync(QmTunnelSession session, int writer)
            {
                var mine = new List<string>();
                for (var n = 0; ; n++)
                {
                    var removing = n % 4 == 3 && mine.Count > 0;
                    var name = removing ? mine[0] : $"r{round}w{writer}n{n}";
                    lock (created)
                    {
                        uncertain.Add(name);
                    }
                    try
                    {
                        if (removing)
                        {
                            await session.RemoveGroupAsync(name, CancellationToken.None);
                            mine.RemoveAt(0);
                        }
                        else
                        {
                            await session.NewGroupAsync(name, GroupRights.None, [], "crash test", CancellationToken.None);
                            mine.Add(name);
                        }
                    }
                    catch (Exception) when (killed.Task.IsCompleted)
                    {
                        return; // the daemon is gone: this one stays uncertain
                    }
                    lock (created)
                    {
                        uncertain.Remove(name);
                        (removing ? removed : created).Add(name);
                        (removing ? created : removed).Remove(name);
                    }
                    if (Interlocked.Increment(ref acknowledged) == killAfter)
                    {
                        daemon.Kill(); // SIGKILL, with the other writers' requests in flight
                        killed.SetResult();
                    }
                }
            }
            var writers = sessions.Select((s, i) => Task.Run(() => WriteAsync(s, i))).ToList();
            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(3));
            foreach (var session in sessions)
            {
                await session.DisposeAsync();
            }
            total += acknowledged;
            daemon.WaitForExit();
            var found = DatabaseFiles.Check(StorageFolders.Data(folder));
            _output.WriteLine($"round {round}: {acknowledged} acknowledged, log {found.LogPages} pages, {found.ConfirmedTransactions} committed transactions, {found.UncommittedPages} uncommitted pages");

            using var store = TunnelStore.Open(folder); // DatabaseCorrupt would fail the test here
            var groups = store.Users.GetGroups().Select(g => g.Name).Where(n => n != QmTunnel.Engine.Security.Group.AdministratorsName).ToHashSet(StringComparer.OrdinalIgnoreCase);
            Assert.Empty(created.Except(uncertain).Except(groups));
            Assert.Empty(removed.Except(uncertain).Intersect(groups));
            Assert.Empty(groups.Except(created).Except(uncertain));
            Assert.Equal(User.AdminName, Assert.Single(store.Users.GetUsers()).Name);
            // What was in flight is settled now, one way or the other.
            foreach (var name in uncertain)
            {
                (groups.Contains(name) ? created : removed).Add(name);
                (groups.Contains(name) ? removed : created).Remove(name);
            }
            uncertain.Clear();
        }
        Assert.True(total >= 1350, $"{total} writes acknowledged");
    }

    /// <summary>The daemon, run as an administrator would (dotnet qmtunnel-server.dll), until killed.</summary>
    private sealed partial class Daemon : IDisposable
    {
        private readonly Process _process;

        private Daemon(Process process, int port)
        {
            _process = process;
            Port = port;
        }

        public int Port { get; }

        public static async Task<Daemon> StartAsync(string dataPath)
        {
            var dotnet = Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet";
            var start = new ProcessStartInfo(dotnet)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
            };
            foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "qmtunnel-server.dll"), "--port", "0", "--data-path", dataPath,
                "--password-iterations", EngineFixture.TestIterations.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            {
                start.ArgumentList.Add(arg);
            }
            start.Environment["QMTUNNEL_AdminPassword"] = EngineFixture.AdminPassword;
            var process = Process.Start(start)!;
            _ = process.StandardError.ReadToEndAsync();
            var output = new System.Text.StringBuilder();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
                {
                    output.AppendLine(line);
                    if (Listening().Match(line) is { Success: true } match)
                    {
                        _ = process.StandardOutput.ReadToEndAsync(); // keep its pipe drained
                        return new Daemon(process, int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
            process.Kill();
            process.Dispose();
            throw new InvalidOperationException($"The daemon did not start: {output}");
        }

        public void Kill() => _process.Kill(); // SIGKILL

        public void WaitForExit() => _process.WaitForExit();

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }
            _process.WaitForExit();
            _process.Dispose();
        }

        [GeneratedRegex(@"qmtunnel-server listening on qmt://127\.0\.0\.1:(\d+)")]
        private static partial Regex Listening();
    }
}

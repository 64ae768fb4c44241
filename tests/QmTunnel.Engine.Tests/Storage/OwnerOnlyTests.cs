using System.Diagnostics;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tests.Functional;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Storage;

/// <summary>
/// The data folder and the client's pins are owner-only whatever the umask; what is open to others is tightened at
/// start (and logged); what belongs to another user, a link, a hard link, a shared folder and an open folder holding
/// other files are refused with DataPathInsecure and left as they were. Linux and macOS; "another user" is nobody,
/// which takes root to set up (as these tests run here and in CI).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class OwnerOnlyTests : IDisposable
{
    private const UnixFileMode Open755 = (UnixFileMode)0x1ED; // 0755
    private const UnixFileMode Open644 = (UnixFileMode)0x1A4; // 0644
    private readonly StorageFolders _folders = new();

    public void Dispose() => _folders.Dispose();

    private static UnixFileMode ModeOf(string path) => File.GetUnixFileMode(path);

    private static void Chown(string user, string path)
    {
        using var chown = Process.Start(new ProcessStartInfo("chown", ["-h", user, path]) { RedirectStandardError = true })!;
        chown.WaitForExit();
        Assert.True(chown.ExitCode == 0, $"chown {user} {path}: {chown.StandardError.ReadToEnd()} (these tests run as root)");
    }

    /// <summary>Runs <paramref name="action"/> with the process umask 022 (what -Daemon inherited), then restores it.</summary>
    private static async Task WithUmask022(Func<Task> action)
    {
        var previous = UnixFileStatus.SetUmask(0x12);
        try
        {
            await action();
        }
        finally
        {
            UnixFileStatus.SetUmask(previous);
        }
    }

    private static void AssertOwnerOnly(string folder)
    {
        Assert.Equal(OwnerOnly.FolderMode, ModeOf(folder));
        foreach (var file in Directory.GetFiles(folder))
        {
            Assert.True(ModeOf(file) == OwnerOnly.FileMode, $"{file} is {UnixFileStatus.Octal(ModeOf(file))}");
        }
    }

    private static QmTunnelException Insecure(Action action, string path)
    {
        var ex = Assert.Throws<QmTunnelException>(action);
        Assert.Equal(ErrorIds.DataPathInsecure, ex.ErrorId);
        Assert.Equal(QmErrorKind.SecurityError, ex.Kind);
        Assert.Equal(path, ex.Target);
        Assert.Contains($"'{path}'", ex.Message, StringComparison.Ordinal);
        return ex;
    }

    [Fact]
    public Task Under_umask_022_a_server_keeps_its_data_folder_and_every_file_in_it_owner_only() => WithUmask022(async () =>
    {
        var folder = Path.Combine(_folders.New(), "nested", "data");
        var engine = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = folder, PasswordIterations = EngineFixture.TestIterations });
        await engine.StartAsync();
        try
        {
            Assert.NotNull(engine.WriteInitialAdminPasswordFile());
            engine.SetServerConfig(new ServerConfigChange { AllowPlainLinks = true });
            // While it runs: the database, its LiteDB log (LiteDB would create it 0644), the lock, the key, the password.
            Assert.True(File.Exists(Path.Combine(folder, "qmtunnel-log.db")));
            Assert.Equal(["initial-admin-password", "qmtunnel-log.db", "qmtunnel.db", "qmtunnel.lock", "server.pfx"],
                Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            AssertOwnerOnly(folder);
        }
        finally
        {
            await engine.DisposeAsync();
        }
        AssertOwnerOnly(folder);
        Assert.Equal(OwnerOnly.FolderMode, ModeOf(Path.GetDirectoryName(folder)!)); // the missing parent it created too
    });

    [Fact]
    public void An_open_data_folder_and_its_files_are_made_owner_only_at_start_and_it_is_logged()
    {
        var folder = _folders.New();
        TunnelStore.Open(folder).Dispose();
        File.WriteAllText(Path.Combine(folder, "qmtunnel-server.log"), "a log line\n");
        File.WriteAllText(Path.Combine(folder, "qmtunnel-log.db"), string.Empty);
        foreach (var file in Directory.GetFiles(folder))
        {
            File.SetUnixFileMode(file, Open644);
        }
        File.SetUnixFileMode(folder, Open755);

        var log = new ListLogger();
        TunnelStore.Open(folder, log).Dispose();

        AssertOwnerOnly(folder);
        var tightened = log.Entries.Where(e => e.Id == EventIds.DataPathTightened).Select(e => e.Message).ToList();
        Assert.Contains(tightened, m => m.StartsWith($"{folder} was open to other users (mode 0755)", StringComparison.Ordinal));
        foreach (var name in new[] { "qmtunnel.db", "qmtunnel.lock", "qmtunnel-server.log", "qmtunnel-log.db" })
        {
            Assert.Contains(tightened, m => m.StartsWith($"{Path.Combine(folder, name)} was open to other users (mode 0644); it is owner-only now (mode 0600)", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_data_folder_of_another_user_is_refused_and_nothing_is_created_in_it()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder, OwnerOnly.FolderMode);
        Chown("nobody", folder);
        var engine = new QmTunnelEngine(new ServerOptions { Port = 0, DataPath = folder, AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations });
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => engine.StartAsync());
        Assert.Equal(ErrorIds.DataPathInsecure, ex.ErrorId);
        Assert.Equal(folder, ex.Target);
        Assert.Contains("belongs to uid 65534 (nobody), not to uid 0 (root)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("mode 0700", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"chown -R root '{folder}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("-DataPath", ex.Message, StringComparison.Ordinal);
        Assert.False(engine.IsRunning);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Theory]
    [InlineData("qmtunnel.db")]
    [InlineData("qmtunnel-log.db")]
    [InlineData("server.pfx")]
    public void A_file_of_another_user_in_the_data_folder_is_refused_and_left_as_it_is(string name)
    {
        var folder = _folders.New();
        TunnelStore.Open(folder).Dispose();
        var file = Path.Combine(folder, name);
        if (!File.Exists(file))
        {
            File.WriteAllBytes(file, []);
        }
        File.SetUnixFileMode(file, Open644);
        Chown("nobody", file);
        var before = StorageFolders.Hashes(folder);
        var ex = Insecure(() => TunnelStore.Open(folder).Dispose(), file);
        Assert.Contains("belongs to uid 65534 (nobody)", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"chown root '{file}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Open644, ModeOf(file));
        Assert.Equal(before, StorageFolders.Hashes(folder));
    }

    [Theory]
    [InlineData("qmtunnel.db")]
    [InlineData("server.pfx")]
    public void A_symbolic_link_where_a_file_of_ours_belongs_is_refused_and_its_target_left_alone(string name)
    {
        var folder = _folders.New();
        TunnelStore.Open(folder).Dispose();
        var elsewhere = Path.Combine(_folders.New(), "someone-elses");
        Directory.CreateDirectory(Path.GetDirectoryName(elsewhere)!);
        File.WriteAllText(elsewhere, "not yours");
        File.SetUnixFileMode(elsewhere, Open644);
        var file = Path.Combine(folder, name);
        File.Delete(file);
        File.CreateSymbolicLink(file, elsewhere);
        var ex = Insecure(() => TunnelStore.Open(folder).Dispose(), file);
        Assert.Contains($"symbolic link (to '{elsewhere}')", ex.Message, StringComparison.Ordinal);
        Assert.Equal("not yours", File.ReadAllText(elsewhere));
        Assert.Equal(Open644, ModeOf(elsewhere));
        Assert.NotNull(new FileInfo(file).LinkTarget);
    }

    [Fact]
    public void A_database_with_a_second_name_is_refused()
    {
        var folder = _folders.New();
        TunnelStore.Open(folder).Dispose();
        var file = StorageFolders.Data(folder);
        var second = Path.Combine(_folders.New(), "copy.db");
        Directory.CreateDirectory(Path.GetDirectoryName(second)!);
        using (var ln = Process.Start("ln", [file, second])!)
        {
            ln.WaitForExit();
            Assert.Equal(0, ln.ExitCode);
        }
        var ex = Insecure(() => TunnelStore.Open(folder).Dispose(), file);
        Assert.Contains("has 2 names (hard links)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_open_folder_that_also_holds_files_not_of_qmTunnel_is_refused_and_its_mode_kept()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "notes.txt"), "mine");
        File.SetUnixFileMode(folder, Open755);
        var ex = Insecure(() => TunnelStore.Open(folder).Dispose(), folder);
        Assert.Contains("notes.txt", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"chmod 700 '{folder}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Open755, ModeOf(folder));
        Assert.False(File.Exists(StorageFolders.Data(folder)));
    }

    [Fact]
    public void A_shared_folder_like_tmp_is_refused_and_its_mode_kept()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder);
        var shared = (UnixFileMode)0x3FF; // 1777
        File.SetUnixFileMode(folder, shared);
        var ex = Insecure(() => TunnelStore.Open(folder).Dispose(), folder);
        Assert.Contains("shared folder (mode 1777", ex.Message, StringComparison.Ordinal);
        Assert.Equal(shared, ModeOf(folder));
    }

    [Fact]
    public Task Under_umask_022_the_clients_pins_are_owner_only_and_a_foreign_or_linked_pin_file_is_refused() => WithUmask022(() =>
    {
        var folder = Path.Combine(_folders.New(), "qmTunnel");
        var pins = new ClientKnownServers(Path.Combine(folder, "known-servers.txt"));
        Assert.Empty(pins.GetAll());
        Assert.False(Directory.Exists(folder)); // reading creates nothing
        pins.Add("a.lan:9200", "AB");
        Assert.True(pins.Remove("a.lan:9200"));
        pins.Add("b.lan:9200", "CD");
        AssertOwnerOnly(folder);

        // Open to others: tightened at the next use.
        File.SetUnixFileMode(pins.FilePath, Open644);
        File.SetUnixFileMode(folder, Open755);
        Assert.Equal("CD", pins.Find("b.lan:9200"));
        AssertOwnerOnly(folder);

        // Written by another user: whoever writes it decides whom this client trusts.
        Chown("nobody", pins.FilePath);
        Insecure(() => pins.Find("b.lan:9200"), pins.FilePath);
        Insecure(() => pins.Add("c.lan:9200", "EF"), pins.FilePath);

        File.Delete(pins.FilePath);
        var planted = Path.Combine(_folders.New(), "planted.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(planted)!);
        File.WriteAllText(planted, "b.lan:9200 0000 2020-01-01T00:00:00Z\n");
        File.CreateSymbolicLink(pins.FilePath, planted);
        Insecure(() => pins.Find("b.lan:9200"), pins.FilePath);
        return Task.CompletedTask;
    });

    [Fact]
    public void Pins_in_a_folder_shared_with_other_files_leave_the_folder_alone()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "notes.txt"), "mine");
        File.SetUnixFileMode(folder, Open755);
        var pins = new ClientKnownServers(Path.Combine(folder, "pins.txt"));
        pins.Add("a.lan:9200", "AB");
        Assert.Equal(Open755, ModeOf(folder));
        Assert.Equal(OwnerOnly.FileMode, ModeOf(pins.FilePath));
    }

    /// <summary>Keeps what is logged: event id and formatted message.</summary>
    private sealed class ListLogger : ILogger
    {
        public List<(int Id, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries)
            {
                Entries.Add((eventId.Id, formatter(state, exception)));
            }
        }
    }
}

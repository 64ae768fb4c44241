using System.Buffers.Binary;
using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Storage;

/// <summary>
/// The database (qmtunnel.db and its LiteDB log qmtunnel-log.db) with real LiteDB files: a database that cannot be
/// read whole stops the start with DatabaseCorrupt naming both files, leaving every byte of both as it was; a crash in
/// the middle of a write opens normally; every write, and a clean stop, leaves the state in the data file.
/// </summary>
public sealed class DatabaseIntegrityTests : IDisposable
{
    private const int Page = 8192;
    private readonly StorageFolders _folders = new();

    public void Dispose() => _folders.Dispose();

    /// <summary>Opening is refused with DatabaseCorrupt naming both files, and neither file changed.</summary>
    private static QmTunnelException RefusedUntouched(string folder)
    {
        var before = StorageFolders.Hashes(folder);
        var ex = Assert.Throws<QmTunnelException>(() => TunnelStore.Open(folder).Dispose());
        Assert.Equal(ErrorIds.DatabaseCorrupt, ex.ErrorId);
        Assert.Equal(QmErrorKind.InvalidData, ex.Kind);
        Assert.Equal(StorageFolders.Data(folder), ex.Target);
        Assert.Contains(StorageFolders.Data(folder), ex.Message, StringComparison.Ordinal);
        Assert.Contains(StorageFolders.Log(folder), ex.Message, StringComparison.Ordinal);
        Assert.Contains("backup", ex.Message, StringComparison.Ordinal);
        Assert.Equal(before, StorageFolders.Hashes(folder));
        // And again: a second start finds the same files, not a new database.
        Assert.Equal(ErrorIds.DatabaseCorrupt, Assert.Throws<QmTunnelException>(() => TunnelStore.Open(folder).Dispose()).ErrorId);
        Assert.Equal(before, StorageFolders.Hashes(folder));
        Assert.False(File.Exists(Path.Combine(folder, "qmtunnel.new.db")));
        return ex;
    }

    private static void WriteAt(string file, long offset, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Write);
        stream.Position = offset;
        stream.Write(bytes);
    }

    [Fact]
    public void The_crash_copies_hold_what_the_tests_below_need()
    {
        // A pin committed into the log by a transaction of its own, the last page of each confirmed (offset 18).
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = File.ReadAllBytes(StorageFolders.Log(folder));
        Assert.True(log.Length >= 2 * Page && log.Length % Page == 0, $"log of {log.Length} bytes");
        Assert.Equal(1, log[log.Length - Page + 18]);
        var transactions = Enumerable.Range(0, log.Length / Page).Select(p => BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(p * Page + 14))).Distinct().Count();
        Assert.Equal(2, transactions);
    }

    [Fact]
    public void Committed_writes_found_in_the_log_after_a_crash_are_written_into_the_data_file_at_start()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        using (var store = TunnelStore.Open(folder))
        {
            Assert.Equal(["logged-1.lan:9200", "logged-2.lan:9200", "stored.lan:9200"], store.GetKnownServers().Select(k => k.Server));
            Assert.Equal(0, new FileInfo(StorageFolders.Log(folder)).Length); // checkpointed at once
        }
        // The data file alone now holds everything.
        var alone = _folders.New();
        Directory.CreateDirectory(alone);
        File.Copy(StorageFolders.Data(folder), StorageFolders.Data(alone));
        using var copy = TunnelStore.Open(alone);
        Assert.Equal(StorageFolders.Thumbprint("logged-2.lan:9200"), copy.Find("logged-2.lan:9200"));
    }

    [Fact]
    public void A_write_cut_short_by_a_crash_its_last_page_never_written_opens_without_it()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = StorageFolders.Log(folder);
        using (var stream = new FileStream(log, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(stream.Length - Page); // the confirmed page of the second transaction
        }
        using var store = TunnelStore.Open(folder);
        Assert.Equal(["logged-1.lan:9200", "stored.lan:9200"], store.GetKnownServers().Select(k => k.Server));
    }

    [Fact]
    public void A_write_cut_short_by_a_crash_before_it_was_confirmed_opens_without_it()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = StorageFolders.Log(folder);
        WriteAt(log, new FileInfo(log).Length - Page + 18, [0]); // the last page, not confirmed
        using (var store = TunnelStore.Open(folder))
        {
            Assert.Equal(["logged-1.lan:9200", "stored.lan:9200"], store.GetKnownServers().Select(k => k.Server));
            store.Add("after.lan:9200", StorageFolders.Thumbprint("after.lan:9200"));
        }
        using var again = TunnelStore.Open(folder);
        Assert.Equal(["after.lan:9200", "logged-1.lan:9200", "stored.lan:9200"], again.GetKnownServers().Select(k => k.Server));
    }

    [Fact]
    public void A_checkpoint_cut_short_by_a_crash_leaving_holes_in_the_data_file_opens_whole()
    {
        var logged = Enumerable.Range(0, 200).Select(i => $"logged-{i}.lan:9200").ToArray();
        var folder = _folders.Crashed(["stored.lan:9200"], logged);
        var data = StorageFolders.Data(folder);
        var dataPages = new FileInfo(data).Length / Page;
        var log = File.ReadAllBytes(StorageFolders.Log(folder));
        // The committed page with the highest id, written alone to its place as a checkpoint does (transaction id
        // cleared, not confirmed), beyond the data file's end: the pages between stay zero, as when a crash stops a
        // checkpoint after its first write. The log is still whole.
        var highest = Enumerable.Range(0, log.Length / Page).MaxBy(p => BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(p * Page)));
        var page = log.AsSpan(highest * Page, Page).ToArray();
        var id = BinaryPrimitives.ReadUInt32LittleEndian(page);
        Assert.True(id > dataPages, $"page {id} is not beyond the data file's {dataPages} pages");
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(14), uint.MaxValue);
        page[18] = 0;
        WriteAt(data, id * (long)Page, page);

        using var store = TunnelStore.Open(folder);
        Assert.Equal(logged.Append("stored.lan:9200").Order(StringComparer.Ordinal), store.GetKnownServers().Select(k => k.Server));
    }

    [Fact]
    public void A_page_of_the_database_in_neither_file_is_refused()
    {
        var logged = Enumerable.Range(0, 200).Select(i => $"logged-{i}.lan:9200").ToArray();
        var folder = _folders.Crashed(["stored.lan:9200"], logged);
        var dataPages = new FileInfo(StorageFolders.Data(folder)).Length / Page;
        // Drop the log's committed pages of one page id beyond the data file (zero pages are skipped, as LiteDB does).
        var log = File.ReadAllBytes(StorageFolders.Log(folder));
        var id = Enumerable.Range(0, log.Length / Page).Select(p => BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(p * Page))).Where(i => i > dataPages).Max();
        for (var p = 0; p < log.Length / Page; p++)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(p * Page)) == id && log[p * Page + 18] == 0)
            {
                log.AsSpan(p * Page, Page).Clear();
            }
        }
        File.WriteAllBytes(StorageFolders.Log(folder), log);
        var ex = RefusedUntouched(folder);
        Assert.Contains($"page {id} of the database", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_database_all_in_its_log_as_older_versions_left_it_opens_whole()
    {
        var folder = _folders.CrashedWithEverythingInTheLog(["one.lan:9200", "two.lan:9200"]);
        Assert.Equal(Page, new FileInfo(StorageFolders.Data(folder)).Length); // LiteDB's empty header only
        using var store = TunnelStore.Open(folder);
        Assert.Equal(["one.lan:9200", "two.lan:9200"], store.GetKnownServers().Select(k => k.Server));
    }

    [Fact]
    public void A_deleted_log_whose_data_file_lacks_the_committed_state_is_refused()
    {
        var folder = _folders.CrashedWithEverythingInTheLog(["one.lan:9200"]);
        File.Delete(StorageFolders.Log(folder));
        var ex = RefusedUntouched(folder);
        Assert.Contains("marker", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_log_of_random_bytes_is_refused()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = StorageFolders.Log(folder);
        File.WriteAllBytes(log, RandomNumberGenerator.GetBytes((int)new FileInfo(log).Length));
        var ex = RefusedUntouched(folder);
        Assert.Contains("of the log", ex.Message, StringComparison.Ordinal);
        Assert.Contains("move '" + log + "' aside", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_log_cut_in_the_middle_of_a_page_is_refused()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = StorageFolders.Log(folder);
        using (var stream = new FileStream(log, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(stream.Length / 2 + 1000);
        }
        var ex = RefusedUntouched(folder);
        Assert.Contains("cut short", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_log_whose_page_headers_hold_but_whose_contents_are_random_is_refused()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200", "logged-2.lan:9200"]);
        var log = File.ReadAllBytes(StorageFolders.Log(folder));
        for (var page = 0; page < log.Length / Page; page++)
        {
            if (log[page * Page + 4] != 1) // header pages are checked page by page; this is about the rest
            {
                RandomNumberGenerator.Fill(log.AsSpan(page * Page + 32, Page - 32));
            }
        }
        File.WriteAllBytes(StorageFolders.Log(folder), log);
        var ex = RefusedUntouched(folder);
        Assert.Contains("LiteDB cannot read it", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_log_without_its_data_file_is_refused()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200"]);
        File.Delete(StorageFolders.Data(folder));
        var ex = RefusedUntouched(folder);
        Assert.Contains("data file is missing", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_data_file_of_random_bytes_is_refused_with_or_without_a_log(bool withLog)
    {
        var folder = withLog ? _folders.Crashed(["stored.lan:9200"], ["logged-1.lan:9200"]) : _folders.Crashed(["stored.lan:9200"], []);
        File.WriteAllBytes(StorageFolders.Data(folder), RandomNumberGenerator.GetBytes(4 * Page));
        var ex = RefusedUntouched(folder);
        Assert.Contains("header of a LiteDB 5 database", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_data_file_cut_to_its_first_pages_is_refused()
    {
        var folder = _folders.New();
        using (var store = TunnelStore.Open(folder))
        {
            for (var i = 0; i < 300; i++)
            {
                store.Add($"host-{i}.lan:9200", StorageFolders.Thumbprint($"host-{i}"));
            }
        }
        var data = StorageFolders.Data(folder);
        using (var stream = new FileStream(data, FileMode.Open, FileAccess.Write))
        {
            Assert.True(stream.Length >= 4 * Page, $"data file of {stream.Length} bytes");
            stream.SetLength(2 * Page);
        }
        var ex = RefusedUntouched(folder);
        Assert.Contains("pages", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_data_file_is_refused()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(StorageFolders.Data(folder), []);
        var ex = RefusedUntouched(folder);
        Assert.Contains("empty", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_data_file_LiteDB_marked_invalid_is_refused()
    {
        var folder = _folders.Crashed(["stored.lan:9200"], []);
        WriteAt(StorageFolders.Data(folder), 191, [1]);
        var ex = RefusedUntouched(folder);
        Assert.Contains("marked", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_write_is_in_the_data_file_at_once_and_a_clean_stop_leaves_no_log()
    {
        var folder = _folders.New();
        var alone = _folders.New();
        Directory.CreateDirectory(alone);
        using (var store = TunnelStore.Open(folder))
        {
            store.Add("first.lan:9200", StorageFolders.Thumbprint("first"));
            store.Users.NewGroup(new QmTunnel.Engine.Security.Group { Name = "Readers" });
            // While it runs the log holds nothing between writes: the data file alone is the database.
            Assert.Equal(0, new FileInfo(StorageFolders.Log(folder)).Length);
            File.Copy(StorageFolders.Data(folder), StorageFolders.Data(alone));
        }
        Assert.False(File.Exists(StorageFolders.Log(folder)));
        using var copy = TunnelStore.Open(alone);
        Assert.NotNull(copy.Find("first.lan:9200"));
        Assert.NotNull(copy.Users.FindGroup("Readers"));
    }

    [Fact]
    public void A_new_database_is_created_whole_and_a_creation_cut_short_is_started_again()
    {
        var folder = _folders.New();
        Directory.CreateDirectory(folder);
        // What a crash in the middle of a creation leaves: the temporary file, no data file.
        File.WriteAllBytes(Path.Combine(folder, "qmtunnel.new.db"), RandomNumberGenerator.GetBytes(100));
        using (var store = TunnelStore.Open(folder))
        {
            store.Add("first.lan:9200", StorageFolders.Thumbprint("first"));
        }
        Assert.Equal(["qmtunnel.db", "qmtunnel.lock"], Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        using var again = TunnelStore.Open(folder);
        Assert.NotNull(again.Find("first.lan:9200"));
    }
}

using LiteDB;
using LiteDB.Engine;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// Opening the database, in this order, each step before anything is written:
/// 1. the data folder and the qmTunnel files in it are made (or checked) owner-only (<see cref="OwnerOnly"/>);
/// 2. the lock file <c>qmtunnel.lock</c> is held exclusively (DatabaseLocked otherwise);
/// 3. the data file and its log are checked page by page (<see cref="DatabaseFiles.Check"/>);
/// 4. a new database is created whole beside the data file and renamed into place, with its marker (meta "schema")
///    already in the data file, so a data file without it is a database that lost its log;
/// 5. every document is read through LiteDB over read-only handles of both files, and mapped as the server will;
/// 6. only then does LiteDB open the files for writing (its log created owner-only by us first), and a log holding
///    committed transactions (an unclean stop) is checkpointed into the data file at once.
/// </summary>
public sealed partial class TunnelStore
{
    private const string LockFileName = "qmtunnel.lock";
    private const string NewFileName = "qmtunnel.new.db";
    private const string SchemaId = "schema";

    /// <summary>
    /// Opens (or creates) the database in <paramref name="dataPath"/>. Errors: DataPathInvalid, DataPathInsecure,
    /// DatabaseLocked, DatabaseCorrupt (both files named and left untouched).
    /// </summary>
    public static TunnelStore Open(string dataPath, ILogger? logger = null)
    {
        logger ??= NullLogger.Instance;
        foreach (var change in OwnerOnly.PrepareDataFolder(dataPath))
        {
            StorageLog.ModeTightened(logger, change.Path, UnixFileStatus.Octal(change.Before), UnixFileStatus.Octal(change.After));
        }
        var path = Path.Combine(dataPath, FileName);
        // One engine per data path: an exclusive lock file (released by the OS if the process dies).
        FileStream lockFile;
        try
        {
            lockFile = OwnerOnly.Open(Path.Combine(dataPath, LockFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new QmTunnelException(ErrorIds.DatabaseLocked, QmErrorKind.ResourceBusy, path,
                $"The database '{path}' is in use by another qmTunnel server. Stop that server, or start this one with another -DataPath.", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new QmTunnelException(ErrorIds.DataPathInvalid, QmErrorKind.InvalidArgument, dataPath,
                $"The data path '{dataPath}' is not writable ({ex.Message}). Give a writable folder with -DataPath.", ex);
        }
        LiteDatabase? db = null;
        try
        {
            var found = DatabaseFiles.Check(path);
            if (found.IsNew)
            {
                Create(path);
                StorageLog.DatabaseCreated(logger, path);
            }
            Verify(path, found);
            var logFile = DatabaseFiles.LogPath(path);
            OwnerOnly.EnsureFile(logFile); // LiteDB would create it with the umask's mode
            db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct, Upgrade = false });
            if (found.ConfirmedTransactions > 0)
            {
                db.Checkpoint();
                StorageLog.LogRecovered(logger, path, found.ConfirmedTransactions, logFile);
            }
            if (found.UncommittedPages > 0)
            {
                StorageLog.UncommittedIgnored(logger, path, found.UncommittedPages, logFile);
            }
            var store = new TunnelStore(db, path) { _lock = lockFile };
            _ = store.Users; // users and groups are checked at start too, not at first use
            return store;
        }
        catch (QmTunnelException)
        {
            db?.Dispose();
            lockFile.Dispose();
            throw;
        }
        catch (IOException ex) when (IsLocked(ex))
        {
            db?.Dispose();
            lockFile.Dispose();
            throw new QmTunnelException(ErrorIds.DatabaseLocked, QmErrorKind.ResourceBusy, path,
                $"The database '{path}' is in use by another qmTunnel server. Stop that server, or start this one with another -DataPath.", ex);
        }
        catch (Exception ex) when (ex is LiteException or IOException or InvalidCastException or InvalidOperationException or ArgumentException or IndexOutOfRangeException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            db?.Dispose();
            lockFile.Dispose();
            throw DatabaseFiles.Corrupt(path, $"LiteDB cannot open it ({ex.GetType().Name}: {ex.Message}).", DatabaseFiles.Fix.RestoreBoth, ex);
        }
    }

    private static bool IsLocked(IOException ex) =>
        ex.HResult is 32 or 33 or unchecked((int)0x80070020) || ex.Message.Contains("being used by another process", StringComparison.OrdinalIgnoreCase)
        || ex.Message.Contains("lock", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// A new database, whole or not at all: made as <c>qmtunnel.new.db</c> (owner-only, its marker written and
    /// checkpointed into it, the empty log removed), then renamed to <paramref name="path"/>.
    /// </summary>
    private static void Create(string path)
    {
        var folder = Path.GetDirectoryName(path)!;
        var temporary = Path.Combine(folder, NewFileName);
        var temporaryLog = DatabaseFiles.LogPath(temporary);
        // Left by a creation cut short (there is no data file, so nothing else can be in them).
        File.Delete(temporary);
        File.Delete(temporaryLog);
        OwnerOnly.Open(temporary, FileMode.CreateNew, FileAccess.Write).Dispose();
        OwnerOnly.EnsureFile(temporaryLog);
        using (var db = new LiteDatabase(new ConnectionString { Filename = temporary, Connection = ConnectionType.Direct, Upgrade = false }))
        {
            db.GetCollection("meta").Insert(new BsonDocument
            {
                ["_id"] = SchemaId,
                ["version"] = SchemaVersion,
                ["createdAtMs"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            });
            db.Checkpoint(); // into the data file, flushed to disk
        }
        File.Delete(temporaryLog);
        File.Move(temporary, path, overwrite: false);
    }

    /// <summary>
    /// Reads every document of the database through LiteDB over read-only handles of both files (nothing LiteDB does
    /// here can reach them) and maps tunnels, users and groups as the server will. DatabaseCorrupt otherwise.
    /// </summary>
    private static void Verify(string path, DatabaseFiles.Result found)
    {
        var logFile = DatabaseFiles.LogPath(path);
        var fix = found.ConfirmedTransactions > 0 ? DatabaseFiles.Fix.RestoreOrDropLog : DatabaseFiles.Fix.RestoreOrStartEmpty;
        try
        {
            using var data = ReadOnly(path);
            using var log = found.LogPages > 0 ? ReadOnly(logFile) : null;
            using var engine = new LiteEngine(new EngineSettings { DataStream = data, LogStream = log, ReadOnly = true, Upgrade = false });
            using var db = new LiteDatabase(engine);
            var schema = db.GetCollection("meta").FindById(SchemaId);
            if (schema is null)
            {
                throw DatabaseFiles.Corrupt(path,
                    "it holds no qmTunnel database: its marker (meta 'schema', written when it was created) is missing, so what it held was in a log " +
                    "that is missing or was emptied.", DatabaseFiles.Fix.RestoreOrStartEmpty);
            }
            if (schema["version"].AsInt32 > SchemaVersion)
            {
                throw new QmTunnelException(ErrorIds.DatabaseCorrupt, QmErrorKind.InvalidData, path,
                    $"The database '{path}' has schema version {schema["version"].AsInt32}, newer than this qmTunnel ({SchemaVersion}). " +
                    "Use a newer qmTunnel with it; it was left untouched.");
            }
            foreach (var name in db.GetCollectionNames())
            {
                _ = db.GetCollection(name).FindAll().Count(); // every document, through its _id index
            }
            foreach (var doc in db.GetCollection("tunnels").FindAll())
            {
                _ = FromDocument(doc);
            }
            new UserStore(db, new object(), path).CheckReadable();
        }
        catch (QmTunnelException)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Any failure of LiteDB on these bytes means the database cannot be read whole.
            throw DatabaseFiles.Corrupt(path, $"LiteDB cannot read it ({ex.GetType().Name}: {ex.Message}).", fix, ex);
        }
    }

    private static FileStream ReadOnly(string path) =>
        new(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.ReadWrite });
}

internal static partial class StorageLog
{
    // Event ids: Diagnostics/EventIds.cs (storage and data path, 400-449).
    [LoggerMessage(EventId = EventIds.DataPathTightened, Level = LogLevel.Warning,
        Message = "{Path} was open to other users (mode {Before}); it is owner-only now (mode {After})")]
    public static partial void ModeTightened(ILogger logger, string path, string before, string after);

    [LoggerMessage(EventId = EventIds.DatabaseCreated, Level = LogLevel.Information, Message = "New database {Database}")]
    public static partial void DatabaseCreated(ILogger logger, string database);

    [LoggerMessage(EventId = EventIds.DatabaseLogRecovered, Level = LogLevel.Warning,
        Message = "Database {Database}: {Transactions} committed transaction(s) found in its log {Log} (the server did not stop cleanly) were written into it")]
    public static partial void LogRecovered(ILogger logger, string database, int transactions, string log);

    [LoggerMessage(EventId = EventIds.DatabaseWriteDropped, Level = LogLevel.Warning,
        Message = "Database {Database}: {Pages} page(s) at the end of its log {Log} belong to a write that was never committed (the server stopped in the middle of it); they are ignored")]
    public static partial void UncommittedIgnored(ILogger logger, string database, long pages, string log);
}

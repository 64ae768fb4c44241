using System.Buffers.Binary;
using System.Text;
using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// Decides, before LiteDB touches them, whether the server's database can be read whole: the data file
/// <c>qmtunnel.db</c> and its write-ahead log <c>qmtunnel-log.db</c> together, read as LiteDB 5.0.21 writes them
/// (file version 8; LiteDB/Engine/Disk/DiskService.cs, Pages/BasePage.cs, Pages/HeaderPage.cs,
/// Services/WalIndexService.cs RestoreIndex):
/// <code>
/// both files: 8192-byte pages. Page header (32 bytes):
///    0 u32 page id   4 u8 type (0 empty, 1 header, 2 collection, 3 index, 4 data)   5 u32 previous   9 u32 next
///   13 u8 free-list slot   14 u32 transaction id   18 u8 confirmed (0 or 1)   19 u32 collection ...
/// data file: page N at offset N * 8192, with page id N. Page 0 is the header page:
///   32 "** This is a LiteDB file **"   59 u8 file version (8)   64 u32 last page id
///   191 u8 invalid state (LiteDB sets it after a failed write)   192..8191 the collections (a BSON document)
/// log: pages appended as transactions write them. The last page of a committed transaction is marked confirmed
///   (it is the header page when the transaction changed the header). A transaction without its confirmed page
///   (a crash in the middle of a write) is ignored, as LiteDB does; a checkpoint copies the confirmed pages to their
///   place in the data file and empties the log. An all-zero page is skipped, as LiteDB does.
/// </code>
/// Refused with DatabaseCorrupt, naming both files and the fix, both left untouched: a log without its data file; an
/// empty data file; a length that is not whole pages (a file cut short); a first page that is not a LiteDB 5 header,
/// or that LiteDB marked invalid; a page header that is not LiteDB's (an id other than its place in the data file, an
/// unknown type, a confirmed flag other than 0 or 1, a header page other than page 0); a committed page beyond the
/// database's last page; a page of the database in neither file. It does not read the pages' content:
/// <see cref="TunnelStore"/> then reads every document through LiteDB over read-only handles.
/// </summary>
internal static class DatabaseFiles
{
    public const int PageSize = 8192;
    private const int TypeOffset = 4, TransactionOffset = 14, ConfirmedOffset = 18;
    private const int HeaderInfoOffset = 32, FileVersionOffset = 59, LastPageOffset = 64, InvalidStateOffset = 191, CollectionsOffset = 192, CollectionsSize = 8000;
    private const string HeaderInfo = "** This is a LiteDB file **";
    private const byte FileVersion = 8;
    private const byte HeaderType = 1, MaxType = 4;

    /// <summary>LiteDB's name for the log of <paramref name="dataFile"/>: qmtunnel.db → qmtunnel-log.db.</summary>
    public static string LogPath(string dataFile) =>
        Path.Combine(Path.GetDirectoryName(dataFile) ?? string.Empty, Path.GetFileNameWithoutExtension(dataFile) + "-log" + Path.GetExtension(dataFile));

    /// <summary>What <see cref="Check"/> found.</summary>
    /// <param name="IsNew">Neither file holds anything: a new database is to be created.</param>
    /// <param name="ConfirmedTransactions">Committed transactions in the log (not yet in the data file).</param>
    /// <param name="LogPages">Pages in the log, committed or not.</param>
    /// <param name="UncommittedPages">Pages of the log after the last confirmation of their transaction: a write cut short, ignored.</param>
    public readonly record struct Result(bool IsNew, int ConfirmedTransactions, long LogPages, long UncommittedPages);

    /// <summary>Reads both files (never writes) and returns what they hold, or throws DatabaseCorrupt.</summary>
    public static Result Check(string dataFile)
    {
        var logFile = LogPath(dataFile);
        var data = new FileInfo(dataFile);
        var log = new FileInfo(logFile);
        var logLength = log.Exists ? log.Length : 0;
        if (!data.Exists)
        {
            return logLength == 0
                ? new Result(true, 0, 0, 0)
                : throw Corrupt(dataFile, $"the data file is missing, but its log holds {logLength} bytes.", Fix.RestoreOrStartEmpty);
        }
        if (data.Length == 0)
        {
            throw Corrupt(dataFile, "the data file is empty (0 bytes): a database always holds at least its header page.", Fix.RestoreOrStartEmpty);
        }
        if (data.Length % PageSize != 0)
        {
            throw Corrupt(dataFile, $"the data file's length ({data.Length} bytes) is not a whole number of {PageSize}-byte pages: it was cut short or is not a LiteDB file.", Fix.RestoreOrStartEmpty);
        }
        if (logLength % PageSize != 0)
        {
            throw Corrupt(dataFile, $"the log's length ({logLength} bytes) is not a whole number of {PageSize}-byte pages: it was cut short in the middle of a page.", Fix.RestoreOrDropLog);
        }
        var dataPages = data.Length / PageSize;
        var page = new byte[PageSize];
        var present = new bool[dataPages];
        uint lastPage;
        using (var stream = OpenRead(dataFile))
        {
            ReadPage(stream, page);
            lastPage = CheckHeaderPage(page, dataFile, "the data file's first page", Fix.RestoreOrStartEmpty);
            present[0] = true;
            for (var index = 1L; index < dataPages; index++)
            {
                ReadPage(stream, page);
                if (IsBlank(page))
                {
                    continue; // a page the log still holds (a checkpoint was cut short), or missing: see below
                }
                var id = BinaryPrimitives.ReadUInt32LittleEndian(page);
                var type = page[TypeOffset];
                if (id != index || type > MaxType || type == HeaderType)
                {
                    throw Corrupt(dataFile, $"page {index} of the data file is not a LiteDB page (page id {id}, type {type}).", Fix.RestoreOrStartEmpty);
                }
                present[index] = true;
            }
        }

        var committed = new HashSet<uint>();
        var confirmed = 0;
        var pending = new Dictionary<uint, long>(); // per transaction: pages since its last confirmed page
        var logPages = logLength / PageSize;
        if (logPages > 0)
        {
            var transactions = new Dictionary<uint, List<uint>>();
            using var stream = OpenRead(logFile);
            for (var index = 0L; index < logPages; index++)
            {
                ReadPage(stream, page);
                if (IsBlank(page))
                {
                    continue;
                }
                var id = BinaryPrimitives.ReadUInt32LittleEndian(page);
                var type = page[TypeOffset];
                var transaction = BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(TransactionOffset));
                var flag = page[ConfirmedOffset];
                if (type > MaxType || flag > 1 || (type == HeaderType) != (id == 0))
                {
                    throw Corrupt(dataFile, $"page {index} of the log is not a LiteDB page (page id {id}, type {type}, confirmed flag {flag}).", Fix.RestoreOrDropLog);
                }
                if (!transactions.TryGetValue(transaction, out var pages))
                {
                    transactions[transaction] = pages = [];
                }
                pages.Add(id);
                pending[transaction] = pending.GetValueOrDefault(transaction) + 1;
                if (flag == 1)
                {
                    pending[transaction] = 0;
                    committed.UnionWith(pages);
                    confirmed++;
                    if (type == HeaderType)
                    {
                        lastPage = CheckHeaderPage(page, dataFile, $"page {index} of the log (a header page)", Fix.RestoreOrDropLog);
                    }
                }
            }
        }
        if (lastPage >= dataPages + logPages)
        {
            throw Corrupt(dataFile, $"the database's header names {lastPage + 1L} pages, but the two files hold only {dataPages + logPages}.", Fix.RestoreBoth);
        }
        foreach (var id in committed.Where(id => id > lastPage))
        {
            throw Corrupt(dataFile, $"the log commits page {id}, beyond the database's last page {lastPage}.", Fix.RestoreOrDropLog);
        }
        for (var id = 0u; id <= lastPage; id++)
        {
            if (!(id < dataPages && present[id]) && !committed.Contains(id))
            {
                throw Corrupt(dataFile, $"page {id} of the database (it has {lastPage + 1L}) is in neither file.", Fix.RestoreBoth);
            }
        }
        return new Result(false, confirmed, logPages, pending.Values.Sum());
    }

    /// <summary>Checks a LiteDB 5 header page; returns its last page id.</summary>
    private static uint CheckHeaderPage(byte[] page, string dataFile, string where, Fix fix)
    {
        var id = BinaryPrimitives.ReadUInt32LittleEndian(page);
        var info = Encoding.ASCII.GetString(page, HeaderInfoOffset, HeaderInfo.Length);
        if (id != 0 || page[TypeOffset] != HeaderType || info != HeaderInfo || page[FileVersionOffset] != FileVersion)
        {
            throw Corrupt(dataFile, $"{where} is not the header of a LiteDB 5 database (file version {FileVersion}).", fix);
        }
        if (page[InvalidStateOffset] != 0)
        {
            throw Corrupt(dataFile, $"LiteDB marked {where} invalid after a failure while it wrote.", fix);
        }
        var length = BinaryPrimitives.ReadInt32LittleEndian(page.AsSpan(CollectionsOffset));
        if (length == 0)
        {
            // A new database's header: LiteDB writes the list of collections only once there is one.
            return BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(LastPageOffset));
        }
        if (length < 5 || length > CollectionsSize || page[CollectionsOffset + length - 1] != 0)
        {
            throw Corrupt(dataFile, $"the list of collections in {where} is damaged.", fix);
        }
        try
        {
            _ = BsonSerializer.Deserialize(page.AsSpan(CollectionsOffset, length).ToArray());
        }
        catch (Exception ex) when (ex is LiteException or ArgumentException or InvalidCastException or IndexOutOfRangeException or FormatException or OverflowException or EndOfStreamException)
        {
            throw Corrupt(dataFile, $"the list of collections in {where} cannot be read ({ex.Message}).", fix);
        }
        return BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(LastPageOffset));
    }

    private static FileStream OpenRead(string path) =>
        new(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.ReadWrite, BufferSize = 0 });

    private static void ReadPage(FileStream stream, byte[] page) => stream.ReadExactly(page);

    private static bool IsBlank(byte[] page) => !page.AsSpan().ContainsAnyExcept((byte)0);

    /// <summary>What the administrator can do about a damaged database.</summary>
    public enum Fix
    {
        /// <summary>Only a backup helps.</summary>
        RestoreBoth,
        /// <summary>The data file is damaged: a backup, or start with nothing.</summary>
        RestoreOrStartEmpty,
        /// <summary>The log is damaged: a backup, or start from the data file alone.</summary>
        RestoreOrDropLog,
    }

    /// <summary>DatabaseCorrupt naming both files, what is wrong and what to do; the target is the data file.</summary>
    public static QmTunnelException Corrupt(string dataFile, string problem, Fix fix, Exception? inner = null)
    {
        var logFile = LogPath(dataFile);
        var advice = fix switch
        {
            Fix.RestoreOrDropLog =>
                $"Restore both files from the same backup; or, to start from the data file alone and lose the changes in the log, move '{logFile}' aside.",
            Fix.RestoreOrStartEmpty =>
                $"Restore both files from the same backup; or move both aside to start with an empty configuration (a new admin user, no tunnels).",
            _ => "Restore both files from the same backup.",
        };
        return new QmTunnelException(ErrorIds.DatabaseCorrupt, QmErrorKind.InvalidData, dataFile,
            $"The database '{dataFile}' cannot be read whole: {problem} The database is that file and its log '{logFile}', backed up together " +
            $"(docs/service.md); both were left untouched. {advice} Then start the server again.", inner);
    }
}

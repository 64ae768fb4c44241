using System.Security.Cryptography;
using LiteDB;
using QmTunnel.Engine.Storage;

namespace QmTunnel.Engine.Tests.Storage;

/// <summary>
/// Temp data folders for the storage tests (deleted at the end), with what they need: the database's two files, their
/// hashes, and databases as a crash leaves them.
/// </summary>
internal sealed class StorageFolders : IDisposable
{
    private readonly List<string> _folders = [];

    public string New()
    {
        var path = Path.Combine(Path.GetTempPath(), "qmt-storage-" + Guid.NewGuid().ToString("n"));
        _folders.Add(path);
        return path;
    }

    public static string Data(string folder) => Path.Combine(folder, TunnelStore.FileName);

    public static string Log(string folder) => Path.Combine(folder, "qmtunnel-log.db");

    /// <summary>SHA-256 of both files ("missing" for one that is not there): equal before and after means untouched.</summary>
    public static (string Data, string Log) Hashes(string folder) => (Hash(Data(folder)), Hash(Log(folder)));

    private static string Hash(string file) => File.Exists(file) ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file))) : "missing";

    /// <summary>
    /// A database as a kill -9 between commits and their checkpoint leaves it: <paramref name="stored"/> pins written
    /// through the store (so in the data file), then <paramref name="logged"/> pins committed by LiteDB one transaction
    /// each into its log, both files copied while LiteDB still holds them. Pins are server -> thumbprint.
    /// </summary>
    public string Crashed(string[] stored, string[] logged)
    {
        var source = New();
        using (var store = TunnelStore.Open(source))
        {
            foreach (var server in stored)
            {
                store.Add(server, Thumbprint(server));
            }
        }
        return CrashedCopy(source, new ConnectionString { Filename = Data(source), Connection = ConnectionType.Direct }, logged);
    }

    /// <summary>
    /// A database as older versions left it after a crash: created by LiteDB itself (its data file only LiteDB's
    /// empty header), the marker and <paramref name="logged"/> pins in its log only.
    /// </summary>
    public string CrashedWithEverythingInTheLog(string[] logged)
    {
        var source = New();
        Directory.CreateDirectory(source);
        return CrashedCopy(source, new ConnectionString { Filename = Data(source), Connection = ConnectionType.Direct }, logged, writeMarker: true);
    }

    private string CrashedCopy(string source, ConnectionString connection, string[] logged, bool writeMarker = false)
    {
        var target = New();
        Directory.CreateDirectory(target);
        using (var db = new LiteDatabase(connection))
        {
            if (writeMarker)
            {
                db.GetCollection("meta").Insert(new BsonDocument { ["_id"] = "schema", ["version"] = TunnelStore.SchemaVersion });
            }
            foreach (var server in logged)
            {
                db.GetCollection("knownServers").Upsert(new BsonDocument
                {
                    ["_id"] = server,
                    ["thumbprint"] = Thumbprint(server),
                    ["firstSeenMs"] = 1L,
                });
            }
            File.Copy(Data(source), Data(target));
            if (File.Exists(Log(source)))
            {
                File.Copy(Log(source), Log(target));
            }
        }
        return target;
    }

    public static string Thumbprint(string server) => Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(server)));

    public void Dispose()
    {
        foreach (var folder in _folders)
        {
            try
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, true);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // A temp folder left behind; the test result stands.
            }
        }
    }
}

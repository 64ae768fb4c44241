using LiteDB;
using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// The server's LiteDB file (<c>qmtunnel.db</c> in the data path): tunnel profiles and server settings. The engine is
/// its only writer (exclusive connection). A file that cannot be opened or read is reported with
/// <see cref="ErrorIds.DatabaseCorrupt"/> naming the file; it is never overwritten, rebuilt or reset.
/// Documents are mapped by hand so the stored schema is ours, not the CLR types'.
/// </summary>
public sealed class TunnelStore : IDisposable, Security.IKnownServers
{
    public const string FileName = "qmtunnel.db";
    public const int SchemaVersion = 1;
    private readonly LiteDatabase _db;
    private readonly ILiteCollection<BsonDocument> _tunnels;
    private readonly object _gate = new();

    private FileStream? _lock;

    private TunnelStore(LiteDatabase db, string path)
    {
        _db = db;
        FilePath = path;
        _tunnels = db.GetCollection("tunnels");
    }

    public string FilePath { get; }

    public static TunnelStore Open(string dataPath)
    {
        try
        {
            Directory.CreateDirectory(dataPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new QmTunnelException(ErrorIds.DataPathInvalid, QmErrorKind.InvalidArgument, dataPath,
                $"The data path '{dataPath}' cannot be created: {ex.Message} Give a writable folder with -DataPath.", ex);
        }
        var path = Path.Combine(dataPath, FileName);
        // One engine per data path: an exclusive lock file (released by the OS if the process dies).
        FileStream lockFile;
        var lockPath = Path.Combine(dataPath, "qmtunnel.lock");
        try
        {
            lockFile = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
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
            if (!OperatingSystem.IsWindows())
            {
                // The database holds password verifiers and hop login keys: owner-only, like the certificate key.
                if (!File.Exists(path))
                {
                    using (new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
                    {
                    }
                }
                else if ((File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
                {
                    File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                }
            }
            db = new LiteDatabase(new ConnectionString { Filename = path, Connection = ConnectionType.Direct, Upgrade = false });
            var store = new TunnelStore(db, path) { _lock = lockFile };
            store.CheckReadable();
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
            throw Corrupt(path, ex);
        }
    }

    private static bool IsLocked(IOException ex) =>
        ex.HResult is 32 or 33 or unchecked((int)0x80070020) || ex.Message.Contains("being used by another process", StringComparison.OrdinalIgnoreCase)
        || ex.Message.Contains("lock", StringComparison.OrdinalIgnoreCase);

    private static QmTunnelException Corrupt(string path, Exception ex) =>
        new(ErrorIds.DatabaseCorrupt, QmErrorKind.InvalidData, path,
            $"The database '{path}' cannot be read ({ex.GetType().Name}: {ex.Message}). It was left untouched. " +
            "Restore it from a backup, or move it aside to start with an empty configuration, then start the server again.", ex);

    private void CheckReadable()
    {
        var meta = _db.GetCollection("meta");
        var version = meta.FindById("schema");
        if (version is null)
        {
            meta.Upsert(new BsonDocument { ["_id"] = "schema", ["version"] = SchemaVersion });
        }
        else if (version["version"].AsInt32 > SchemaVersion)
        {
            throw new QmTunnelException(ErrorIds.DatabaseCorrupt, QmErrorKind.InvalidData, FilePath,
                $"The database '{FilePath}' has schema version {version["version"].AsInt32}, newer than this qmTunnel ({SchemaVersion}). Use a newer qmTunnel with it; the file was left untouched.");
        }
        foreach (var doc in _tunnels.FindAll())
        {
            _ = FromDocument(doc);
        }
    }

    public IReadOnlyList<TunnelProfile> LoadTunnels()
    {
        lock (_gate)
        {
            try
            {
                return _tunnels.FindAll().Select(FromDocument).ToList();
            }
            catch (Exception ex) when (ex is LiteException or InvalidCastException or KeyNotFoundException)
            {
                throw Corrupt(FilePath, ex);
            }
        }
    }

    public void Save(TunnelProfile profile)
    {
        lock (_gate)
        {
            _tunnels.Upsert(ToDocument(profile));
        }
    }

    public void Delete(string name)
    {
        lock (_gate)
        {
            _tunnels.Delete(Key(name));
        }
    }

    /// <summary>Tunnel names are case-insensitive, like PowerShell names.</summary>
    private static string Key(string name) => name.ToUpperInvariant();

    private static BsonDocument ToDocument(TunnelProfile p) => new()
    {
        ["_id"] = Key(p.Name),
        ["name"] = p.Name,
        ["description"] = p.Description,
        ["direction"] = p.Direction.ToString(),
        ["protocol"] = p.Protocol.ToString(),
        ["listen"] = p.Listen,
        ["via"] = new BsonArray(p.Via.Select(v => new BsonValue(v))),
        ["target"] = p.Target,
        ["maxConnections"] = p.MaxConnections,
        ["connectTimeoutMs"] = (long)p.ConnectTimeout.TotalMilliseconds,
        ["noDelay"] = p.NoDelay,
        ["keepAlive"] = p.KeepAlive,
        ["bufferSize"] = p.BufferSize,
        ["autoStart"] = p.AutoStart,
        ["createdAtMs"] = p.CreatedAt.ToUnixTimeMilliseconds(),
        ["modifiedAtMs"] = p.ModifiedAt.ToUnixTimeMilliseconds(),
        ["owner"] = p.Owner,
        ["ownerGroup"] = p.OwnerGroup,
        ["credentials"] = new BsonArray(p.Credentials.Select(CredentialToBson)),
    };

    private static BsonValue CredentialToBson(HopCredential? c) => c is null ? BsonValue.Null : new BsonDocument
    {
        ["user"] = c.User,
        ["salt"] = c.Salt is null ? BsonValue.Null : new BsonValue(c.Salt),
        ["iterations"] = c.Iterations,
        ["clientKey"] = c.ClientKey is null ? BsonValue.Null : new BsonValue(c.ClientKey),
        ["serverKey"] = c.ServerKey is null ? BsonValue.Null : new BsonValue(c.ServerKey),
        ["certificatePath"] = c.CertificatePath is null ? BsonValue.Null : new BsonValue(c.CertificatePath),
    };

    private static HopCredential? CredentialFromBson(BsonValue v) => v.IsNull ? null : new HopCredential
    {
        User = v["user"].AsString ?? throw new InvalidCastException("hop credential without a user"),
        Salt = v["salt"].IsNull ? null : v["salt"].AsBinary,
        Iterations = v["iterations"].AsInt32,
        ClientKey = v["clientKey"].IsNull ? null : v["clientKey"].AsBinary,
        ServerKey = v["serverKey"].IsNull ? null : v["serverKey"].AsBinary,
        CertificatePath = v["certificatePath"].IsNull ? null : v["certificatePath"].AsString,
    };

    private static TunnelProfile FromDocument(BsonDocument d) => new()
    {
        Name = d["name"].AsString ?? throw new InvalidCastException("tunnel without a name"),
        Description = d["description"].AsString ?? string.Empty,
        Direction = Enum.Parse<TunnelDirection>(d["direction"].AsString),
        Protocol = Enum.Parse<TunnelProtocol>(d["protocol"].AsString),
        Listen = d["listen"].AsString ?? throw new InvalidCastException("tunnel without listen"),
        Via = d["via"].AsArray.Select(v => v.AsString).ToList(),
        Target = d["target"].AsString ?? throw new InvalidCastException("tunnel without target"),
        MaxConnections = d["maxConnections"].AsInt32,
        ConnectTimeout = TimeSpan.FromMilliseconds(d["connectTimeoutMs"].AsInt64),
        NoDelay = d["noDelay"].AsBoolean,
        KeepAlive = d["keepAlive"].AsBoolean,
        BufferSize = d["bufferSize"].AsInt32,
        Persistent = true,
        AutoStart = d["autoStart"].AsBoolean,
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(d["createdAtMs"].AsInt64),
        ModifiedAt = DateTimeOffset.FromUnixTimeMilliseconds(d["modifiedAtMs"].AsInt64),
        Owner = d["owner"].IsNull ? Security.User.AdminName : d["owner"].AsString,
        OwnerGroup = d["ownerGroup"].IsNull ? Security.Group.AdministratorsName : d["ownerGroup"].AsString,
        Credentials = d["credentials"].IsNull ? [] : d["credentials"].AsArray.Select(CredentialFromBson).ToList(),
    };

    // ---- known servers (certificate pins of the servers this one dials) ----

    public string? Find(string server)
    {
        lock (_gate)
        {
            return _db.GetCollection("knownServers").FindById(server.ToLowerInvariant())?["thumbprint"].AsString;
        }
    }

    public void Add(string server, string thumbprint)
    {
        lock (_gate)
        {
            _db.GetCollection("knownServers").Upsert(new BsonDocument
            {
                ["_id"] = server.ToLowerInvariant(),
                ["thumbprint"] = thumbprint,
                ["firstSeenMs"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            });
        }
    }

    public IReadOnlyList<Security.KnownServer> GetKnownServers()
    {
        lock (_gate)
        {
            return _db.GetCollection("knownServers").FindAll().Select(d => new Security.KnownServer
            {
                Server = d["_id"].AsString,
                Thumbprint = d["thumbprint"].AsString,
                FirstSeen = DateTimeOffset.FromUnixTimeMilliseconds(d["firstSeenMs"].AsInt64),
            }).OrderBy(k => k.Server, StringComparer.Ordinal).ToList();
        }
    }

    public bool RemoveKnownServer(string server)
    {
        lock (_gate)
        {
            return _db.GetCollection("knownServers").Delete(server.ToLowerInvariant());
        }
    }

    // ---- server settings ----

    public bool? GetBoolSetting(string name)
    {
        lock (_gate)
        {
            var doc = _db.GetCollection("settings").FindById(name);
            return doc is null ? null : doc["value"].AsBoolean;
        }
    }

    public void SetBoolSetting(string name, bool value)
    {
        lock (_gate)
        {
            _db.GetCollection("settings").Upsert(new BsonDocument { ["_id"] = name, ["value"] = value });
        }
    }

    /// <summary>A saved whole-number setting, or null when it was never set (or is stored as another type).</summary>
    public int? GetIntSetting(string name)
    {
        lock (_gate)
        {
            var doc = _db.GetCollection("settings").FindById(name);
            return doc is null || !doc["value"].IsInt32 ? null : doc["value"].AsInt32;
        }
    }

    public void SetIntSetting(string name, int value)
    {
        lock (_gate)
        {
            _db.GetCollection("settings").Upsert(new BsonDocument { ["_id"] = name, ["value"] = value });
        }
    }

    public void Dispose()
    {
        _db.Dispose();
        _lock?.Dispose();
    }

    #region Users and groups (Storage/UserStore.cs): same database file, same lock

    private UserStore? _users;

    /// <summary>
    /// Users and groups, kept in this database under this store's lock; their documents are checked readable on first
    /// use (DatabaseCorrupt otherwise). Call it once right after <see cref="Open"/> to fail at start, not later.
    /// </summary>
    public UserStore Users
    {
        get
        {
            lock (_gate)
            {
                if (_users is null)
                {
                    var users = new UserStore(_db, _gate, FilePath);
                    users.CheckReadable();
                    _users = users;
                }
                return _users;
            }
        }
    }

    #endregion
}

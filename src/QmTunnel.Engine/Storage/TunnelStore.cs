using LiteDB;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// The server's LiteDB database in the data path: tunnel profiles, server settings, certificate pins, and (through
/// <see cref="Users"/>) users and groups. The engine is its only writer (exclusive lock file). It is the data file
/// <c>qmtunnel.db</c> and, while the server runs, LiteDB's write-ahead log <c>qmtunnel-log.db</c>: every write is
/// checkpointed into the data file as soon as it is committed, so the log only ever holds the write in progress (a
/// crash journal), and a clean stop leaves the data file alone. Opening it (TunnelStore.Open.cs) checks that both
/// files can be read whole before anything is written; a database that cannot is reported with
/// <see cref="ErrorIds.DatabaseCorrupt"/> naming both files, and is never overwritten, rebuilt or reset.
/// Documents are mapped by hand so the stored schema is ours, not the CLR types'.
/// </summary>
public sealed partial class TunnelStore : IDisposable, Security.IKnownServers
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

    /// <summary>The data file, <c>qmtunnel.db</c>.</summary>
    public string FilePath { get; }

    /// <summary>LiteDB's log beside it, <c>qmtunnel-log.db</c>: empty but for the write in progress.</summary>
    public string LogFilePath => DatabaseFiles.LogPath(FilePath);

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
                throw DatabaseFiles.Corrupt(FilePath, $"its tunnels cannot be read ({ex.GetType().Name}: {ex.Message}).", DatabaseFiles.Fix.RestoreBoth, ex);
            }
        }
    }

    public void Save(TunnelProfile profile)
    {
        lock (_gate)
        {
            _tunnels.Upsert(ToDocument(profile));
            Committed();
        }
    }

    public void Delete(string name)
    {
        lock (_gate)
        {
            _tunnels.Delete(Key(name));
            Committed();
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
        ["mode"] = p.Mode.ToString(),
        ["idleTimeoutMs"] = (long)p.IdleTimeout.TotalMilliseconds,
        ["failureToleranceMs"] = (long)p.FailureTolerance.TotalMilliseconds,
        ["udpIdleTimeoutMs"] = (long)p.UdpIdleTimeout.TotalMilliseconds,
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
        // Every version wrote it (LocalToRemote before reverse tunnels existed); an unknown one is refused as a corrupt document.
        Direction = d["direction"].IsNull ? TunnelDirection.LocalToRemote
            : Enum.TryParse<TunnelDirection>(d["direction"].AsString, out var direction) && Enum.IsDefined(direction) ? direction
            : throw new InvalidCastException($"tunnel direction '{d["direction"]}' is not one this version knows"),
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
        // Absent in databases written before tunnel modes: the defaults then.
        Mode = d["mode"].IsNull ? TunnelMode.PerConnection
            : Enum.TryParse<TunnelMode>(d["mode"].AsString, out var mode) && Enum.IsDefined(mode) ? mode
            : throw new InvalidCastException($"tunnel mode '{d["mode"]}' is not one this version knows"),
        IdleTimeout = d["idleTimeoutMs"].IsNull ? TunnelProfile.DefaultIdleTimeout : TimeSpan.FromMilliseconds(d["idleTimeoutMs"].AsInt64),
        FailureTolerance = d["failureToleranceMs"].IsNull ? TunnelProfile.DefaultFailureTolerance : TimeSpan.FromMilliseconds(d["failureToleranceMs"].AsInt64),
        UdpIdleTimeout = d["udpIdleTimeoutMs"].IsNull ? TunnelProfile.DefaultUdpIdleTimeout : TimeSpan.FromMilliseconds(d["udpIdleTimeoutMs"].AsInt64),
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
            Committed();
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
            var removed = _db.GetCollection("knownServers").Delete(server.ToLowerInvariant());
            Committed();
            return removed;
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
            Committed();
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
            Committed();
        }
    }

    /// <summary>
    /// After each committed write (under the gate): copies it from the log into the data file (LiteDB's checkpoint,
    /// which flushes the data file to disk) and empties the log. LiteDB alone would do that only once the log holds
    /// 1,000 pages, leaving the database's state in the log, unsynced, for the whole run.
    /// </summary>
    private void Committed() => _db.Checkpoint();

    /// <summary>Checkpoints the log into the data file (LiteDB then deletes the empty log), closes it, releases the lock.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            try
            {
                _db.Checkpoint();
            }
            catch (Exception ex) when (ex is IOException or LiteException or UnauthorizedAccessException)
            {
                // The committed writes stay in the log; the next start checks it and writes them into the data file.
            }
            _db.Dispose();
        }
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
                    var users = new UserStore(_db, _gate, FilePath, committed: Committed);
                    users.CheckReadable();
                    _users = users;
                }
                return _users;
            }
        }
    }

    #endregion
}

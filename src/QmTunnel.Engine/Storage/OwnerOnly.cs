using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Storage;

/// <summary>
/// The one place that creates and checks the folders and files holding qmTunnel's secrets on Linux and macOS: the data
/// folder (database with password verifiers and hop login keys, its LiteDB log, the TLS key <c>server.pfx</c>, a
/// generated admin password, the daemon's log) and the client's pins (<c>known-servers.txt</c>). Folders are 0700 and
/// files 0600 whatever the process umask: the mode is given at creation and set again right after it.
/// At start an existing folder or file of ours that other users may read or write is tightened (the change is
/// returned, for the log); one that belongs to another user, a symbolic link or a hard link where a file of ours is
/// expected, a shared folder (sticky bit, like /tmp) and an open folder that also holds files that are not qmTunnel's
/// are refused with <see cref="ErrorIds.DataPathInsecure"/> naming the path, its owner, its mode and the fix.
/// On Windows it only creates folders and files: their access comes from the parent folder's ACL (the user's own
/// profile by default; docs/service.md sets the service's). It does not check the parents of a folder.
/// </summary>
public static class OwnerOnly
{
    public const UnixFileMode FolderMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Permission bits that are not the owner's: group, others, setuid, setgid, sticky.</summary>
    private const UnixFileMode NotOwnerOnly = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute |
        UnixFileMode.SetUser | UnixFileMode.SetGroup | UnixFileMode.StickyBit;

    /// <summary>
    /// Whether a file of a data folder is one qmTunnel keeps there (checked and tightened at start): the database, its
    /// log, lock and creation files (<c>qmtunnel*</c>, also the daemon's log and its rotations), <c>server.pfx</c>,
    /// <c>initial-admin-password</c>, <c>known-servers.txt</c>.
    /// </summary>
    public static bool IsQmTunnelFile(string name) =>
        name.StartsWith("qmtunnel", StringComparison.Ordinal) || name.StartsWith("known-servers.txt", StringComparison.Ordinal) ||
        name is Security.ServerCertificate.FileName or QmTunnelEngine.InitialAdminPasswordFileName;

    /// <summary>umask 077 for the rest of this process (the daemon, first thing): whatever it creates is owner-only.</summary>
    public static void RestrictProcessUmask()
    {
        if (!OperatingSystem.IsWindows())
        {
            UnixFileStatus.SetUmask(0x3F); // 077
        }
    }

    /// <summary>
    /// Creates the data folder owner-only, or checks the existing one and the qmTunnel files in it (see the type).
    /// Returns what it tightened. Errors: DataPathInvalid (cannot be created, not a folder), DataPathInsecure.
    /// </summary>
    public static IReadOnlyList<ModeChange> PrepareDataFolder(string dataPath) => Guard(dataPath, "data folder", () =>
    {
        var changes = new List<ModeChange>();
        if (PrepareFolder(dataPath, "data folder") is { } folderChange)
        {
            changes.Add(folderChange);
        }
        if (OperatingSystem.IsWindows())
        {
            return changes;
        }
        foreach (var entry in Directory.EnumerateFileSystemEntries(dataPath).Order(StringComparer.Ordinal))
        {
            if (IsQmTunnelFile(Path.GetFileName(entry)) && CheckFile(entry) is { } change)
            {
                changes.Add(change);
            }
        }
        return (IReadOnlyList<ModeChange>)changes;
    });

    /// <summary>A file system failure while checking or changing modes (a read-only mount, say) as DataPathInvalid.</summary>
    private static T Guard<T>(string path, string what, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new QmTunnelException(ErrorIds.DataPathInvalid, QmErrorKind.InvalidArgument, path,
                $"The {what} '{path}' cannot be checked or made owner-only: {ex.Message} Give a writable folder of this user with -DataPath.", ex);
        }
    }

    /// <summary>
    /// A folder for qmTunnel's files: created 0700 (with its missing parents) when missing; else it must be a folder
    /// (a link to one is followed) of this user, and is tightened to 0700 when others may use it, unless it is shared
    /// (sticky) or holds files that are not qmTunnel's: then refused. Returns the change made, if any.
    /// </summary>
    /// <param name="what">What the folder is, in messages ("data folder").</param>
    /// <param name="strict">
    /// False for a folder that only holds a file of ours among others (the client's pins): then a folder of another
    /// user, a shared one or one with other files is left as it is, and only the file itself is checked.
    /// </param>
    public static ModeChange? PrepareFolder(string path, string what, bool strict = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            CreateFolder(path, what);
            return null;
        }
        var status = UnixFileStatus.Get(path, followLink: true);
        if (status.Kind == UnixFileKind.Missing)
        {
            CreateFolder(path, what);
            return null;
        }
        if (status.Kind != UnixFileKind.Directory)
        {
            throw new QmTunnelException(ErrorIds.DataPathInvalid, QmErrorKind.InvalidArgument, path,
                $"The {what} '{path}' is not a folder. Give a folder (it is created when missing) with -DataPath.");
        }
        if (!strict && (status.OwnerId is { } owner && owner != UnixFileStatus.CurrentUserId || (status.Mode & UnixFileMode.StickyBit) != 0))
        {
            return null;
        }
        CheckOwner(path, status, $"The {what}", $"chown -R {Me} '{path}'", "or start the server with another -DataPath");
        if ((status.Mode & NotOwnerOnly) == 0)
        {
            return null;
        }
        if ((status.Mode & UnixFileMode.StickyBit) != 0)
        {
            throw Insecure(path,
                $"The {what} '{path}' is a shared folder (mode {UnixFileStatus.Octal(status.Mode)}, like /tmp): other users can create files in it. " +
                "Give qmTunnel a folder of its own (-DataPath; it is created owner-only).");
        }
        var foreign = Directory.EnumerateFileSystemEntries(path)
            .Where(e => !IsQmTunnelFile(Path.GetFileName(e)) || Directory.Exists(e))
            .Select(Path.GetFileName).Order(StringComparer.Ordinal).Take(3).ToList();
        if (foreign.Count > 0 && !strict)
        {
            return null;
        }
        if (foreign.Count > 0)
        {
            throw Insecure(path,
                $"The {what} '{path}' is open to other users (mode {UnixFileStatus.Octal(status.Mode)}) and holds files that are not qmTunnel's " +
                $"({string.Join(", ", foreign)}), so qmTunnel does not change its mode itself. Make it owner-only (chmod 700 '{path}'), " +
                "or give qmTunnel a folder of its own (-DataPath; it is created owner-only).");
        }
        var tightened = status.Mode & FolderMode;
        File.SetUnixFileMode(path, tightened);
        return new ModeChange(path, status.Mode, tightened);
    }

    /// <summary>
    /// Checks a qmTunnel file that may exist: nothing to do when missing; refused when it is a link, not a regular file,
    /// has other names (hard links) or belongs to another user; tightened to owner-only when others may use it.
    /// </summary>
    public static ModeChange? CheckFile(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }
        var status = UnixFileStatus.Get(path);
        switch (status.Kind)
        {
            case UnixFileKind.Missing:
                return null;
            case UnixFileKind.SymbolicLink:
                var target = new FileInfo(path).LinkTarget;
                throw Insecure(path,
                    $"'{path}' is a symbolic link (to '{target}'), where qmTunnel keeps a file of its own: it does not follow links there, as a link " +
                    "can send its secrets or its writes to a file of someone else's. Put the file itself there (or remove the link), or start the server with another -DataPath.");
            case UnixFileKind.Other when Path.GetFileName(path) == Management.LocalStatusChannel.FileName:
                break; // the daemon's status socket (a stale one is replaced when a daemon starts): checked like a file below
            case UnixFileKind.Directory:
            case UnixFileKind.Other:
                throw Insecure(path,
                    $"'{path}' is not a regular file ({status.Kind.ToString().ToLowerInvariant()}), where qmTunnel keeps a file of its own. Remove it, or start the server with another -DataPath.");
        }
        CheckOwner(path, status, "The file", $"chown {Me} '{path}'", "or remove it if it is not this server's");
        if (status.LinkCount > 1)
        {
            throw Insecure(path,
                $"'{path}' has {status.LinkCount} names (hard links): its content can be read or changed through another name elsewhere. " +
                $"Replace it with a copy of its own (cp -p '{path}' '{path}.copy' && mv '{path}.copy' '{path}'), or start the server with another -DataPath.");
        }
        if ((status.Mode & NotOwnerOnly) == 0)
        {
            return null;
        }
        var tightened = status.Mode & FolderMode & ~UnixFileMode.UserExecute;
        File.SetUnixFileMode(path, tightened);
        return new ModeChange(path, status.Mode, tightened);
    }

    /// <summary>
    /// Opens or creates a qmTunnel file owner-only: an existing one is checked first (<see cref="CheckFile"/>), a new one
    /// is created 0600 and set to exactly 0600 right after (whatever the umask).
    /// </summary>
    public static FileStream Open(string path, System.IO.FileMode mode, FileAccess access, FileShare share = FileShare.None)
    {
        var options = new FileStreamOptions { Mode = mode, Access = access, Share = share };
        if (OperatingSystem.IsWindows())
        {
            return new FileStream(path, options);
        }
        var existed = CheckFile(path) is not null || File.Exists(path);
        options.UnixCreateMode = FileMode;
        var stream = new FileStream(path, options);
        try
        {
            if (!existed || (File.GetUnixFileMode(stream.SafeFileHandle) & NotOwnerOnly) != 0)
            {
                File.SetUnixFileMode(stream.SafeFileHandle, FileMode);
            }
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        return stream;
    }

    /// <summary>Creates an empty owner-only file when there is none (e.g. LiteDB's log before LiteDB creates it with the umask's mode).</summary>
    public static void EnsureFile(string path)
    {
        using (Open(path, System.IO.FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite))
        {
        }
    }

    private static void CreateFolder(string path, string what)
    {
        try
        {
            if (OperatingSystem.IsWindows())
            {
                Directory.CreateDirectory(path);
            }
            else
            {
                // Each missing folder from the top down, 0700 exactly (.NET gives the mode to the last one only).
                var missing = new Stack<string>();
                for (var folder = Path.GetFullPath(path); !Directory.Exists(folder); folder = Path.GetDirectoryName(folder)!)
                {
                    missing.Push(folder);
                }
                while (missing.TryPop(out var folder))
                {
                    Directory.CreateDirectory(folder, FolderMode);
                    File.SetUnixFileMode(folder, FolderMode);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new QmTunnelException(ErrorIds.DataPathInvalid, QmErrorKind.InvalidArgument, path,
                $"The {what} '{path}' cannot be created: {ex.Message} Give a writable folder with -DataPath.", ex);
        }
    }

    private static void CheckOwner(string path, UnixFileStatus status, string subject, string chown, string otherwise)
    {
        if (status.OwnerId is { } owner && owner != UnixFileStatus.CurrentUserId)
        {
            var me = UnixFileStatus.CurrentUserId;
            throw Insecure(path,
                $"{subject} '{path}' belongs to {UnixFileStatus.DescribeUser(owner)}, not to {UnixFileStatus.DescribeUser(me)} that runs qmTunnel " +
                $"(mode {UnixFileStatus.Octal(status.Mode)}): its owner could read or replace qmTunnel's secrets there. " +
                $"Give it to this user ({chown}), {otherwise}.");
        }
    }

    private static string Me => UnixFileStatus.UserName(UnixFileStatus.CurrentUserId) ?? UnixFileStatus.CurrentUserId.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static QmTunnelException Insecure(string path, string message) =>
        new(ErrorIds.DataPathInsecure, QmErrorKind.SecurityError, path, message);
}

/// <summary>A file or folder whose permission bits <see cref="OwnerOnly"/> tightened.</summary>
public sealed record ModeChange(string Path, UnixFileMode Before, UnixFileMode After)
{
    public override string ToString() => $"{Path}: {UnixFileStatus.Octal(Before)} -> {UnixFileStatus.Octal(After)}";
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace QmTunnel.Engine.Storage;

/// <summary>What a path is, without following it when it is a symbolic link.</summary>
internal enum UnixFileKind
{
    Missing,
    File,
    Directory,
    SymbolicLink,
    /// <summary>A FIFO, socket or device.</summary>
    Other,
}

/// <summary>
/// The owner, permission bits, kind and link count of a path: what <see cref="File.GetUnixFileMode(string)"/> does not
/// tell. <see cref="OwnerId"/> is null where the platform call is not available (then only the mode can be checked).
/// </summary>
internal readonly record struct UnixFileStatus(UnixFileKind Kind, uint? OwnerId, UnixFileMode Mode, uint LinkCount)
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicFields = 0x1 | 0x2 | 0x4 | 0x8; // STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID
    private const int ENOENT = 2;
    private const int ENOTDIR = 20;
    private const uint TypeMask = 0xF000; // S_IFMT (0170000)
    private const uint TypeDirectory = 0x4000, TypeFile = 0x8000, TypeLink = 0xA000, TypeSocket = 0xC000;
    private const UnixFileMode PermissionBits = (UnixFileMode)0xFFF; // rwx for all three, setuid, setgid, sticky

    /// <summary>lstat (or stat when <paramref name="followLink"/>): owner, mode, kind and link count of <paramref name="path"/>.</summary>
    public static UnixFileStatus Get(string path, bool followLink = false)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("Unix file status is for Linux and macOS.");
        }
        var buffer = new byte[256];
        int result, errno;
        if (OperatingSystem.IsLinux())
        {
            // statx (Linux 4.11, glibc 2.28): one layout on every architecture, unlike struct stat.
            //   u32 mask @0, u32 blksize @4, u64 attributes @8, u32 nlink @16, u32 uid @20, u32 gid @24, u16 mode @28
            try
            {
                result = NativeMethods.Statx(AtFdCwd, path, followLink ? 0 : AtSymlinkNoFollow, StatxBasicFields, buffer);
                errno = result == 0 ? 0 : Marshal.GetLastPInvokeError();
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
            {
                return FromManaged(path, followLink);
            }
            if (result == 0)
            {
                return From(BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(28)), BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20)),
                    BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(16)));
            }
        }
        else if (OperatingSystem.IsMacOS())
        {
            // struct stat with 64-bit inodes (lstat$INODE64 on x64, the only lstat on arm64):
            //   i32 dev @0, u16 mode @4, u16 nlink @6, u64 ino @8, u32 uid @16, u32 gid @20
            try
            {
                result = RuntimeInformation.ProcessArchitecture == Architecture.X64
                    ? (followLink ? NativeMethods.MacStatX64(path, buffer) : NativeMethods.MacLstatX64(path, buffer))
                    : (followLink ? NativeMethods.MacStat(path, buffer) : NativeMethods.MacLstat(path, buffer));
                errno = result == 0 ? 0 : Marshal.GetLastPInvokeError();
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
            {
                return FromManaged(path, followLink);
            }
            if (result == 0)
            {
                return From(BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(4)), BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(16)),
                    BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(6)));
            }
        }
        else
        {
            return FromManaged(path, followLink);
        }
        if (errno is ENOENT or ENOTDIR)
        {
            return new UnixFileStatus(UnixFileKind.Missing, null, 0, 0);
        }
        if (errno == 38) // ENOSYS: a kernel without statx
        {
            return FromManaged(path, followLink);
        }
        throw new IOException($"Cannot read the owner and mode of '{path}' (errno {errno}).");
    }

    private static UnixFileStatus From(uint mode, uint owner, uint links)
    {
        var kind = (mode & TypeMask) switch
        {
            TypeFile => UnixFileKind.File,
            TypeDirectory => UnixFileKind.Directory,
            TypeLink => UnixFileKind.SymbolicLink,
            _ => UnixFileKind.Other,
        };
        return new UnixFileStatus(kind, owner, (UnixFileMode)mode & PermissionBits, links) { IsSocket = (mode & TypeMask) == TypeSocket };
    }

    /// <summary>Whether the path is a socket (S_IFSOCK); false where only the managed fallback could look (it cannot tell).</summary>
    public bool IsSocket { get; init; }

    /// <summary>Without the native call: kind and mode from .NET, owner unknown.</summary>
    private static UnixFileStatus FromManaged(string path, bool followLink)
    {
        FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
        if (!info.Exists && info.LinkTarget is null)
        {
            return new UnixFileStatus(UnixFileKind.Missing, null, 0, 0);
        }
        if (info.LinkTarget is not null && !followLink)
        {
            return new UnixFileStatus(UnixFileKind.SymbolicLink, null, 0, 1);
        }
        var kind = info is DirectoryInfo ? UnixFileKind.Directory : UnixFileKind.File;
        return new UnixFileStatus(kind, null, info.UnixFileMode, 1);
    }

    /// <summary>The effective user id of this process.</summary>
    public static uint CurrentUserId => NativeMethods.GetEffectiveUserId();

    /// <summary>Sets the process's file mode creation mask; returns the previous one.</summary>
    public static uint SetUmask(uint mask) => NativeMethods.Umask(mask);

    /// <summary>"uid 65534 (nobody)": the id, and the user's name from /etc/passwd when it is there.</summary>
    public static string DescribeUser(uint uid) => UserName(uid) is { } name ? $"uid {uid} ({name})" : $"uid {uid}";

    /// <summary>The name of user <paramref name="uid"/> in /etc/passwd, or null.</summary>
    public static string? UserName(uint uid)
    {
        var id = uid.ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            foreach (var line in File.ReadLines("/etc/passwd"))
            {
                var fields = line.Split(':');
                if (fields.Length > 2 && fields[2] == id)
                {
                    return fields[0];
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // No name then.
        }
        return null;
    }

    /// <summary>Permission bits in octal as chmod takes them: 0755, 0600, 1777.</summary>
    public static string Octal(UnixFileMode mode) => Convert.ToString((int)mode & 0xFFF, 8).PadLeft(4, '0');

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
        public static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, [In, Out] byte[] buffer);

        [DllImport("libc", EntryPoint = "lstat$INODE64", SetLastError = true)]
        public static extern int MacLstatX64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [In, Out] byte[] buffer);

        [DllImport("libc", EntryPoint = "stat$INODE64", SetLastError = true)]
        public static extern int MacStatX64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [In, Out] byte[] buffer);

        [DllImport("libc", EntryPoint = "lstat", SetLastError = true)]
        public static extern int MacLstat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [In, Out] byte[] buffer);

        [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
        public static extern int MacStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [In, Out] byte[] buffer);

        [DllImport("libc", EntryPoint = "geteuid")]
        public static extern uint GetEffectiveUserId();

        [DllImport("libc", EntryPoint = "umask")]
        public static extern uint Umask(uint mask);
    }
}

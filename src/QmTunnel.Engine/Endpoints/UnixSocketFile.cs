using QmTunnel.Engine.Storage;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// The checks that keep a <c>unix://</c> listener's file operations (replacing a stale socket, setting <c>?mode=</c>,
/// removing the file when the listener closes) on the file it means, even for a server running as root: every
/// directory from the root down to the socket's must be owned by root or the server's user and writable by no one
/// else, unless it has the sticky bit (as /tmp: others cannot move or remove what is not theirs there). Else another
/// user could swap the socket file, or a directory above it, for a link between the server's steps, and make it chmod
/// or delete a file of their choosing (the rule of OpenSSH's StrictModes).
/// </summary>
internal static class UnixSocketFile
{
    /// <summary>Null when the socket's directories are safe; else which one is not, and why.</summary>
    public static string? DirectoryProblem(string socketPath)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }
        var self = UnixFileStatus.CurrentUserId;
        for (var dir = Path.GetDirectoryName(socketPath); !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
        {
            var status = UnixFileStatus.Get(dir, followLink: true);
            if (status.Kind == UnixFileKind.Missing)
            {
                return $"the directory {dir} does not exist";
            }
            if (status.Kind != UnixFileKind.Directory)
            {
                return $"{dir} is not a directory";
            }
            if (status.OwnerId is { } owner && owner != 0 && owner != self)
            {
                return $"the directory {dir} belongs to {UnixFileStatus.DescribeUser(owner)}, who could swap the socket file for a link; " +
                    $"use a directory owned by root or the server's user ({UnixFileStatus.DescribeUser(self)}), e.g. /run/qmt";
            }
            if ((status.Mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0 && (status.Mode & UnixFileMode.StickyBit) == 0)
            {
                return $"the directory {dir} (mode {UnixFileStatus.Octal(status.Mode)}) is writable by other users without the sticky bit, so they " +
                    $"could swap the socket file for a link; remove their write permission (chmod go-w {dir}) or use another directory, e.g. /run/qmt";
            }
        }
        return null;
    }

    /// <summary>
    /// Sets the permissions of the socket file just bound at <paramref name="path"/>, only when it is still a socket of
    /// this process's user (never through a link); its directory was checked by <see cref="DirectoryProblem"/>.
    /// </summary>
    public static string? SetMode(string path, int mode)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }
        var status = UnixFileStatus.Get(path);
        if (!status.IsSocket || (status.OwnerId is { } owner && owner != UnixFileStatus.CurrentUserId))
        {
            return $"{path} was replaced by something other than the socket just bound, so its mode was not set";
        }
        File.SetUnixFileMode(path, (UnixFileMode)mode);
        return null;
    }
}

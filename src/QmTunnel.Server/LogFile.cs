using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace QmTunnel.Server;

/// <summary>
/// The daemon's <c>--log-file</c>. Every line the daemon prints goes here (it is Console.Out and Console.Error), and on
/// Unix the process's standard output and error file descriptors (1 and 2) point at it too, so what the .NET runtime
/// itself writes when the process dies ("Out of memory.", an unhandled exception, a fail-fast, a native crash) lands in
/// the same file instead of a pipe nobody reads. The file is owner-only (0600, whatever the umask, also when it existed)
/// and bounded: when a write would take it past <see cref="MaxBytes"/>, FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...,
/// at most <see cref="Keep"/> old files) and a new FILE is started. Thread-safe. It does not format or filter lines.
/// </summary>
internal sealed class LogFile : TextWriter
{
    public const long DefaultMaxBytes = 10 * 1024 * 1024;
    public const int DefaultKeep = 3;
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly Lock _lock = new();
    private readonly bool _captureStdio;
    private FileStream _file;
    private int _fd;
    private long _length;

    private LogFile(string path, long maxBytes, int keep, bool captureStdio)
    {
        Path = path;
        MaxBytes = maxBytes;
        Keep = keep;
        _captureStdio = captureStdio && !OperatingSystem.IsWindows();
        (_file, _fd) = OpenFile(path);
        _length = _file.Length;
        // A daemon starting on a log over half its limit starts a new file, so its start lines (which
        // Start-QmTunnelServer -Daemon waits for) never straddle a rotation.
        if (MaxBytes > 0 && _length > MaxBytes / 2)
        {
            Rotate();
        }
        else
        {
            RedirectStdio();
        }
    }

    /// <summary>Opens (creates) <paramref name="path"/> for appending.</summary>
    /// <param name="maxBytes">Rotate when a write would pass this size; 0: never.</param>
    /// <param name="keep">Old files kept (FILE.1 newest).</param>
    /// <param name="captureStdio">Point file descriptors 1 and 2 at the file (Unix; the daemon does, tests do not).</param>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened.</exception>
    public static LogFile Open(string path, long maxBytes = DefaultMaxBytes, int keep = DefaultKeep, bool captureStdio = true) =>
        new(System.IO.Path.GetFullPath(path), maxBytes, keep, captureStdio);

    public string Path { get; }
    public long MaxBytes { get; }
    public int Keep { get; }

    public override Encoding Encoding { get; } = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    public override void Write(char value) => Write(value.ToString());

    public override void Write(char[] buffer, int index, int count) => Write(new string(buffer, index, count));

    public override void Write(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return;
        }
        var count = Encoding.GetByteCount(value);
        var bytes = ArrayPool<byte>.Shared.Rent(count);
        try
        {
            Encoding.GetBytes(value, bytes);
            lock (_lock)
            {
                if (MaxBytes > 0 && _length > 0 && _length + count > MaxBytes)
                {
                    Rotate();
                }
                WriteBytes(bytes.AsSpan(0, count));
                _length += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    public override void WriteLine(string? value) => Write(value + NewLine);

    public override void Flush()
    {
        // Unbuffered: every write is in the file when it returns.
    }

    /// <summary>
    /// The file, and its descriptor (Unix): taken once, because FileStream.SafeFileHandle moves the descriptor's offset
    /// back to the stream's own idea of it each time, which would write over lines the runtime wrote through fd 2.
    /// </summary>
    private static (FileStream File, int Fd) OpenFile(string path)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.Append,
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite | FileShare.Delete,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnly;
        }
        var file = new FileStream(path, options);
        if (!OperatingSystem.IsWindows())
        {
            try
            {
                // The umask may have taken bits away at creation, and an older file may be readable by others.
                var handle = file.SafeFileHandle; // at the end of the file (FileMode.Append), once
                File.SetUnixFileMode(handle, OwnerOnly);
                return (file, (int)handle.DangerousGetHandle());
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }
        return (file, -1);
    }

    /// <summary>FILE → FILE.1 → FILE.2 ... (the oldest beyond <see cref="Keep"/> deleted), then a new FILE.</summary>
    private void Rotate()
    {
        try
        {
            for (var i = Keep; i >= 1; i--)
            {
                var from = i == 1 ? Path : $"{Path}.{(i - 1).ToString(CultureInfo.InvariantCulture)}";
                var to = $"{Path}.{i.ToString(CultureInfo.InvariantCulture)}";
                if (File.Exists(from))
                {
                    File.Move(from, to, overwrite: true);
                }
            }
            if (Keep == 0)
            {
                File.Delete(Path);
            }
            var next = OpenFile(Path);
            var old = _file;
            (_file, _fd) = next;
            _length = next.File.Length;
            RedirectStdio();
            old.Dispose();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Cannot rotate now (a full disk, a folder made read-only): go on writing to the current file, and say so
            // in it; the next write tries again.
            var note = Encoding.GetBytes($"{DateTime.Now:yyyy-MM-dd HH:mm:ss} warn: QmTunnel.Server cannot rotate the log file {Path}: {ex.Message}{NewLine}");
            WriteBytes(note);
            _length += note.Length;
        }
    }

    private void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        if (_captureStdio)
        {
            // Through the descriptor the runtime writes to as well (they share one file offset): never over each other.
            while (!bytes.IsEmpty)
            {
                var n = Native.Write(_fd, ref MemoryMarshal.GetReference(bytes), bytes.Length);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Native.EINTR)
                    {
                        continue;
                    }
                    throw new IOException($"writing the log file {Path} failed (errno {errno})");
                }
                bytes = bytes[(int)n..];
            }
            return;
        }
        _file.Write(bytes);
    }

    /// <summary>dup2(file, 1) and dup2(file, 2): the runtime's own messages go to the log.</summary>
    private void RedirectStdio()
    {
        if (!_captureStdio)
        {
            return;
        }
        foreach (var target in (ReadOnlySpan<int>)[1, 2])
        {
            if (Native.Dup2(_fd, target) < 0)
            {
                throw new IOException($"cannot point file descriptor {target} at the log file {Path} (errno {Marshal.GetLastPInvokeError()})");
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                _file.Dispose();
            }
        }
        base.Dispose(disposing);
    }

    private static class Native
    {
        public const int EINTR = 4;

        [DllImport("libc", EntryPoint = "write", SetLastError = true)]
        public static extern nint Write(int fd, ref byte buffer, nint count);

        [DllImport("libc", EntryPoint = "dup2", SetLastError = true)]
        public static extern int Dup2(int oldFd, int newFd);
    }
}

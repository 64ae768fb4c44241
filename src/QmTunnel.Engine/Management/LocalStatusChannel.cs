using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>
/// A daemon's read-only status socket: a Unix domain socket named <see cref="FileName"/> in its data folder, mode 0600
/// (the data folder is the owner's), on which every connection gets the server's current <see cref="ServerInfo"/> as
/// one JSON document, and is closed. It lets the OS user that runs the daemon (Get-QmTunnelServer) read its live
/// counters without a password: whoever can open the socket can read the database beside it anyway. On Linux it also
/// refuses a peer whose uid is neither the daemon's nor root's (SO_PEERCRED). It reads nothing from a peer, changes
/// nothing, and is not a management channel (that is a session: Connect-QmTunnelServer).
/// </summary>
public sealed class LocalStatusChannel : IAsyncDisposable
{
    /// <summary>File name of the socket in the data folder.</summary>
    public const string FileName = "qmtunnel-server.status";

    /// <summary>The longest socket path every platform takes (sun_path: 104 bytes on macOS, 108 on Linux, with its NUL).</summary>
    public const int MaxPathBytes = 103;

    /// <summary>The most a status document may be; a longer answer is not a status.</summary>
    private const int MaxDocumentBytes = 64 * 1024;

    private readonly Socket _listener;
    private readonly string _path;
    private readonly Func<ServerInfo> _read;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private LocalStatusChannel(Socket listener, string path, Func<ServerInfo> read, ILogger logger)
    {
        _listener = listener;
        _path = path;
        _read = read;
        _logger = logger;
        _loop = Task.Run(ServeAsync);
    }

    /// <summary>The socket's path for a data folder.</summary>
    public static string PathFor(string dataPath) => Path.Combine(Path.GetFullPath(dataPath), FileName);

    /// <summary>Whether a status socket can exist for <paramref name="dataPath"/> (its path fits a Unix socket address).</summary>
    public static bool IsPossible(string dataPath) =>
        System.Text.Encoding.UTF8.GetByteCount(PathFor(dataPath)) <= MaxPathBytes && Socket.OSSupportsUnixDomainSockets;

    /// <summary>
    /// Serves <paramref name="read"/> on the status socket of <paramref name="dataPath"/>; null, with the reason logged,
    /// when it cannot (a path too long for a Unix socket, or bind failed). Call it only while holding the data path
    /// (a running server): a socket file left by a server that crashed is replaced.
    /// </summary>
    public static LocalStatusChannel? TryStart(string dataPath, Func<ServerInfo> read, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(read);
        ArgumentNullException.ThrowIfNull(logger);
        var path = PathFor(dataPath);
        if (!IsPossible(dataPath))
        {
            StatusLog.Unavailable(logger, path, $"the path is longer than {MaxPathBytes} bytes, the limit of a Unix socket; Get-QmTunnelServer -Session shows current counters");
            return null;
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            File.Delete(path);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
            listener.Listen(16);
            return new LocalStatusChannel(listener, path, read, logger);
        }
        catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
        {
            listener.Dispose();
            StatusLog.Unavailable(logger, path, ex.Message);
            return null;
        }
    }

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket peer;
            try
            {
                peer = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // Out of descriptors, say: wait a little rather than spin, then go on.
                await Task.Delay(100, _stop.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                continue;
            }
            using (peer)
            {
                try
                {
                    if (PeerUid(peer) is { } uid && uid != OwnUid() && uid != 0)
                    {
                        StatusLog.PeerRefused(_logger, uid);
                        continue;
                    }
                    var document = System.Text.Encoding.UTF8.GetBytes(ManagementMessages.ToNode(_read())!.ToJsonString(ManagementMessages.Json));
                    using var send = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    send.CancelAfter(TimeSpan.FromSeconds(5));
                    await peer.SendAsync(document, SocketFlags.None, send.Token).ConfigureAwait(false);
                    peer.Shutdown(SocketShutdown.Send);
                }
                catch (Exception ex) when (ex is SocketException or OperationCanceledException or QmTunnelException or ObjectDisposedException)
                {
                    // The peer went away, the send timed out, or the server is stopping: nothing to tell anyone.
                }
            }
        }
    }

    /// <summary>
    /// The current <see cref="ServerInfo"/> of the daemon that serves <paramref name="dataPath"/>, or null when there is
    /// no such socket, nobody answers within <paramref name="timeout"/>, or the answer is not a status.
    /// </summary>
    public static async Task<ServerInfo?> QueryAsync(string dataPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!IsPossible(dataPath))
        {
            return null;
        }
        var path = PathFor(dataPath);
        if (!File.Exists(path))
        {
            return null;
        }
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), deadline.Token).ConfigureAwait(false);
            var buffer = new byte[MaxDocumentBytes];
            var length = 0;
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }
                length += n;
                if (length == buffer.Length)
                {
                    return null;
                }
            }
            return length == 0 ? null : ManagementMessages.FromNode<ServerInfo>(JsonNode.Parse(buffer.AsSpan(0, length)), "the status");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        catch (Exception ex) when (ex is SocketException or IOException or System.Text.Json.JsonException or QmTunnelException)
        {
            return null;
        }
    }

    /// <summary>The uid of the peer process (Linux, SO_PEERCRED), or null where the platform does not say.</summary>
    private static uint? PeerUid(Socket peer)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        const int solSocket = 1, soPeerCred = 17;
        Span<byte> credentials = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        var length = peer.GetRawSocketOption(solSocket, soPeerCred, credentials);
        return length >= 8 ? BitConverter.ToUInt32(credentials[4..8]) : null;
    }

    private static uint OwnUid() => OperatingSystem.IsWindows() ? 0 : GetEffectiveUid();

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUid();

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
        try
        {
            File.Delete(_path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Replaced at the next start.
        }
    }
}

internal static partial class StatusLog
{
    // Event ids: Diagnostics/EventIds.cs (engine: first run and server control, 50-69).
    [LoggerMessage(EventId = EventIds.StatusChannelUnavailable, Level = LogLevel.Warning, Message = "No status socket at {Path}: {Reason}")]
    public static partial void Unavailable(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = EventIds.StatusPeerRefused, Level = LogLevel.Warning, Message = "Status socket: refused a process of uid {Uid}, which is neither this server's user nor root")]
    public static partial void PeerRefused(ILogger logger, uint uid);
}

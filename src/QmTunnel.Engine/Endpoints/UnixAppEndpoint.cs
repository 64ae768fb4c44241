using System.Buffers.Binary;
using System.Net.Sockets;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// <c>unix:///path</c>: a Unix domain stream socket. Listening replaces an existing socket file only when nothing answers
/// on it (a stale file left by a process that died); a live one is PortInUse, any other file (a link too) BindFailed,
/// and so is a directory others could write to (<see cref="UnixSocketFile"/>). With <c>?mode=0660</c> the socket file
/// gets those permissions before it listens (connect is refused until listen), so no client can connect in between. The
/// listener removes its socket file when it closes. Clients are shown as the path and, on Linux, the peer's pid and uid.
/// </summary>
internal sealed class UnixAppEndpoint : AppEndpoint
{
    public static readonly UnixAppEndpoint Instance = new();

    public override async Task<IAppListener> ListenAsync(EndpointUri listen, AppListenOptions options, CancellationToken cancellationToken)
    {
        var path = listen.Path!;
        var where = listen.ToString();
        if (UnixSocketFile.DirectoryProblem(path) is { } unsafeDirectory)
        {
            throw BindFailed(where, options, unsafeDirectory, null);
        }
        if (File.Exists(path) || Directory.Exists(path) || IsDanglingLink(path))
        {
            if (!IsSocket(path))
            {
                throw BindFailed(where, options, $"{path} exists and is not a socket", null);
            }
            if (await AnswersAsync(path, cancellationToken).ConfigureAwait(false))
            {
                throw InUse(where, options, $"another program listens on {path}", null);
            }
            File.Delete(path); // stale: nothing answers on it
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            if (listen.UnixMode is { } mode && UnixSocketFile.SetMode(path, mode) is { } replaced)
            {
                throw new IOException(replaced);
            }
            socket.Listen(options.Backlog);
        }
        catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            if (ex is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse })
            {
                throw InUse(where, options, $"{path} was created by another program meanwhile", ex);
            }
            throw BindFailed(where, options, ex is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : ex.Message, ex);
        }
        return new UnixListener(socket, listen, path);
    }

    public override async Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(target.Path!), deadline.Token).ConfigureAwait(false);
            return (new SocketAppConnection(socket, target.ToString()), null);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return (null, Failure(ex, timeout, cancellationToken));
        }
    }

    private static bool IsDanglingLink(string path) => new FileInfo(path).LinkTarget is not null;

    private static bool IsSocket(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return true; // AF_UNIX files on Windows are reparse points; a connect attempt decides
        }
        return Storage.UnixFileStatus.Get(path).IsSocket; // never a file, FIFO or device: a stale socket only
    }

    /// <summary>
    /// Whether something may listen at the socket <paramref name="path"/>: only a refused connect says no; one that
    /// waits or is turned away for a full backlog, or is not permitted, says yes (a live socket is never replaced).
    /// </summary>
    internal static async Task<bool> AnswersAsync(string path, CancellationToken cancellationToken)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(path), deadline.Token).ConfigureAwait(false);
            return true;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable)
        {
            return false; // refused: no socket listens there (or the file went away)
        }
        catch (SocketException)
        {
            return true; // a full backlog (EAGAIN) or a connect not permitted: maybe someone is there, so never replace it
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true; // a full backlog that lets connects wait: someone is there
        }
    }

    /// <summary>"unix:///path (pid 123, uid 1000)" on Linux (SO_PEERCRED), the path elsewhere.</summary>
    internal static string Describe(Socket client, string listenText)
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                Span<byte> credentials = stackalloc byte[12];
                const int SolSocket = 1, SoPeerCred = 17;
                if (client.GetRawSocketOption(SolSocket, SoPeerCred, credentials) == 12)
                {
                    var pid = BinaryPrimitives.ReadInt32LittleEndian(credentials);
                    var uid = BinaryPrimitives.ReadUInt32LittleEndian(credentials[4..]);
                    return $"{listenText} (pid {pid}, uid {uid})";
                }
            }
            catch (SocketException)
            {
            }
        }
        return listenText;
    }

    private sealed class UnixListener(Socket socket, EndpointUri bound, string path)
        : SocketListener(socket, bound, client => Describe(client, bound.ToString()))
    {
        private int _disposed;

        public override void Dispose()
        {
            base.Dispose();
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                try
                {
                    File.Delete(path);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                }
            }
        }
    }
}

using System.IO.Pipes;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// <c>pipe://name</c>: a named pipe, through .NET's <see cref="NamedPipeServerStream"/> and <see cref="NamedPipeClientStream"/>.
/// On Windows that is <c>\\.\pipe\name</c>; on Linux and macOS .NET carries a pipe over a Unix domain socket at
/// <c>Path.GetTempPath()/CoreFxPipe_name</c> (<c>$TMPDIR</c>, else <c>/tmp</c>), so a .NET program's pipe client or server of
/// that name meets qmTunnel's, and any program may connect to that socket. Pipes are relayed as streams
/// (<see cref="StreamAppConnection"/>): no half-close, no reset.
/// </summary>
internal sealed class PipeAppEndpoint : AppEndpoint
{
    public static readonly PipeAppEndpoint Instance = new();

    /// <summary>Where .NET puts the socket of pipe <paramref name="name"/> on Unix (what docs tell other programs).</summary>
    public static string UnixSocketPath(string name) => Path.Combine(Path.GetTempPath(), "CoreFxPipe_" + name);

    public override async Task<IAppListener> ListenAsync(EndpointUri listen, AppListenOptions options, CancellationToken cancellationToken)
    {
        var name = listen.Path!;
        var where = listen.ToString();
        var socketPath = UnixSocketPath(name);
        if (!OperatingSystem.IsWindows() && UnixSocketFile.DirectoryProblem(socketPath) is { } unsafeDirectory)
        {
            throw BindFailed(where, options, unsafeDirectory, null);
        }
        if (!OperatingSystem.IsWindows() && (File.Exists(socketPath) || new FileInfo(socketPath).LinkTarget is not null))
        {
            if (!Storage.UnixFileStatus.Get(socketPath).IsSocket)
            {
                throw BindFailed(where, options, $"{socketPath}, where .NET puts the pipe's socket, exists and is not a socket", null);
            }
            // .NET would take over the path of another pipe server of that name: only a stale one may be replaced, one
            // that refuses a connect (a busy server that lets it wait is live).
            if (await UnixAppEndpoint.AnswersAsync(socketPath, cancellationToken).ConfigureAwait(false))
            {
                throw InUse(where, options, $"another program serves the pipe '{name}' ({socketPath})", null);
            }
            File.Delete(socketPath);
        }
        NamedPipeServerStream first;
        try
        {
            first = NewServer(name, PipeOptions.FirstPipeInstance);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw ex is UnauthorizedAccessException || OperatingSystem.IsWindows()
                ? InUse(where, options, $"the pipe '{name}' exists already ({ex.Message})", ex)
                : BindFailed(where, options, ex.Message, ex);
        }
        return new PipeListener(listen, first);
    }

    public override async Task<(AppConnection? Connection, string? Failure)> ConnectAsync(EndpointUri target, OpenOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var client = new NamedPipeClientStream(".", target.Path!, PipeDirection.InOut, PipeOptions.Asynchronous);
        try
        {
            await client.ConnectAsync(timeout, cancellationToken).ConfigureAwait(false);
            return (new StreamAppConnection(client, target.ToString()), null);
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or OperationCanceledException or UnauthorizedAccessException)
        {
            await client.DisposeAsync().ConfigureAwait(false);
            return (null, Failure(ex, timeout, cancellationToken));
        }
    }

    private static NamedPipeServerStream NewServer(string name, PipeOptions extra) =>
        new(name, PipeDirection.InOut, NamedPipeServerStream.MaxAllowedServerInstances, PipeTransmissionMode.Byte, PipeOptions.Asynchronous | extra);

    /// <summary>One server instance waits for a client at a time; the next is made as soon as one connects.</summary>
    private sealed class PipeListener(EndpointUri bound, NamedPipeServerStream first) : IAppListener
    {
        private NamedPipeServerStream? _waiting = first;
        private int _disposed;

        public EndpointUri Bound { get; } = bound;

        public async ValueTask<AppConnection> AcceptAsync(CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            var server = _waiting ??= NewServer(Bound.Path!, PipeOptions.None);
            try
            {
                await server.WaitForConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                _waiting = null;
                await server.DisposeAsync().ConfigureAwait(false);
                throw new AppAcceptException($"a pipe client went away before it was accepted: {ex.Message}", transient: true, ex);
            }
            // the next instance at once, so the pipe is never without a waiting server between two accepts
            try
            {
                _waiting = NewServer(Bound.Path!, PipeOptions.None);
            }
            catch (IOException)
            {
                _waiting = null; // made again by the next accept
            }
            return new StreamAppConnection(server, Bound.ToString());
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _waiting?.Dispose();
            }
        }
    }
}

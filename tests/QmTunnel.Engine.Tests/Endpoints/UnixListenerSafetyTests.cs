using System.Net.Sockets;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Endpoints;

/// <summary>
/// What a unix:// (or pipe:// on Unix) listener refuses to touch: links placed at its path, files that are not
/// sockets, and directories another user could write to (where the socket file could be swapped between its steps).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class UnixListenerSafetyTests : IDisposable
{
    private static readonly AppListenOptions Options = new("Test", "free it", "fix it");
    private readonly string _dir = Directory.CreateTempSubdirectory("qmt-safe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static EndpointUri Unix(string path, string query = "") => EndpointUri.ParseApplication($"unix://{path}{query}", "Listen");

    /// <summary>A socket file with nothing listening on it, as a process that died leaves behind.</summary>
    private static void StaleSocket(string path)
    {
        using var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        dead.Bind(new UnixDomainSocketEndPoint(path + ".tmp"));
        dead.Listen(1);
        File.Move(path + ".tmp", path); // .NET unlinks the path it bound when the socket closes: the moved file stays
    }

    private static async Task<QmTunnelException> RefusedAsync(EndpointUri listen) =>
        await Assert.ThrowsAsync<QmTunnelException>(() => AppEndpoint.For(listen.Scheme).ListenAsync(listen, Options, default));

    [Fact]
    public async Task A_link_at_the_socket_path_is_never_replaced_even_when_it_points_to_a_stale_socket()
    {
        var stale = Path.Combine(_dir, "stale.sock");
        StaleSocket(stale);
        var link = Path.Combine(_dir, "link.sock");
        File.CreateSymbolicLink(link, stale);

        var e = await RefusedAsync(Unix(link));

        Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
        Assert.Contains("exists and is not a socket", e.Message);
        Assert.NotNull(new FileInfo(link).LinkTarget); // the link is still there
        Assert.True(QmTunnel.Engine.Storage.UnixFileStatus.Get(stale).IsSocket); // and so is what it points to

        var dangling = Path.Combine(_dir, "dangling.sock");
        File.CreateSymbolicLink(dangling, Path.Combine(_dir, "nowhere"));
        Assert.Equal(ErrorIds.BindFailed, (await RefusedAsync(Unix(dangling, "?mode=0666"))).ErrorId);
        Assert.NotNull(new FileInfo(dangling).LinkTarget);
        Assert.False(File.Exists(Path.Combine(_dir, "nowhere"))); // nothing was created through it
    }

    [Theory]
    [InlineData(UnixFileMode.GroupWrite)]
    [InlineData(UnixFileMode.OtherWrite)]
    public async Task A_directory_others_may_write_to_is_refused_unless_it_is_sticky(UnixFileMode extra)
    {
        var shared = Directory.CreateDirectory(Path.Combine(_dir, "shared")).FullName;
        File.SetUnixFileMode(shared, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | extra | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        var listen = Unix(Path.Combine(shared, "app.sock"), "?mode=0660");

        var e = await RefusedAsync(listen);
        Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
        Assert.Contains($"the directory {shared}", e.Message);
        Assert.Contains("writable by other users without the sticky bit", e.Message);
        Assert.Contains($"chmod go-w {shared}", e.Message);
        Assert.False(File.Exists(listen.Path));

        File.SetUnixFileMode(shared, File.GetUnixFileMode(shared) | UnixFileMode.StickyBit); // as /tmp
        using var listener = await AppEndpoint.For(EndpointScheme.Unix).ListenAsync(listen, Options, default);
        Assert.Equal((UnixFileMode)0x1B0, File.GetUnixFileMode(listen.Path!));
    }

    [Fact]
    public async Task A_directory_above_the_socket_that_is_unsafe_is_refused_too()
    {
        var top = Directory.CreateDirectory(Path.Combine(_dir, "top")).FullName;
        var below = Directory.CreateDirectory(Path.Combine(top, "below")).FullName;
        File.SetUnixFileMode(top, (UnixFileMode)0x1FF); // 0777: anyone could rename 'below' and put a link there

        var e = await RefusedAsync(Unix(Path.Combine(below, "app.sock")));

        Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
        Assert.Contains($"the directory {top} (mode 0777)", e.Message);
    }

    [Fact]
    public async Task A_directory_of_another_user_is_refused()
    {
        if (QmTunnel.Engine.Storage.UnixFileStatus.CurrentUserId != 0)
        {
            return; // only root can give a directory away; as another user the test has nothing to set up
        }
        var theirs = Directory.CreateDirectory(Path.Combine(_dir, "theirs")).FullName;
        Assert.Equal(0, Chown(theirs, 65534, 65534));

        var e = await RefusedAsync(Unix(Path.Combine(theirs, "app.sock")));

        Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
        Assert.Contains($"the directory {theirs} belongs to uid 65534", e.Message);
    }

    [Fact]
    public async Task A_file_at_a_pipes_socket_path_that_is_not_a_socket_is_never_deleted()
    {
        var name = "qmt-safe-" + Guid.NewGuid().ToString("N")[..12];
        var path = PipeAppEndpoint.UnixSocketPath(name);
        await File.WriteAllTextAsync(path, "not a pipe");
        try
        {
            var e = await RefusedAsync(EndpointUri.ParseApplication("pipe://" + name, "Listen"));
            Assert.Equal(ErrorIds.BindFailed, e.ErrorId);
            Assert.Contains("exists and is not a socket", e.Message);
            Assert.Equal("not a pipe", await File.ReadAllTextAsync(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_mode_is_never_set_through_a_link_or_on_a_file_that_is_not_the_socket()
    {
        var file = Path.Combine(_dir, "secret");
        File.WriteAllText(file, "x");
        File.SetUnixFileMode(file, UnixFileMode.UserRead);
        var link = Path.Combine(_dir, "swapped.sock");
        File.CreateSymbolicLink(link, file); // what another user would put in place of the socket just bound

        Assert.Contains("was replaced", UnixSocketFile.SetMode(link, 0x1FF));
        Assert.Contains("was replaced", UnixSocketFile.SetMode(file, 0x1FF));
        Assert.Equal(UnixFileMode.UserRead, File.GetUnixFileMode(file));

        var socketPath = Path.Combine(_dir, "real.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        Assert.Null(UnixSocketFile.SetMode(socketPath, 0x180));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socketPath));
    }

    /// <summary>A live server that accepts nothing: its backlog (1) is filled by clients that wait.</summary>
    private static (Socket Server, List<Socket> Waiting) BusyServer(string path)
    {
        var server = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        server.Listen(1);
        var waiting = new List<Socket>();
        for (var i = 0; i < 3; i++)
        {
            var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
            try
            {
                client.Connect(new UnixDomainSocketEndPoint(path));
            }
            catch (SocketException)
            {
                // the backlog is full: this one is not queued
            }
            waiting.Add(client);
        }
        return (server, waiting);
    }

    [Theory]
    [InlineData(EndpointScheme.Unix)]
    [InlineData(EndpointScheme.Pipe)]
    public async Task A_live_server_with_a_full_backlog_is_not_taken_for_a_stale_one(EndpointScheme scheme)
    {
        var name = "qmt-busy-" + Guid.NewGuid().ToString("N")[..12];
        var listen = scheme == EndpointScheme.Unix ? Unix(Path.Combine(_dir, "busy.sock")) : EndpointUri.ParseApplication("pipe://" + name, "Listen");
        var path = scheme == EndpointScheme.Unix ? listen.Path! : PipeAppEndpoint.UnixSocketPath(name);
        var (server, waiting) = BusyServer(path);
        try
        {
            var e = await RefusedAsync(listen);

            Assert.Equal(ErrorIds.PortInUse, e.ErrorId);
            Assert.True(QmTunnel.Engine.Storage.UnixFileStatus.Get(path).IsSocket); // the live server's socket is still there
        }
        finally
        {
            waiting.ForEach(s => s.Dispose());
            server.Dispose();
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, int owner, int group);
}

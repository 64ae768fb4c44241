using System.Security.Cryptography;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Functional;

public sealed class StorageTests : IAsyncLifetime
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), "qmt-store-" + Guid.NewGuid().ToString("n"));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        if (Directory.Exists(_path))
        {
            Directory.Delete(_path, true);
        }
        return Task.CompletedTask;
    }

    private QmTunnelEngine NewEngine() => new(new ServerOptions { AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations, Port = 0, DataPath = _path });

    [Fact]
    public async Task Saved_tunnels_come_back_after_a_restart_and_running_ones_start_again()
    {
        var first = NewEngine();
        await first.StartAsync();
        first.NewTunnel(new TunnelProfile { Name = "runs", Listen = "tcp://127.0.0.1:0", Via = ["qmt+plain://127.0.0.1:9"], Target = "tcp://db.lan:5432", MaxConnections = 7, Credentials = EngineFixture.OfflineCredentials(1) });
        first.NewTunnel(new TunnelProfile { Name = "rests", Listen = "tcp://127.0.0.1:0", Via = ["qmt+plain://127.0.0.1:9"], Target = "tcp://db.lan:5432", Credentials = EngineFixture.OfflineCredentials(1) });
        first.NewTunnel(new TunnelProfile { Name = "volatile", Listen = "tcp://127.0.0.1:0", Via = ["qmt+plain://127.0.0.1:9"], Target = "tcp://db.lan:5432", Persistent = false, Credentials = EngineFixture.OfflineCredentials(1) });
        await first.StartTunnelAsync("runs");
        await first.DisposeAsync();

        var second = NewEngine();
        await second.StartAsync();
        try
        {
            var names = second.GetTunnels().Select(t => t.Name).ToList();
            Assert.Equal(["rests", "runs"], names);
            var runs = second.GetTunnel("RUNS");
            Assert.Equal(7, runs.MaxConnections);
            // Started again: listening (not just "not Stopped", which a tunnel that failed to start is too).
            Assert.Contains(runs.State, new[] { TunnelState.Listening, TunnelState.Established });
            Assert.NotNull(runs.BoundListen);
            Assert.Equal(TunnelState.Stopped, second.GetTunnel("rests").State);
            await second.RemoveTunnelAsync("rests");
            await second.SetTunnelAsync("runs", p => p with { MaxConnections = 9 });
        }
        finally
        {
            await second.DisposeAsync();
        }

        var third = NewEngine();
        await third.StartAsync();
        try
        {
            Assert.Equal(9, Assert.Single(third.GetTunnels()).MaxConnections);
        }
        finally
        {
            await third.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_corrupt_database_stops_the_server_with_the_file_named_and_is_left_untouched()
    {
        Directory.CreateDirectory(_path);
        var file = Path.Combine(_path, "qmtunnel.db");
        var garbage = RandomNumberGenerator.GetBytes(64 * 1024);
        await File.WriteAllBytesAsync(file, garbage);
        var engine = NewEngine();
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => engine.StartAsync());
        Assert.Equal(ErrorIds.DatabaseCorrupt, ex.ErrorId);
        Assert.Contains(file, ex.Message);
        Assert.Contains("backup", ex.Message);
        Assert.False(engine.IsRunning);
        Assert.Equal(garbage, await File.ReadAllBytesAsync(file));
    }

    [Fact]
    public async Task A_second_server_on_the_same_data_path_is_refused()
    {
        var first = NewEngine();
        await first.StartAsync();
        try
        {
            var second = NewEngine();
            var ex = await Assert.ThrowsAsync<QmTunnelException>(() => second.StartAsync());
            Assert.Equal(ErrorIds.DatabaseLocked, ex.ErrorId);
            Assert.Contains("another -DataPath", ex.Message);
        }
        finally
        {
            await first.DisposeAsync();
        }
    }

    [Fact]
    public async Task Management_errors_have_their_ids()
    {
        var engine = NewEngine();
        Assert.Equal(ErrorIds.ServerNotRunning, Assert.Throws<QmTunnelException>(() => engine.GetTunnels()).ErrorId);
        await engine.StartAsync();
        try
        {
            var profile = new TunnelProfile { Name = "x", Listen = "tcp://127.0.0.1:0", Via = ["qmt+plain://127.0.0.1:9"], Target = "tcp://h:1", Credentials = EngineFixture.OfflineCredentials(1) };
            engine.NewTunnel(profile);
            Assert.Equal(ErrorIds.TunnelNameInUse, Assert.Throws<QmTunnelException>(() => engine.NewTunnel(profile with { Name = "X" })).ErrorId);
            Assert.Equal(ErrorIds.TunnelNotFound, Assert.Throws<QmTunnelException>(() => engine.GetTunnel("nope")).ErrorId);
            Assert.Equal(ErrorIds.TunnelNameInvalid, Assert.Throws<QmTunnelException>(() => engine.NewTunnel(profile with { Name = "bad name" })).ErrorId);
            Assert.Equal(ErrorIds.EndpointUriInvalid, Assert.Throws<QmTunnelException>(() => engine.NewTunnel(profile with { Name = "y", Target = "db:5432" })).ErrorId);
            Assert.Equal(ErrorIds.EndpointUriInvalid, Assert.Throws<QmTunnelException>(() => engine.NewTunnel(profile with { Name = "y", Via = ["tcp://h:9200"] })).ErrorId);
            Assert.Equal(ErrorIds.TunnelSettingInvalid, Assert.Throws<QmTunnelException>(() => engine.NewTunnel(profile with { Name = "y", MaxConnections = 0 })).ErrorId);
            // nothing half-created
            Assert.Single(engine.GetTunnels());
            var bad = await Assert.ThrowsAsync<QmTunnelException>(() => engine.SetTunnelAsync("x", p => p with { Listen = "nonsense" }));
            Assert.Equal(ErrorIds.EndpointUriInvalid, bad.ErrorId);
            Assert.Equal("tcp://127.0.0.1:0", engine.GetTunnel("x").Listen);
        }
        finally
        {
            await engine.DisposeAsync();
        }
    }
}

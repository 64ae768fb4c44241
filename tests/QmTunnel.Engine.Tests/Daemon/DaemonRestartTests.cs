using System.Net.Sockets;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>
/// kill -9 of a daemon that holds permanent and on-demand tunnels, then a start on the same data folder (issue 8,
/// section 5): the permanent tunnel is up again by itself (no client needed), the on-demand one is listening and
/// idle, and both carry connections. How long it takes is the benchmark's (recovery row), not this test's.
/// </summary>
public sealed class DaemonRestartTests(Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    /// <summary>Asks the daemon until the tunnel is in <paramref name="state"/> (30 s at most; the log is shown otherwise).</summary>
    private async Task WaitForStateAsync(QmTunnel.Engine.Management.Remote.QmTunnelSession session, string name, TunnelState state, DaemonProcess daemon)
    {
        var seen = TunnelState.Stopped;
        for (var waited = 0; waited < 30_000; waited += 50)
        {
            seen = (await session.GetTunnelAsync(name, CancellationToken.None)).State;
            if (seen == state)
            {
                return;
            }
            await Task.Delay(50);
        }
        output.WriteLine(daemon.Log());
        Assert.Fail($"tunnel {name} is {seen}, not {state}, after 30 s");
    }

    [LinuxFact]
    public async Task After_kill_9_and_a_start_the_permanent_tunnel_is_established_by_itself_and_the_on_demand_one_is_idle()
    {
        var far = await _engines.StartAsync();
        var owner = await DaemonProcess.StartAsync();
        owner.KeepDataPath = true;
        var dataPath = owner.DataPath;
        try
        {
            await using (var session = await owner.ConnectAsync())
            {
                foreach (var (name, mode) in new[] { ("always", TunnelMode.Permanent), ("ondemand", TunnelMode.OnDemand) })
                {
                    await session.NewTunnelAsync(new TunnelProfile { Name = name, Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.Hop(far)], Target = _echo.Uri, Mode = mode },
                        [EngineFixture.AdminLogin], CancellationToken.None);
                    await session.StartTunnelAsync(name, CancellationToken.None);
                }
                await WaitForStateAsync(session, "always", TunnelState.Established, owner);
            }

            await owner.KillAsync();
            await owner.DisposeAsync();
            await using var again = await DaemonProcess.StartAsync(dataPath: dataPath);
            await using var after = await again.ConnectAsync();

            // Nobody connects: the permanent tunnel's chain comes up by itself; the on-demand one waits for a client.
            await WaitForStateAsync(after, "always", TunnelState.Established, again);
            Assert.Equal(TunnelState.Idle, (await after.GetTunnelAsync("ondemand", CancellationToken.None)).State);
            foreach (var name in new[] { "always", "ondemand" })
            {
                var listen = (await after.GetTunnelAsync(name, CancellationToken.None)).BoundListen!;
                Assert.Equal(new byte[] { 4, 2 }, await SocketTestExtensions.EchoAsync(listen, [4, 2]));
            }
        }
        finally
        {
            try
            {
                Directory.Delete(dataPath, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

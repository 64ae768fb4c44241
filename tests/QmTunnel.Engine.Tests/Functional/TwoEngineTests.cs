using QmTunnel.Engine.Management;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>
/// Base of the tests that need two real engines on loopback (A and B, with the test admin, plain links allowed), an
/// echo server and a client pins file of their own; all of it stopped and deleted after each test.
/// </summary>
public abstract class TwoEngineTests : IAsyncLifetime
{
#pragma warning disable SA1401, CA1051 // the tests read these as fields
    protected readonly EngineFixture _engines = new();
    protected readonly EchoServer _echo = new();
    protected readonly string _pins = Path.Combine(Path.GetTempPath(), "qmt-pins-" + Guid.NewGuid().ToString("n") + ".txt");
    protected QmTunnelEngine _a = null!, _b = null!;
#pragma warning restore SA1401, CA1051

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync();
        _b = await _engines.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
        File.Delete(_pins);
    }
}

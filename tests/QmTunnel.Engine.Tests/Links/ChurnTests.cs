using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Tests.Faults;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Churn through outages (issue 8, section 5; the long run is <c>build.ps1 bench</c>'s churn row): many application
/// connections opened, used and closed at once and over again while the tunnel's link is cut. Every connection must
/// work, and afterwards nothing may be left: no stream, no retained frame, no queued byte, no socket.
/// </summary>
public sealed class ChurnTests : TwoEngineTests
{
    [Fact]
    public async Task Connections_opened_and_closed_by_the_thousand_through_cuts_all_work_and_leave_nothing_behind()
    {
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, _b.Port));
        // A thousand at once, and those closing still counted until both ends are done (a while on a busy machine): above
        // the default 1024 streams per link and 100 connections per tunnel.
        _b.SetServerConfig(new ServerConfigChange { MaxStreamsPerLink = 20_000 });
        _a.NewTestTunnel(new TunnelProfile
        {
            Name = "churn", Listen = "tcp://127.0.0.1:0", Via = [$"qmt+plain://127.0.0.1:{proxy.EndPoint.Port}"], Target = _echo.Uri, MaxConnections = 20_000,
        });
        var listen = (await _a.StartTunnelAsync("churn")).BoundListen!;
        var port = new Uri(listen).Port;
        var descriptorsBefore = Directory.GetFiles("/proc/self/fd").Length;

        long done = 0, failed = 0;
        string? firstError = null;
        using var stop = new CancellationTokenSource();
        async Task WorkerAsync(int slot)
        {
            var payload = new byte[] { (byte)slot, (byte)(slot >> 8) };
            var back = new byte[2];
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                    await socket.SendAsync(payload, SocketFlags.None);
                    var read = 0;
                    while (read < 2)
                    {
                        var n = await socket.ReceiveAsync(back.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(TimeSpan.FromSeconds(60));
                        if (n == 0)
                        {
                            throw new IOException($"closed after {read} bytes");
                        }
                        read += n;
                    }
                    Assert.Equal(payload, back);
                    Interlocked.Increment(ref done);
                }
                catch (Exception ex) when (ex is SocketException or IOException or TimeoutException or Xunit.Sdk.XunitException)
                {
                    Interlocked.Increment(ref failed);
                    Interlocked.CompareExchange(ref firstError, ex.Message, null);
                }
            }
        }
        var workers = Enumerable.Range(0, 1000).Select(slot => Task.Run(() => WorkerAsync(slot))).ToList();
        for (var cut = 0; cut < 4; cut++)
        {
            var before = Interlocked.Read(ref done);
            await TunnelTests.WaitUntil(() => Interlocked.Read(ref done) >= before + 2000, 120_000);
            await proxy.CutForAsync(TimeSpan.FromMilliseconds(500), CutMode.Reset);
        }
        var last = Interlocked.Read(ref done);
        await TunnelTests.WaitUntil(() => Interlocked.Read(ref done) >= last + 2000, 120_000);
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(2));

        var errors = string.Join("; ", _a.GetConnections("churn").Where(c => c.Error is not null).GroupBy(c => c.Error).Select(g => $"{g.Count()} × {g.Key}").Take(5));
        Assert.True(failed == 0, $"{failed} of {done + failed} connections failed; the first: {firstError}; the tunnel's last errors: {errors}; last error {_a.GetTunnelStats("churn").LastError}");
        Assert.True(proxy.Cuts >= 4);
        var link = _a.OutboundLinks().Single();
        Assert.True(link.Resumes >= 4, $"{link.Resumes} resumes");
        // Nothing left: streams, connections, frames kept for a resend, bytes counted in the send queues, sockets.
        await TunnelTests.WaitUntil(() => _a.GetTunnelStats("churn").ConnectionsCurrent == 0 && link.StreamCount == 0 && _b.InboundStreamCount == 0, 60_000);
        await TunnelTests.WaitUntil(() => link.RetainedFrames == 0 && link.QueuedBytes == 0 && _b.InboundLinks().All(l => l.RetainedFrames == 0 && l.QueuedBytes == 0), 30_000);
        Assert.Equal(done, _a.GetTunnelStats("churn").ConnectionsTotal);
        await TunnelTests.WaitUntil(() => Directory.GetFiles("/proc/self/fd").Length <= descriptorsBefore + 8, 30_000);
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Diagnostics;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Tests.Diagnostics;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// When accepting fails (out of descriptors above all: the listening socket stays readable and accept fails again at
/// once), the accept loop waits, doubling from 10 ms up to 1 s on the injected clock, and says so once per episode.
/// The failures are injected here; tests/…/Daemon/DaemonLimitsTests makes a real daemon run out of descriptors.
/// </summary>
public sealed class AcceptBackoffTests
{
    /// <summary>A fake clock that counts the timers made on it (the loop's waits), so the test knows when it waits.</summary>
    private sealed class CountingTime : FakeTimeProvider
    {
        private int _timers;
        public int Timers => Volatile.Read(ref _timers);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Interlocked.Increment(ref _timers);
            return base.CreateTimer(callback, state, dueTime, period);
        }
    }

    /// <summary>Never asked: no connection gets as far as a login in these tests.</summary>
    private sealed class NoLogins : ILinkAuthenticator
    {
        public Task<LoginResult> AuthenticateAsync(LoginRequest request, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("no login expected");
    }

    [Theory]
    [InlineData(SocketError.TooManyOpenSockets, true)]
    [InlineData(SocketError.NoBufferSpaceAvailable, true)]
    [InlineData(SocketError.ConnectionAborted, false)]
    [InlineData(SocketError.AccessDenied, false)]
    public Task A_failing_accept_waits_doubling_up_to_a_second_and_is_logged_once_per_episode(SocketError error, bool outOfDescriptors) =>
        BacksOffAsync(() => new SocketException((int)error), error.ToString(), outOfDescriptors);

    [Fact]
    public Task Any_other_accept_failure_backs_off_too_and_never_ends_the_loop() =>
        BacksOffAsync(() => new InvalidOperationException("something unexpected"), "something unexpected", outOfDescriptors: false);

    private static async Task BacksOffAsync(Func<Exception> failure, string named, bool outOfDescriptors)
    {
        var time = new CountingTime();
        var sink = new CapturingLoggerFactory();
        const int failures = 10;
        var calls = 0;
        var next = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        ValueTask<Socket> Accept(CancellationToken cancellationToken)
        {
            var call = Interlocked.Increment(ref calls);
            if (call <= failures)
            {
                throw failure();
            }
            // One connection, then nothing more.
            return new ValueTask<Socket>((call == failures + 1 ? next.Task : new TaskCompletionSource<Socket>().Task).WaitAsync(cancellationToken));
        }
        var acceptor = new LinkAcceptor(Accept,
            new LinkAcceptorSettings { MaxPendingLinks = 10, MaxPendingLinksPerSource = 10, HandshakeTimeout = TimeSpan.FromSeconds(10) },
            new LinkOptions(), new NoLogins(), certificate: null, () => null, _ => { }, sink.CreateLogger("test"), time);
        acceptor.Start();
        try
        {
            int[] expectedMs = [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000];
            for (var k = 1; k <= failures; k++)
            {
                await TunnelTests.WaitUntil(() => Volatile.Read(ref calls) == k && time.Timers == k);
                // Not a moment before its wait is over...
                time.Advance(TimeSpan.FromMilliseconds(expectedMs[k - 1] - 1));
                Assert.Equal(k, Volatile.Read(ref calls));
                // ...and then at once.
                time.Advance(TimeSpan.FromMilliseconds(1));
                await TunnelTests.WaitUntil(() => Volatile.Read(ref calls) == k + 1);
            }
            Assert.Equal(failures, acceptor.AcceptFailures);
            var failing = Assert.Single(sink.Event(EventIds.AcceptFailing));
            Assert.Contains(named, failing.Message);
            Assert.Equal(outOfDescriptors, failing.Message.Contains("out of file descriptors", StringComparison.Ordinal));

            // An accept that works ends the episode, with one line saying how long it lasted.
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen();
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!);
            next.SetResult(await listener.AcceptAsync());
            await TunnelTests.WaitUntil(() => sink.Event(EventIds.AcceptRecovered).Count == 1);
            Assert.Contains($"after {failures} failed accepts", sink.Event(EventIds.AcceptRecovered)[0].Message);
            await TunnelTests.WaitUntil(() => acceptor.PendingCount == 1);
            Assert.Single(sink.Event(EventIds.AcceptFailing));
        }
        finally
        {
            await acceptor.StopAsync();
        }
        Assert.Equal(0, acceptor.PendingCount);
    }
}

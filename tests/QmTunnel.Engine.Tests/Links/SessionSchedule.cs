using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// One random schedule of a link session over a <see cref="MemoryLinkPair"/>, all drawn from one seed: streams opened by
/// either side, each sending a known pseudo-random byte sequence both ways in random chunks, some reset by one side
/// part-way; meanwhile the connection is cut (RST, FIN, in the middle of a write, or black-holed) at random moments and
/// resumed after random delays. Phase 1 moves the data and checks, once all is acknowledged, that every stream's
/// credit balances; phase 2 exchanges the Fins. At the end every byte must have arrived once and in order, resets with
/// their code and reason, and nothing may be left: no stream, no retained frame, no queued byte. The threads make the
/// interleaving differ between runs of a seed; the plan (sizes, chunks, resets, cuts, delays) is the seed's.
/// </summary>
internal sealed class SessionSchedule
{
    private readonly int _seed;
    private readonly Random _random;
    private readonly FakeTimeProvider _clock = new();
    private readonly List<StreamPlan> _plans = [];
    private readonly Dictionary<int, Side> _handlers = [];
    private readonly Dictionary<int, Side> _openers = [];
    private readonly TaskCompletionSource _finGate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _log = new();
    private MemoryLinkPair _pair = null!;

    private SessionSchedule(int seed)
    {
        _seed = seed;
        _random = new Random(seed);
    }

    /// <summary>Resumes made, over all schedules run (a sanity count for the test's output).</summary>
    public static long TotalResumes;

    /// <summary>Runs the schedule of <paramref name="seed"/>; a failure names the seed and what happened.</summary>
    public static async Task RunAsync(int seed)
    {
        var schedule = new SessionSchedule(seed);
        try
        {
            await schedule.RunAsync();
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"schedule seed {seed} failed (replay: QMT_SESSION_SEED={seed}): {ex.Message}\n" +
                $"plan: {string.Join("; ", schedule._plans)}\nevents: {string.Join(", ", schedule._log)}\n{ex}");
        }
    }

    private sealed record StreamPlan(int Index, bool DialerOpens, byte[] FromOpener, byte[] FromHandler, int OpenerChunk, int HandlerChunk,
        int ResetAt, bool ResetByOpener, int ReceiveWindow)
    {
        public override string ToString() => $"s{Index}:{(DialerOpens ? "D" : "A")} {FromOpener.Length}/{FromHandler.Length}" +
            (ResetAt >= 0 ? $" reset by {(ResetByOpener ? "opener" : "handler")} at {ResetAt}" : "");
    }

    /// <summary>One end of one stream: what it sent and received, and how its reading ended.</summary>
    private sealed class Side
    {
        public MuxStream Stream = null!;
        public readonly MemoryStream Received = new();
        public readonly TaskCompletionSource SendDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource DataDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Task Running = Task.CompletedTask;
        public Exception? ReadError;
        public bool Completed;
        public int Sent;
    }

    private async Task RunAsync()
    {
        var window = Pick(4 * 1024, 16 * 1024, 64 * 1024, 1024 * 1024);
        var options = new LinkOptions
        {
            Time = _clock,
            InitialWindow = window,
            MaxQueuedBytes = Pick(16 * 1024, 64 * 1024, 4 * 1024 * 1024, 4 * 1024 * 1024),
            QueueSlackBytes = Pick(16 * 1024, 1024 * 1024),
            ChunkSize = Pick(1024, 8 * 1024, 60 * 1024),
        };
        // Receive timeout off: the clock pump must not lose connections by itself; heartbeat ticks acknowledge.
        var session = new LinkSessionSettings { FailureTolerance = TimeSpan.FromHours(1), HeartbeatInterval = TimeSpan.FromSeconds(1), ReceiveTimeout = TimeSpan.Zero };
        var streams = _random.Next(1, 7);
        for (var i = 0; i < streams; i++)
        {
            var reset = _random.Next(5) == 0;
            var fromOpener = Bytes(i, 0, Length());
            var fromHandler = Bytes(i, 1, Length());
            var byOpener = _random.Next(2) == 0;
            _plans.Add(new StreamPlan(i, _random.Next(2) == 0, fromOpener, fromHandler, _random.Next(1, 9 * 1024), _random.Next(1, 9 * 1024),
                reset ? _random.Next(0, (byOpener ? fromOpener : fromHandler).Length + 1) : -1, byOpener, window + Pick(0, 0, 32 * 1024)));
        }
        var cuts = _random.Next(0, 5);
        var cutterRandom = new Random(_random.Next());
        _pair = MemoryLinkPair.Start(session, options, dialerStreams: HandleAsync, acceptorStreams: HandleAsync);
        using var stop = new CancellationTokenSource();
        var pump = PumpClockAsync(stop.Token);
        try
        {
            var openers = _openers;
            foreach (var plan in _plans)
            {
                var link = plan.DialerOpens ? _pair.Dialer : _pair.Acceptor;
                var side = new Side();
                side.Stream = link.OpenStream(new OpenMessage(StreamProtocol.Tcp, $"s{plan.Index}", "tcp://127.0.0.1:1", [], 1000, OpenOptions.None, "test"),
                    new TrafficCounters(), plan.ReceiveWindow);
                side.Running = RunSideAsync(side, plan.FromOpener, plan.FromHandler.Length, plan.OpenerChunk, plan.ResetByOpener ? plan.ResetAt : -1, plan);
                openers[plan.Index] = side;
            }
            var cutter = CutAsync(cuts, cutterRandom);
            await WaitUntilAsync(() => HandlerSides().Count() == _plans.Count, "every Open arrived");

            // Phase 1: all data moved (or the stream reset); once all is acknowledged, credit balances on every live stream.
            await Within(Task.WhenAll(openers.Values.Concat(HandlerSides()).SelectMany(s => new[] { s.SendDone.Task, s.DataDone.Task })), "phase 1 data");
            await cutter; // the data may be through before the cuts are: let them happen while the session is quiet
            await WaitUntilAsync(Quiet, "phase 1 acknowledged");
            foreach (var plan in _plans.Where(p => p.ResetAt < 0))
            {
                var opener = openers[plan.Index].Stream;
                var handler = HandlerOf(plan.Index)!.Stream;
                Check(opener.SendCredit == handler.ReceiveCredit, $"s{plan.Index} opener→handler credit {opener.SendCredit} vs {handler.ReceiveCredit}");
                Check(handler.SendCredit == opener.ReceiveCredit, $"s{plan.Index} handler→opener credit {handler.SendCredit} vs {opener.ReceiveCredit}");
            }

            // Phase 2: the Fins, with cuts again.
            var finCutter = CutAsync(cutterRandom.Next(0, 3), cutterRandom);
            _finGate.SetResult();
            await Within(Task.WhenAll(openers.Values.Concat(HandlerSides()).Select(s => s.Running)), "phase 2 fins");
            await finCutter;
            await WaitUntilAsync(() => Quiet() && _pair.Dialer.StreamCount == 0 && _pair.Acceptor.StreamCount == 0, "streams forgotten");

            foreach (var plan in _plans)
            {
                CheckStream(plan, openers[plan.Index], HandlerOf(plan.Index)!);
            }
        }
        finally
        {
            await _pair.DisposeAsync();
            stop.Cancel();
            await pump;
        }
        await WaitUntilAsync(() => _pair.Dialer.QueuedBytes == 0 && _pair.Acceptor.QueuedBytes == 0, "queue empty after close", closed: true);
    }

    private IEnumerable<Side> HandlerSides()
    {
        lock (_handlers)
        {
            return [.. _handlers.Values];
        }
    }

    private Side? HandlerOf(int index)
    {
        lock (_handlers)
        {
            return _handlers.GetValueOrDefault(index);
        }
    }

    private bool Quiet() =>
        _pair.Dialer.State == LinkState.Up && _pair.Acceptor.State == LinkState.Up &&
        _pair.Dialer.RetainedFrames == 0 && _pair.Acceptor.RetainedFrames == 0 && _pair.Dialer.QueuedBytes == 0 && _pair.Acceptor.QueuedBytes == 0;

    private Task HandleAsync(MuxStream stream, OpenMessage open)
    {
        var plan = _plans[int.Parse(open.Tunnel.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture)];
        var side = new Side { Stream = stream };
        lock (_handlers)
        {
            Check(_handlers.TryAdd(plan.Index, side), $"s{plan.Index} opened twice");
        }
        stream.SendOpenAck();
        side.Running = RunSideAsync(side, plan.FromHandler, plan.FromOpener.Length, plan.HandlerChunk, plan.ResetByOpener ? -1 : plan.ResetAt, plan);
        return side.Running;
    }

    private async Task RunSideAsync(Side side, byte[] send, int expected, int chunk, int resetAt, StreamPlan plan)
    {
        var random = new Random(Mix(_seed, plan.Index, send.Length, chunk));
        await Task.WhenAll(SendAsync(side, send, chunk, resetAt, plan, random), ReceiveAsync(side, expected));
    }

    private async Task SendAsync(Side side, byte[] send, int chunk, int resetAt, StreamPlan plan, Random random)
    {
        try
        {
            for (var offset = 0; ;)
            {
                if (offset == resetAt)
                {
                    side.Stream.Reset(ProtocolErrorCode.ConnectionReset, $"reset s{plan.Index}");
                    return;
                }
                if (offset == send.Length)
                {
                    break;
                }
                var n = Math.Min(random.Next(1, chunk + 1), send.Length - offset);
                if (resetAt > offset)
                {
                    n = Math.Min(n, resetAt - offset);
                }
                await side.Stream.SendAsync(send.AsMemory(offset, n), default);
                offset += n;
                side.Sent = offset;
            }
            side.SendDone.TrySetResult();
            await _finGate.Task;
            side.Stream.SendFin();
        }
        catch (StreamResetException)
        {
            // the peer reset the stream
        }
        finally
        {
            side.SendDone.TrySetResult();
        }
    }

    private static async Task ReceiveAsync(Side side, int expected)
    {
        var input = side.Stream.Input;
        if (expected == 0)
        {
            side.DataDone.TrySetResult(); // nothing to wait for before the Fin
        }
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                foreach (var segment in result.Buffer)
                {
                    side.Received.Write(segment.Span);
                }
                var n = (int)result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
                if (n > 0)
                {
                    side.Stream.Consumed(n);
                }
                if (side.Received.Length >= expected)
                {
                    side.DataDone.TrySetResult();
                }
                if (result.IsCompleted)
                {
                    side.Completed = true;
                    break;
                }
            }
        }
        catch (Exception ex)
        {
            side.ReadError = ex;
        }
        finally
        {
            side.DataDone.TrySetResult();
            await input.CompleteAsync();
        }
    }

    private void CheckStream(StreamPlan plan, Side opener, Side handler)
    {
        if (plan.ResetAt < 0)
        {
            Check(opener.ReadError is null && handler.ReadError is null, $"s{plan.Index} read failed: {opener.ReadError?.Message}{handler.ReadError?.Message}");
            Check(opener.Completed && handler.Completed, $"s{plan.Index} Fin not received (opener {opener.Completed}, handler {handler.Completed})");
            CheckBytes(plan, "opener→handler", plan.FromOpener, handler.Received, exact: true);
            CheckBytes(plan, "handler→opener", plan.FromHandler, opener.Received, exact: true);
            return;
        }
        var (resetter, peer) = plan.ResetByOpener ? (opener, handler) : (handler, opener);
        var sent = plan.ResetByOpener ? plan.FromOpener : plan.FromHandler;
        Check(peer.Stream.IsReset && peer.Stream.ResetCode == ProtocolErrorCode.ConnectionReset && peer.Stream.ResetReason == $"reset s{plan.Index}",
            $"s{plan.Index}: the reset did not arrive (reset {peer.Stream.IsReset}, {peer.Stream.ResetCode}, {peer.Stream.ResetReason}, completed {peer.Completed})");
        Check(peer.ReadError is StreamResetException && !peer.Completed, $"s{plan.Index}: the peer's read ended with {peer.ReadError?.GetType().Name ?? "a Fin"}");
        CheckBytes(plan, "before the reset", sent.AsSpan(0, plan.ResetAt).ToArray(), peer.Received, exact: false);
        CheckBytes(plan, "to the resetter", plan.ResetByOpener ? plan.FromHandler : plan.FromOpener, resetter.Received, exact: false);
    }

    private static void CheckBytes(StreamPlan plan, string what, byte[] sent, MemoryStream received, bool exact)
    {
        var got = received.ToArray();
        Check(exact ? got.Length == sent.Length : got.Length <= sent.Length, $"s{plan.Index} {what}: {got.Length} bytes received, {sent.Length} sent");
        var differs = got.AsSpan().CommonPrefixLength(sent);
        Check(differs == got.Length, $"s{plan.Index} {what}: byte {differs} of {got.Length} differs from what was sent");
    }

    /// <summary>Cuts the connection <paramref name="count"/> times, each in a random way at a random moment, and resumes after a random delay.</summary>
    private async Task CutAsync(int count, Random random)
    {
        for (var i = 0; i < count; i++)
        {
            await Pause(random);
            var end = random.Next(2) == 0 ? _pair.DialerEnd : _pair.AcceptorEnd;
            var kind = random.Next(5);
            var how = kind == 0 || (kind > 2 && random.Next(2) == 0) ? MemoryCut.Reset : MemoryCut.Close;
            var after = random.Next(0, 20_000);
            Log(kind == 2 ? "black hole" : kind < 2 ? $"cut {how}" : $"cut {how} after {after}");
            if (kind == 2)
            {
                end.BlackHole();
            }
            else if (kind < 2)
            {
                end.Cut(how);
            }
            else
            {
                end.CutAfter(after, how);
            }
            await Pause(random);
            await _pair.ResumeAsync();
            Interlocked.Increment(ref TotalResumes);
            Log("resumed");
        }
    }

    /// <summary>A random pause: none (a yield) or 1 to 3 ms.</summary>
    private static async Task Pause(Random random)
    {
        var ms = random.Next(-2, 4);
        await (ms > 0 ? Task.Delay(ms) : Task.Run(static () => { }));
    }

    /// <summary>Heartbeat ticks (a quarter second each) while the schedule runs: they acknowledge and ping.</summary>
    private async Task PumpClockAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            _clock.Advance(TimeSpan.FromMilliseconds(250));
            await Task.Delay(1, CancellationToken.None);
        }
    }

    private async Task Within(Task task, string what)
    {
        await WaitUntilAsync(() => task.IsCompleted, what);
        await task;
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what, bool closed = false)
    {
        var deadline = Environment.TickCount64 + 20_000;
        while (!condition())
        {
            if (!closed && (_pair.Dialer.IsClosed || _pair.Acceptor.IsClosed))
            {
                throw new InvalidOperationException($"{what}: the session ended; {State()}");
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"{what}: not reached in 20 s; {State()}");
            }
            await Task.Delay(1);
        }
    }

    private string State()
    {
        string Describe(Side? side) => side is null ? "none" : $"id {side.Stream.Id} sent {side.Sent} got {side.Received.Length} " +
            $"done {side.SendDone.Task.IsCompleted}/{side.DataDone.Task.IsCompleted} credit {side.Stream.SendCredit}/{side.Stream.ReceiveCredit} " +
            $"reset {side.Stream.IsReset} fin {side.Stream.FinReceived}/{side.Stream.FinSent}";
        string Of(string name, Link link) => $"{name} {link.State} retained {link.RetainedFrames} queued {link.QueuedBytes} streams {link.StreamCount} ({link.CloseReason})";
        return $"{Of("dialer", _pair.Dialer)}; {Of("acceptor", _pair.Acceptor)}; " + string.Join("; ", _plans.Select(plan =>
            $"s{plan.Index}: opener {Describe(_openers.GetValueOrDefault(plan.Index))}, handler {Describe(HandlerOf(plan.Index))}"));
    }

    private void Log(string what) => _log.Enqueue(what);

    /// <summary>A direction's length: empty (only the Fin) one time in eight, else up to 40 KiB.</summary>
    private int Length() => _random.Next(8) == 0 ? 0 : _random.Next(1, 40 * 1024);

    private int Pick(params int[] values) => values[_random.Next(values.Length)];

    private byte[] Bytes(int stream, int direction, int length)
    {
        var bytes = new byte[length];
        new Random(Mix(_seed, stream, direction, length)).NextBytes(bytes);
        return bytes;
    }

    /// <summary>A seed from several numbers, the same in every process (HashCode is randomized per process).</summary>
    private static int Mix(params int[] values) => values.Aggregate(17, (hash, value) => unchecked(hash * 1_000_003 + value));

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new Xunit.Sdk.XunitException(message);
        }
    }
}

using System.Diagnostics;

namespace QmTunnel.Fuzz;

/// <summary>One broken property: the case that broke it and how to run it again.</summary>
public sealed record FuzzFinding(string Target, ulong Seed, string Case, FuzzFailureKind Kind, string Message, byte[] Input, string? SavedTo)
{
    /// <summary>The command that runs this case again (random cases; corpus and seed inputs are files or code).</summary>
    public string Replay => long.TryParse(Case, out _) ? $"./build.ps1 fuzz -Target {Target} -Seed {Seed} -Case {Case}" : $"corpus/seed input {Case}";

    public override string ToString() =>
        $"{Target} {Kind} (seed {Seed}, case {Case}, {Input.Length} bytes{(SavedTo is null ? "" : ", saved to " + SavedTo)}): {Message}\n  replay: {Replay}";
}

/// <summary>What a run of one target did.</summary>
public sealed record FuzzReport(string Target, ulong Seed, long Cases, TimeSpan Elapsed, IReadOnlyList<FuzzFinding> Findings)
{
    /// <summary>How the cases ended, by outcome (see <see cref="FuzzTarget.Outcomes"/>).</summary>
    public IReadOnlyDictionary<string, long> Outcomes { get; init; } = new Dictionary<string, long>();

    public double ExecPerSecond => Elapsed.TotalSeconds > 0 ? Cases / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// Runs a <see cref="FuzzTarget"/>: its seeds and corpus as they are, then random cases, each a generated valid input
/// (one in five) or a mutation of one (or of a seed or corpus input). Case <c>i</c> of seed <c>s</c> is drawn from a
/// <see cref="Random"/> seeded by (s, target, i) alone, so any case is replayed by its numbers. Cases run on a worker
/// thread; the calling thread is the watchdog: a case older than the target's CaseTimeout is a hang, reported with its
/// input, and the run ends there (the stuck worker is a background thread, left behind). Failing inputs are written to
/// <see cref="FailureFolder"/> to be checked in as regression inputs (corpus/&lt;target&gt;/).
/// </summary>
public sealed class FuzzRunner(FuzzTarget target, ulong seed)
{
    private readonly List<FuzzFinding> _findings = [];
    private readonly HashSet<string> _seen = [];
    private long _startedAt;
    private string _case = "";
    private byte[] _input = [];
    private List<byte[]>? _bases;

    /// <summary>Regression inputs (corpus/&lt;target&gt;/*.bin): run first, and mutated like seeds.</summary>
    public IReadOnlyList<(string Name, byte[] Input)> Corpus { get; init; } = [];

    /// <summary>Where failing inputs are written (a folder per target); null: not written.</summary>
    public string? FailureFolder { get; init; }

    /// <summary>Distinct findings kept (by kind, exception type and message start); the run goes on after each.</summary>
    public int MaxFindings { get; init; } = 20;

    /// <summary>The seeds and corpus as they are, then <paramref name="iterations"/> random cases or until <paramref name="timeLimit"/>.</summary>
    public FuzzReport Run(long iterations, TimeSpan? timeLimit = null)
    {
        var clock = Stopwatch.StartNew();
        long done = 0;
        var worker = new Thread(() =>
        {
            WarmUp();
            var fixedInputs = target.Seeds().Select((s, i) => ($"seed:{i}", s)).Concat(Corpus.Select(c => ($"corpus:{c.Name}", c.Input)));
            foreach (var (name, input) in fixedInputs)
            {
                RunCase(name, input);
                done++;
            }
            for (long i = 0; i < iterations && _findings.Count < MaxFindings; i++)
            {
                if (timeLimit is { } limit && clock.Elapsed > limit)
                {
                    break;
                }
                var name = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                byte[] input;
                try
                {
                    input = InputOf(i);
                }
                catch (Exception ex)
                {
                    Record(name, [], new FuzzFailure(FuzzFailureKind.Crash, $"the harness could not make the input: {ex}", ex));
                    continue;
                }
                RunCase(name, input);
                done++;
            }
        })
        { IsBackground = true, Name = "fuzz " + target.Name };
        worker.Start();
        while (!worker.Join(50))
        {
            var started = Volatile.Read(ref _startedAt);
            if (started != 0 && Stopwatch.GetElapsedTime(started) > target.CaseTimeout)
            {
                string name;
                byte[] input;
                lock (_findings)
                {
                    name = _case;
                    input = _input;
                }
                Record(name, input, new FuzzFailure(FuzzFailureKind.Hang, $"the case has run for more than {target.CaseTimeout.TotalSeconds:0.#} s"));
                break;
            }
        }
        return new FuzzReport(target.Name, seed, Interlocked.Read(ref done), clock.Elapsed, [.. _findings]) { Outcomes = target.Outcomes };
    }

    /// <summary>The input of random case <paramref name="index"/> (what a replay runs).</summary>
    public byte[] InputOf(long index)
    {
        var random = new Random(CaseSeed(seed, target.Name, index));
        _bases ??= [.. target.Seeds(), .. Corpus.Select(c => c.Input)];
        var roll = random.Next(10);
        if (roll < 2)
        {
            return target.Generate(random);
        }
        var useBase = roll >= 8 && _bases.Count > 0;
        var input = useBase ? _bases[random.Next(_bases.Count)] : target.Generate(random);
        var other = random.Next(2) == 0 || _bases.Count == 0 ? target.Generate(random) : _bases[random.Next(_bases.Count)];
        return Mutator.Mutate(input, other, random);
    }

    /// <summary>The seed of one case's <see cref="Random"/>: splitmix64 over the run seed, the target's name and the index.</summary>
    public static int CaseSeed(ulong seed, string target, long index)
    {
        var h = 14695981039346656037UL;
        foreach (var c in target)
        {
            h = (h ^ c) * 1099511628211UL;
        }
        var x = seed ^ h ^ ((ulong)index * 0x9E3779B97F4A7C15UL);
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return (int)((x ^ (x >> 31)) & 0x7fff_ffff);
    }

    /// <summary>First calls allocate for JIT, statics and pools: run a few inputs without the allocation check.</summary>
    private void WarmUp()
    {
        target.CheckAllocations = false;
        try
        {
            var seeds = target.Seeds().ToList();
            for (var i = 0; i < seeds.Count + 50; i++)
            {
                var input = i < seeds.Count ? seeds[i] : InputOf(-1 - i);
                lock (_findings)
                {
                    (_case, _input) = ($"warm-up:{i}", input);
                }
                // Watched like any case: a seed that hangs is reported from here.
                Volatile.Write(ref _startedAt, Stopwatch.GetTimestamp());
                try
                {
                    target.Execute(input);
                }
                catch (Exception)
                {
                    // reported when the same inputs run for real
                }
                finally
                {
                    Volatile.Write(ref _startedAt, 0);
                }
            }
        }
        finally
        {
            target.CheckAllocations = true;
            target.ResetOutcomes();
        }
    }

    private void RunCase(string name, byte[] input)
    {
        lock (_findings)
        {
            _case = name;
            _input = input;
        }
        Volatile.Write(ref _startedAt, Stopwatch.GetTimestamp());
        try
        {
            Execute(input);
        }
        catch (Exception ex)
        {
            Record(name, input, ex);
        }
        finally
        {
            Volatile.Write(ref _startedAt, 0);
        }
    }

    private void Execute(byte[] input)
    {
        try
        {
            target.Execute(input);
        }
        catch (FuzzFailure f) when (f.Kind == FuzzFailureKind.Allocation)
        {
            // A first use (a pool bucket, a cache) allocates once; a parser that allocates what the input says does it again.
            target.Execute(input);
        }
    }

    private void Record(string name, byte[] input, Exception ex)
    {
        var failure = ex as FuzzFailure ?? new FuzzFailure(FuzzFailureKind.Crash, $"{ex.GetType().FullName}: {ex.Message}\n{FirstFrames(ex)}", ex);
        lock (_findings)
        {
            var key = $"{failure.Kind}|{failure.InnerException?.GetType().FullName}|{failure.Message[..Math.Min(failure.Message.Length, 60)]}";
            if (!_seen.Add(key) || _findings.Count >= MaxFindings)
            {
                return;
            }
            _findings.Add(new FuzzFinding(target.Name, seed, name, failure.Kind, failure.Message, input, Save(name, failure.Kind, input)));
        }
    }

    private string? Save(string name, FuzzFailureKind kind, byte[] input)
    {
        if (FailureFolder is null)
        {
            return null;
        }
        var folder = Path.Combine(FailureFolder, target.Name);
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, $"{kind.ToString().ToLowerInvariant()}-{seed}-{name.Replace(':', '-')}.bin");
        File.WriteAllBytes(path, input);
        return path;
    }

    private static string FirstFrames(Exception ex) =>
        string.Join('\n', (ex.StackTrace ?? "").Split('\n').Take(6).Select(l => "  " + l.Trim()));
}

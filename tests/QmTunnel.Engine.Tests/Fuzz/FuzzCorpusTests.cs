using System.Globalization;
using QmTunnel.Fuzz;
using QmTunnel.Fuzz.Targets;

namespace QmTunnel.Engine.Tests.Fuzz;

/// <summary>
/// The fuzz targets in CI (docs/protocol.md, "Fuzzing"): every seed and checked-in regression input
/// (tests/QmTunnel.Fuzz/corpus/&lt;target&gt;/*.bin), then a short random run with a new seed each time (set
/// QMTUNNEL_FUZZ_SEED to repeat one). A failure names the seed and the case, and `build.ps1 fuzz -Target t -Seed s
/// -Case c` runs that case again. The long run is `build.ps1 fuzz`.
/// </summary>
public sealed class FuzzCorpusTests
{
    /// <summary>A few seconds in all on 2 cores; the handshake (a connection per case) gets less.</summary>
    public static TheoryData<string> Targets() => new(FuzzTargets.Names);

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_seed_and_corpus_input_of_the_target_keeps_every_property(string name)
    {
        var target = FuzzTargets.Create(name);
        try
        {
            var corpus = FuzzTargets.LoadCorpus(FuzzTargets.DefaultCorpusRoot, name);
            var report = new FuzzRunner(target, seed: 0) { Corpus = corpus }.Run(iterations: 0);

            Assert.True(report.Findings.Count == 0, Describe(report));
            Assert.Equal(target.Seeds().Count() + corpus.Count, report.Cases);
        }
        finally
        {
            (target as IDisposable)?.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void A_short_random_run_of_the_target_finds_nothing(string name)
    {
        var seed = Environment.GetEnvironmentVariable("QMTUNNEL_FUZZ_SEED") is { Length: > 0 } text
            ? ulong.Parse(text, CultureInfo.InvariantCulture)
            : (ulong)Random.Shared.NextInt64();
        var target = FuzzTargets.Create(name);
        try
        {
            // A fixed number of random cases besides the seeds and corpus (a few hundred; the handshake, a connection each,
            // fewer), not a time budget: on a busy machine a time budget ran too few to count.
            var random = name == "handshake" ? 30 : 300;
            var report = new FuzzRunner(target, seed).Run(iterations: random);

            Assert.True(report.Findings.Count == 0, Describe(report));
            Assert.True(report.Cases >= target.Seeds().Count() + random, $"only {report.Cases} cases ran (seed {seed})");
        }
        finally
        {
            (target as IDisposable)?.Dispose();
        }
    }

    private static string Describe(FuzzReport report) =>
        $"{report.Findings.Count} findings in {report.Cases} cases of {report.Target} (seed {report.Seed}):\n" +
        string.Join("\n", report.Findings.Select(f => f.ToString()));
}

using System.Diagnostics;
using System.Globalization;
using QmTunnel.Fuzz;
using QmTunnel.Fuzz.Targets;

// qmtunnel-fuzz [--iterations N] [--seed S] [--target NAME[,NAME]] [--case I] [--corpus DIR] [--failures DIR]
// The long run of build.ps1 fuzz: N inputs shared among the targets by weight (the handshake, a connection per case,
// gets 1/20 of a parser's share), per-target counts, exec/s and findings; exit code 1 on any finding.
// --case I runs random case I of seed S alone (a replay) and writes its input to the failures folder.
var options = Args.Parse(args);
var seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
var names = options.Targets ?? FuzzTargets.Names;
var corpusRoot = options.Corpus ?? FuzzTargets.DefaultCorpusRoot;
var failures = options.Failures ?? Path.Combine(Environment.CurrentDirectory, "out", "fuzz");
Console.WriteLine(options.Case is { } replay
    ? $"qmtunnel-fuzz: case {replay} of seed {seed} of {string.Join(", ", names)}; failing inputs to {failures}"
    : $"qmtunnel-fuzz: seed {seed}, {options.Iterations:N0} inputs over {string.Join(", ", names)}; corpus {corpusRoot}; failing inputs to {failures}");

var targets = names.Select(FuzzTargets.Create).ToList();
var totalWeight = targets.Sum(t => 1.0 / t.Weight);
var findings = 0;
long total = 0;
var clock = Stopwatch.StartNew();
foreach (var target in targets)
{
    var runner = new FuzzRunner(target, seed) { Corpus = FuzzTargets.LoadCorpus(corpusRoot, target.Name), FailureFolder = failures };
    FuzzReport report;
    if (options.Case is { } index)
    {
        var input = runner.InputOf(index);
        Directory.CreateDirectory(Path.Combine(failures, target.Name));
        var path = Path.Combine(failures, target.Name, $"case-{seed}-{index}.bin");
        File.WriteAllBytes(path, input);
        Console.WriteLine($"  {target.Name}: case {index} is {input.Length} bytes, written to {path}");
        report = new FuzzRunner(target, seed) { Corpus = [($"case {index}", input)], FailureFolder = failures }.Run(0);
    }
    else
    {
        var share = (long)Math.Ceiling(options.Iterations * (1.0 / target.Weight) / totalWeight);
        report = runner.Run(share);
    }
    total += report.Cases;
    findings += report.Findings.Count;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"  {report.Target,-18} {report.Cases,10:N0} inputs {report.Elapsed.TotalSeconds,8:0.0} s {report.ExecPerSecond,10:N0} exec/s  {report.Findings.Count} findings"));
    var ended = report.Outcomes.Values.Sum();
    Console.WriteLine("    " + string.Join(", ", report.Outcomes.OrderByDescending(o => o.Value).Take(12)
        .Select(o => string.Create(CultureInfo.InvariantCulture, $"{o.Key} {100.0 * o.Value / Math.Max(ended, 1):0.#}%"))));
    if (target.PeakAllocation.Allocated > 0)
    {
        var (share, allocated, length) = target.PeakAllocation;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    nearest the allocation budget: {allocated:N0} bytes for {length:N0} input bytes ({100 * share:0.#}% of its budget)"));
    }
    foreach (var finding in report.Findings)
    {
        Console.WriteLine("    " + finding.ToString().Replace("\n", "\n    "));
    }
    (target as IDisposable)?.Dispose();
}
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"qmtunnel-fuzz: {total:N0} inputs in {clock.Elapsed.TotalSeconds:0.0} s ({total / Math.Max(clock.Elapsed.TotalSeconds, 0.001):N0} exec/s), {findings} findings, seed {seed}"));
return findings == 0 ? 0 : 1;

/// <summary>The command line of qmtunnel-fuzz.</summary>
internal sealed record Args(long Iterations, ulong? Seed, IReadOnlyList<string>? Targets, long? Case, string? Corpus, string? Failures)
{
    public static Args Parse(string[] args)
    {
        var result = new Args(1_000_000, null, null, null, null, null);
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            result = args[i] switch
            {
                "--iterations" => result with { Iterations = long.Parse(value, CultureInfo.InvariantCulture) },
                "--seed" => result with { Seed = ulong.Parse(value, CultureInfo.InvariantCulture) },
                "--target" => result with { Targets = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--case" => result with { Case = long.Parse(value, CultureInfo.InvariantCulture) },
                "--corpus" => result with { Corpus = value },
                "--failures" => result with { Failures = value },
                _ => throw new ArgumentException($"unknown option {args[i]}; use --iterations, --seed, --target, --case, --corpus, --failures"),
            };
            i++;
        }
        return result;
    }
}

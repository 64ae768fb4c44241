using System.Diagnostics;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>
/// Exactly once and in order (docs/protocol.md, "Session resume"): random schedules of streams, resets and connection
/// cuts over an in-memory link pair (<see cref="SessionSchedule"/>). CI runs 200 schedules from a fresh base seed;
/// <c>QMT_SESSION_SCHEDULES=10000</c> runs more, <c>QMT_SESSION_SEED=n</c> replays schedule n (alone, unless a count is
/// given too; <c>QMT_SESSION_REPEAT=1</c> runs that one seed the count of times). Schedules run four at a time; a failure
/// names its seed.
/// </summary>
public sealed class SessionPropertyTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int Parallel = 4;

    [Fact]
    public async Task Every_byte_arrives_once_and_in_order_and_nothing_is_left_through_random_cuts_and_resumes()
    {
        var seedGiven = int.TryParse(Environment.GetEnvironmentVariable("QMT_SESSION_SEED"), out var baseSeed);
        var count = int.TryParse(Environment.GetEnvironmentVariable("QMT_SESSION_SCHEDULES"), out var n) ? n : seedGiven ? 1 : 200;
        var repeat = Environment.GetEnvironmentVariable("QMT_SESSION_REPEAT") == "1";
        if (!seedGiven)
        {
            baseSeed = Random.Shared.Next(0, int.MaxValue - count);
        }
        output.WriteLine($"schedules {count} from seed {baseSeed}");
        var resumesBefore = Interlocked.Read(ref SessionSchedule.TotalResumes);
        var watch = Stopwatch.StartNew();
        // Four at a time: a schedule mostly waits (for heartbeat ticks, pauses between cuts), so they overlap well.
        for (var i = 0; i < count; i += Parallel)
        {
            await Task.WhenAll(Enumerable.Range(i, Math.Min(Parallel, count - i)).Select(k => SessionSchedule.RunAsync(repeat ? baseSeed : baseSeed + k)));
        }
        var resumes = Interlocked.Read(ref SessionSchedule.TotalResumes) - resumesBefore;
        output.WriteLine($"{count} schedules, {resumes} resumes, in {watch.Elapsed.TotalSeconds:0.0} s");
        Assert.True(count < 20 || resumes > count / 2, $"only {resumes} resumes in {count} schedules: the cuts did not happen");
    }
}

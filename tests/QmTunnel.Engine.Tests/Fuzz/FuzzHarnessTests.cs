using System.Buffers.Binary;
using QmTunnel.Engine.Protocol;
using QmTunnel.Fuzz;
using QmTunnel.Fuzz.Targets;

namespace QmTunnel.Engine.Tests.Fuzz;

/// <summary>
/// The harness itself: each property it checks fails on a parser made to break it (so a green fuzz run means
/// something), cases replay from their numbers alone, and every control message type has a generator.
/// </summary>
public sealed class FuzzHarnessTests
{
    [Fact]
    public void A_parser_that_allocates_a_length_it_read_before_checking_it_is_reported()
    {
        var report = new FuzzRunner(new Canary(CanaryFault.AllocatesTheLength), seed: 7).Run(iterations: 2_000);

        Assert.NotEmpty(report.Findings);
        Assert.All(report.Findings, f => Assert.Equal(FuzzFailureKind.Allocation, f.Kind));
        Assert.Contains("the budget is", report.Findings[0].Message);
    }

    [Fact]
    public void A_parser_that_throws_an_undocumented_exception_is_reported_with_a_case_that_replays()
    {
        var report = new FuzzRunner(new Canary(CanaryFault.IndexesPastTheEnd), seed: 11).Run(iterations: 2_000);

        var finding = Assert.Single(report.Findings);
        Assert.Equal(FuzzFailureKind.Crash, finding.Kind);
        Assert.Contains(nameof(IndexOutOfRangeException), finding.Message);
        Assert.Contains($"-Seed 11 -Case {finding.Case}", finding.Replay);
        // The numbers alone give the same input again, in another runner.
        var replayed = new FuzzRunner(new Canary(CanaryFault.IndexesPastTheEnd), seed: 11).InputOf(long.Parse(finding.Case, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(finding.Input, replayed);
    }

    [Fact]
    public void A_parser_that_never_returns_is_reported_as_a_hang_by_the_watchdog()
    {
        using var release = new ManualResetEventSlim();
        var canary = new Canary(CanaryFault.Blocks) { Release = release };
        try
        {
            var report = new FuzzRunner(canary, seed: 3).Run(iterations: 2_000);

            var finding = Assert.Single(report.Findings);
            Assert.Equal(FuzzFailureKind.Hang, finding.Kind);
            Assert.Equal(0xEE, finding.Input[0]);
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public void Two_messages_that_differ_in_one_byte_of_a_field_are_a_round_trip_failure()
    {
        var a = new AuthOkMessage("u", "g", [1, 2, 3]);
        var b = new AuthOkMessage("u", "g", [1, 2, 4]);

        ControlReadTarget.CheckSameMessage(a, a with { ServerSignature = [1, 2, 3] });
        var failure = Assert.Throws<FuzzFailure>(() => ControlReadTarget.CheckSameMessage(a, b));
        Assert.Equal(FuzzFailureKind.RoundTrip, failure.Kind);
    }

    [Fact]
    public void Every_control_message_type_of_the_engine_has_a_generator()
    {
        var messageTypes = typeof(ControlMessage).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(ControlMessage)) && !t.IsAbstract).ToList();

        Assert.NotEmpty(messageTypes);
        Assert.All(messageTypes, t => Assert.True(ControlGenerators.All.ContainsKey(t),
            $"{t.Name} has no generator: add one to tests/QmTunnel.Fuzz/Targets/ControlGenerators.cs so the fuzz targets cover it"));
    }

    [Fact]
    public void Generated_control_messages_of_every_type_are_valid_and_round_trip()
    {
        var random = new Random(5);
        foreach (var (type, generate) in ControlGenerators.All)
        {
            for (var i = 0; i < 200; i++)
            {
                var message = generate(random, true);
                Assert.IsType(type, message);
                ControlReadTarget.CheckSameMessage(message, ControlCodec.Read(message.FrameType, new(ControlCodec.ToArray(message))));
            }
        }
    }

    private enum CanaryFault { AllocatesTheLength, IndexesPastTheEnd, Blocks }

    /// <summary>A parser with one planted fault, found by the runner only when the property check works.</summary>
    private sealed class Canary(CanaryFault fault) : FuzzTarget
    {
        public ManualResetEventSlim? Release { get; init; }

        public override string Name => "canary";

        public override TimeSpan CaseTimeout => TimeSpan.FromMilliseconds(300);

        public override IEnumerable<byte[]> Seeds() => fault == CanaryFault.Blocks ? [[0xEE]] : [];

        // A u16 length, then that many bytes.
        public override byte[] Generate(Random random)
        {
            var body = new byte[random.Next(0, 40)];
            random.NextBytes(body);
            return [(byte)(body.Length >> 8), (byte)body.Length, .. body];
        }

        public override void Execute(byte[] input)
        {
            var before = AllocatedBytes();
            switch (fault)
            {
                case CanaryFault.AllocatesTheLength when input.Length >= 2:
                    // Allocates what the input announces before checking that the bytes are there.
                    var buffer = new byte[BinaryPrimitives.ReadUInt16BigEndian(input) * 4];
                    GC.KeepAlive(buffer);
                    break;
                case CanaryFault.IndexesPastTheEnd when input.Length >= 2:
                    _ = input[2 + BinaryPrimitives.ReadUInt16BigEndian(input)];
                    break;
                case CanaryFault.Blocks when input.Length > 0 && input[0] == 0xEE:
                    Release!.Wait();
                    break;
            }
            CheckAllocation(before, AllocationSlack + 16L * input.Length, "canary", input.Length);
        }
    }
}

namespace QmTunnel.Fuzz;

/// <summary>Which property a fuzz case broke.</summary>
public enum FuzzFailureKind
{
    /// <summary>An exception the parser does not document came out (IndexOutOfRange, NullReference, Overflow...).</summary>
    Crash,
    /// <summary>The case did not end within the target's <see cref="FuzzTarget.CaseTimeout"/> (seen by the watchdog).</summary>
    Hang,
    /// <summary>The parser allocated more than the target's budget for an input of that length.</summary>
    Allocation,
    /// <summary>A valid input did not survive Write(Read(x)) == x, or a generated message Read(Write(m)) == m.</summary>
    RoundTrip,
}

/// <summary>A broken property, thrown by a target (or made by the runner for a hang).</summary>
public sealed class FuzzFailure(FuzzFailureKind kind, string message, Exception? cause = null) : Exception(message, cause)
{
    public FuzzFailureKind Kind { get; } = kind;
}

/// <summary>
/// One parser under fuzz: how to make a valid input, which hand-made boundary inputs to start from, and how to run one
/// input while checking the properties (documented exceptions only, allocation within budget, round trips). The runner
/// (<see cref="FuzzRunner"/>) mutates, times and reports; a target does no I/O besides its own parser's. It is not
/// thread-safe: one runner drives it.
/// </summary>
public abstract class FuzzTarget
{
    /// <summary>Short name: the corpus folder (corpus/&lt;name&gt;) and the -Target of build.ps1 fuzz.</summary>
    public abstract string Name { get; }

    /// <summary>Longest one case may run before the watchdog calls it a hang.</summary>
    public virtual TimeSpan CaseTimeout => TimeSpan.FromSeconds(2);

    /// <summary>Relative cost of one case (the long run gives each target iterations / weight of the total).</summary>
    public virtual int Weight => 1;

    /// <summary>A valid input (its round trip must hold), drawn from <paramref name="random"/> only.</summary>
    public abstract byte[] Generate(Random random);

    /// <summary>Hand-made inputs at the limits (empty, longest, one past), run in every run and used as mutation bases.</summary>
    public virtual IEnumerable<byte[]> Seeds() => [];

    /// <summary>
    /// Runs one input. Returns when the parser accepted or refused it as documented; throws <see cref="FuzzFailure"/> when
    /// a property broke. Any other exception that escapes is an undocumented exception of the parser: a crash.
    /// </summary>
    public abstract void Execute(byte[] input);

    private readonly Dictionary<string, long> _outcomes = new(StringComparer.Ordinal);

    /// <summary>How the cases ended (refused, accepted, logged in...): shows which paths the inputs reach.</summary>
    public IReadOnlyDictionary<string, long> Outcomes
    {
        get
        {
            lock (_outcomes)
            {
                return new Dictionary<string, long>(_outcomes);
            }
        }
    }

    /// <summary>Counts one case that ended as <paramref name="outcome"/> (call it outside a measured parse).</summary>
    protected void Outcome(string outcome)
    {
        lock (_outcomes)
        {
            _outcomes[outcome] = _outcomes.GetValueOrDefault(outcome) + 1;
        }
    }

    /// <summary>Forgets the outcomes counted so far (the runner's warm-up).</summary>
    internal void ResetOutcomes()
    {
        lock (_outcomes)
        {
            _outcomes.Clear();
        }
    }

    /// <summary><see cref="Outcome"/> for helpers shared by several targets.</summary>
    internal void OutcomeOf(string outcome) => Outcome(outcome);

    /// <summary>False while the runner warms the target up (first calls allocate for JIT and caches).</summary>
    internal bool CheckAllocations { get; set; } = true;

    /// <summary>Allowance for what a refusal costs whatever the input: the exception, its message and stack trace.</summary>
    public const long AllocationSlack = 16 * 1024;

    /// <summary>The parse that came nearest its budget: its share of the budget, bytes allocated, input length.</summary>
    public (double Share, long Allocated, int InputLength) PeakAllocation { get; private set; }

    /// <summary>Bytes allocated on this thread so far (take it right before the parse).</summary>
    protected static long AllocatedBytes() => GC.GetAllocatedBytesForCurrentThread();

    /// <summary>
    /// Fails the case when the parse since <paramref name="before"/> allocated more than <paramref name="budget"/>
    /// (<see cref="AllocationSlack"/> + what the parser may allocate per input byte, derived from its code).
    /// </summary>
    protected void CheckAllocation(long before, long budget, string parser, int inputLength)
    {
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // The peak of parses within budget (one over it is retried once by the runner, then reported).
        if (CheckAllocations && allocated <= budget && (double)allocated / budget > PeakAllocation.Share)
        {
            PeakAllocation = ((double)allocated / budget, allocated, inputLength);
        }
        if (CheckAllocations && allocated > budget)
        {
            throw new FuzzFailure(FuzzFailureKind.Allocation,
                $"{parser} allocated {allocated} bytes for {inputLength} input bytes; the budget is {budget}");
        }
    }

    /// <summary><see cref="CheckAllocation"/> for helpers shared by several targets.</summary>
    internal void CheckAllocationOf(long before, long budget, string parser, int inputLength) => CheckAllocation(before, budget, parser, inputLength);

    public override string ToString() => Name;
}

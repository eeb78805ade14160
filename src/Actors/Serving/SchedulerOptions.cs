namespace ActorRing.Actors.Serving;

/// <summary>The scheduler's limits.</summary>
/// <param name="MaxBatch">Sequences running at once (each gets one token per step once its prompt is in).</param>
/// <param name="PrefillChunk">Most prompt tokens of one sequence in one step, so a long prompt is spread over
/// several steps and never stalls the running streams for long.</param>
/// <param name="StepTokens">Most tokens in one step: every running decode first, then prefill chunks in
/// arrival order with what is left. Null = <paramref name="MaxBatch"/> + <paramref name="PrefillChunk"/>.</param>
/// <param name="PrefixCaching">Share the KV blocks of prompt prefixes seen before and skip their prefill
/// (off: <c>--no-prefix-cache</c>, for comparison).</param>
public sealed record SchedulerOptions(int MaxBatch = 16, int PrefillChunk = 256, int? StepTokens = null, bool PrefixCaching = true)
{
    public int EffectiveStepTokens => StepTokens ?? MaxBatch + PrefillChunk;

    /// <exception cref="ArgumentException">A limit names its field, value and fix.</exception>
    public SchedulerOptions Validate()
    {
        if (MaxBatch < 1) throw new ArgumentException($"--max-batch must be at least 1, got {MaxBatch}");
        if (PrefillChunk < 1) throw new ArgumentException($"--prefill-chunk must be at least 1, got {PrefillChunk}");
        if (EffectiveStepTokens < MaxBatch)
            throw new ArgumentException($"the step token budget {EffectiveStepTokens} is below --max-batch {MaxBatch}: every running sequence needs a token per step");
        return this;
    }
}

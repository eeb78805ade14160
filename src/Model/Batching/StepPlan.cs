namespace ActorRing.Model.Batching;

/// <summary>
/// One sequence's share of a step: <paramref name="Tokens"/> (a prefill chunk, or the one token a decode
/// feeds) at positions <paramref name="StartPosition"/>.. of the sequence, whose keys and values live in the
/// KV-cache blocks of <paramref name="BlockTable"/> (block i holds positions [i·B, (i+1)·B) for block size B).
/// The table covers at least every position up to the last new token. <paramref name="NeedsLogits"/>: the
/// step's last token of this sequence is sampled (a decode, or the last chunk of a prompt).
/// </summary>
public sealed record SequenceStep(int SequenceId, int StartPosition, int[] Tokens, int[] BlockTable, bool NeedsLogits);

/// <summary>
/// What every rank runs in one step, decided on rank 0 and delivered to the others over the ring
/// (<see cref="PlanChannel"/>). <paramref name="Step"/> counts plans from 1 and is the lockstep check: a rank
/// that sees a gap fails the ring. A plan without sequences is a keep-alive (it stops idle workers' receives
/// from reaching the ring deadline); <paramref name="Stop"/> ends the workers' step loops.
/// </summary>
public sealed record StepPlan(long Step, IReadOnlyList<SequenceStep> Sequences, bool Stop = false)
{
    public int TokenCount
    {
        get
        {
            int n = 0;
            foreach (var s in Sequences) n += s.Tokens.Length;
            return n;
        }
    }

    public int SampledCount
    {
        get
        {
            int n = 0;
            foreach (var s in Sequences) if (s.NeedsLogits) n++;
            return n;
        }
    }
}

/// <summary>
/// What a step returns. On rank 0: the full-vocabulary float32 logits of every sequence with
/// <see cref="SequenceStep.NeedsLogits"/>, in plan order (empty on other ranks). The rows may be the engine's
/// own buffers, valid only until its next step: whoever keeps one copies it.
/// </summary>
/// <param name="ComputeMs">This rank's time in the step, its collectives included.</param>
/// <param name="AllReduceMs">The part of <paramref name="ComputeMs"/> spent in all-reduces (waiting for the
/// slowest rank included), when the engine measures it.</param>
/// <param name="GatherMs">The part of <paramref name="ComputeMs"/> spent gathering the logits to rank 0.</param>
public sealed record StepResult(IReadOnlyList<float[]> Logits, double ComputeMs, double AllReduceMs = 0, double GatherMs = 0)
{
    public static readonly StepResult Empty = new(Array.Empty<float[]>(), 0);
}

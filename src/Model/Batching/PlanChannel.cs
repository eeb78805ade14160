using ActorRing.Transport;

namespace ActorRing.Model.Batching;

/// <summary>
/// Delivers step plans from rank 0 to every rank over the ring. A plan travels as one fixed-size broadcast
/// (<see cref="FrameInts"/> int32: a length word, then the encoded plan); only a plan too large for it (long
/// block tables, large prefill chunks) takes a second broadcast of the rest, whose length every rank knows
/// from the first. Each receiver checks the step sequence number: a plan that is not the next one means
/// the ranks are out of step, and the ring fails loudly with a <see cref="CollectiveException"/> instead of
/// running a wrong forward pass.
/// </summary>
public sealed class PlanChannel(ICollectives comm)
{
    /// <summary>Ints in the first broadcast: 4 KiB, a few hops' worth of latency on any network.</summary>
    public const int FrameInts = 1024;

    private readonly int[] _frame = new int[FrameInts];
    private long _last;

    /// <summary>The step number of the last plan sent or received (0 before the first).</summary>
    public long LastStep => _last;

    /// <summary>Rank 0: sends <paramref name="plan"/>, whose step must follow the last one.</summary>
    public void Send(StepPlan plan)
    {
        if (comm.Rank != 0) throw new InvalidOperationException($"rank {comm.Rank} cannot send plans; rank 0 plans every step");
        if (plan.Step != _last + 1) throw new InvalidOperationException($"plan {plan.Step} does not follow plan {_last}");
        _last = plan.Step;
        if (comm.WorldSize == 1) return;
        var data = StepPlanCodec.Encode(plan);
        _frame[0] = data.Length;
        int first = Math.Min(data.Length, FrameInts - 1);
        data.AsSpan(0, first).CopyTo(_frame.AsSpan(1));
        comm.Broadcast<int>(_frame, 0);
        if (first < data.Length) comm.Broadcast(data.AsSpan(first), 0);
    }

    /// <summary>Other ranks: waits for the next plan (within the ring's deadline).</summary>
    /// <exception cref="CollectiveException">The ring failed, the frame is malformed, or the plan is not the next one.</exception>
    public StepPlan Receive()
    {
        if (comm.Rank == 0) throw new InvalidOperationException("rank 0 plans steps; it does not receive them");
        comm.Broadcast<int>(_frame, 0);
        int length = _frame[0];
        if (length < 1 || length > 1 << 26)
            throw new CollectiveException($"rank {comm.Rank}: a step plan frame claims {length} ints; the ring is out of step");
        var data = new int[length];
        int first = Math.Min(length, FrameInts - 1);
        _frame.AsSpan(1, first).CopyTo(data);
        if (first < length) comm.Broadcast(data.AsSpan(first), 0);
        StepPlan plan;
        try
        {
            plan = StepPlanCodec.Decode(data);
        }
        catch (FormatException e)
        {
            throw new CollectiveException($"rank {comm.Rank}: malformed step plan: {e.Message}");
        }
        if (plan.Step != _last + 1)
            throw new CollectiveException($"rank {comm.Rank}: received step plan {plan.Step} but expected {_last + 1}; a plan was lost or duplicated, so the ranks are out of step");
        _last = plan.Step;
        return plan;
    }
}

using ActorRing.Model.Batching;

namespace ActorRing.Actors.Serving;

/// <summary>
/// Running totals of rank 0's steps, split the way a slow step is diagnosed: its own compute, the all-reduces
/// (where a slower rank's compute shows up as waiting), the logits gather, and control (everything else in
/// the step's wall time: planning, sampling, sending the plan, delivering tokens).
/// </summary>
public readonly record struct StepTotals(long Steps, double WallMs, double ComputeMs, double AllReduceMs, double GatherMs)
{
    public double ControlMs => Math.Max(0, WallMs - ComputeMs - AllReduceMs - GatherMs);

    internal StepTotals Add(double wallMs, StepResult result)
    {
        // The engine's time includes its collectives; the step's wall time bounds all of it.
        double engine = Math.Min(wallMs, result.ComputeMs);
        double allReduce = Math.Min(engine, result.AllReduceMs);
        double gather = Math.Min(engine - allReduce, result.GatherMs);
        return new StepTotals(Steps + 1, WallMs + wallMs, ComputeMs + engine - allReduce - gather, AllReduceMs + allReduce, GatherMs + gather);
    }
}

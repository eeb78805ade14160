using ActorRing.Model.Batching;

namespace ActorRing.Actors.Engine;

/// <summary>
/// This rank's loaded slice of the model, as the serving loop drives it. Every call happens on the worker's
/// one compute thread, with the same plans in the same order on every rank (the tensor-parallel forward runs
/// collectives inside, so ranks must agree on the call sequence).
/// </summary>
public interface IShardEngine : IDisposable
{
    /// <summary>Runs one batched step. Rank 0 gets the logits of every sequence that needs a token, in plan
    /// order, valid until the next call; other ranks get none.</summary>
    StepResult Execute(StepPlan plan);

    /// <summary>Blocks in this rank's paged KV cache (the same on every rank).</summary>
    int KvBlocks { get; }

    /// <summary>Positions per KV block.</summary>
    int KvBlockSize { get; }

    /// <summary>Longest sequence (prompt and generated tokens) the model was loaded for.</summary>
    int ContextLength { get; }
}

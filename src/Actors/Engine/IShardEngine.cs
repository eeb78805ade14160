namespace ActorRing.Actors.Engine;

/// <summary>
/// This rank's loaded slice of the model, as the <see cref="ShardWorker"/> drives it. Every call happens on
/// the worker's one compute thread, in the same order on every rank (the tensor-parallel forward runs
/// collectives inside, so ranks must agree on the call sequence).
/// </summary>
public interface IShardEngine : IDisposable
{
    /// <summary>Runs <paramref name="tokens"/> at positions starting at <paramref name="startPosition"/> in
    /// <paramref name="slot"/>'s KV cache. Rank 0 gets the last position's full logits; other ranks get null.</summary>
    float[]? Forward(int slot, ReadOnlySpan<int> tokens, int startPosition);

    /// <summary>Forgets the cached context of <paramref name="slot"/>.</summary>
    void ResetSlot(int slot);
}

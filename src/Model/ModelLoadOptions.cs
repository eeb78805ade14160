namespace ActorRing.Model;

/// <summary>Compute precision of weights and activations. Norms and softmax always run in float32.</summary>
public enum ComputeDType { F32, BF16 }

/// <summary>How a rank loads its shard.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Longest sequence (prompt + generated) a slot can hold; null = min(max_position_embeddings, 4096).</summary>
    public int? ContextLength { get; init; }

    /// <summary>Number of independent sequences (KV-cache slots), each preallocated to the full context.</summary>
    public int Slots { get; init; } = 1;

    public ComputeDType DType { get; init; } = ComputeDType.F32;

    /// <summary>
    /// libtorch intra-op threads for this rank's compute thread; null leaves libtorch's default. The world
    /// size's ranks share the machine's cores, so N ranks on one host usually want cores / N each.
    /// </summary>
    public int? Threads { get; init; }
}

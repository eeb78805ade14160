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
    /// Cores this rank computes on; null leaves libtorch's own threading alone. 1 pins libtorch to one thread.
    /// T &gt; 1 splits every matrix product by output columns over T threads of the rank (the compute thread
    /// plus T-1 helpers, each with one libtorch thread), because libtorch runs a matrix-vector product on one
    /// core whatever its thread setting. N ranks on one host usually want cores / N each.
    /// </summary>
    public int? Threads { get; init; }
}

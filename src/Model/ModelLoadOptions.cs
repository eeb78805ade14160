using ActorRing.Model.Quantization;

namespace ActorRing.Model;

/// <summary>Compute precision of weights and activations. Norms and softmax always run in float32.</summary>
public enum ComputeDType { F32, BF16 }

/// <summary>How a rank loads its shard.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Longest sequence (prompt + generated) a slot can hold; null = min(max_position_embeddings, 4096).</summary>
    public int? ContextLength { get; init; }

    /// <summary>The context a model of <paramref name="config"/> is loaded with under these options.</summary>
    public int ContextFor(ModelConfig config) => ContextLength ?? Math.Min(config.MaxPositionEmbeddings, 4096);

    /// <summary>Sequences that <see cref="ShardedLlama.Forward"/> can hold by slot number (tests and benches); with
    /// no <see cref="KvCacheTokens"/>, the KV cache gets exactly the blocks these slots need at full context.</summary>
    public int Slots { get; init; } = 1;

    /// <summary>Positions the paged KV cache holds in all (rounded down to whole blocks), shared by every
    /// running sequence of a scheduler; null = <see cref="Slots"/> full contexts.</summary>
    public int? KvCacheTokens { get; init; }

    /// <summary>When <see cref="KvCacheTokens"/> is null: size the KV cache from free memory after the weights
    /// are loaded (serve's default) instead of <see cref="Slots"/> full contexts.</summary>
    public KvMemoryBudget? KvCacheFromMemory { get; init; }

    public ComputeDType DType { get; init; } = ComputeDType.F32;

    /// <summary>
    /// Element type of the KV cache; null = <see cref="DType"/>. bf16 under float32 (or quantized) weights halves
    /// the cache's memory, so it holds twice the positions, and halves what attention reads per position, which
    /// dominates a batched step at long contexts. Keys and values are rounded to bf16 as they are stored; the
    /// arithmetic stays float32.
    /// </summary>
    public ComputeDType? KvDType { get; init; }

    /// <summary>
    /// Cores this rank computes on; null leaves libtorch's own threading alone. 1 pins libtorch to one thread.
    /// T &gt; 1 splits every matrix product by output rows over T threads of the rank (the compute thread
    /// plus T-1 helpers), because a matrix-vector product runs on one core. N ranks on one host usually want
    /// cores / N each.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>
    /// How long an idle helper thread busy-waits for the next product before it sleeps. A decode step hands
    /// its helpers about 50 products, a few hundred µs apart; waking a sleeping thread costs 20–50 µs each
    /// time on a VM. Null (the default) spins 1 ms when <see cref="Threads"/> fits in this machine's cores,
    /// and not at all otherwise. A host running several ranks on one machine sets zero when their threads
    /// together exceed the cores, since a spinning helper would take a core another rank needs.
    /// </summary>
    public TimeSpan? HelperSpin { get; init; }

    /// <summary>
    /// CPU cores to pin this rank's threads to: the compute thread (the one that loads the model and calls
    /// Forward) to Cores[0], split helper i to Cores[i]. Null pins nothing. See <see cref="CorePinning"/> for
    /// why ranks sharing a machine want it.
    /// </summary>
    public int[]? Cores { get; init; }

    /// <summary>
    /// Block format the linear weights (q/k/v/o, gate/up/down) of a full-precision checkpoint are quantized to
    /// as each rank reads its slice; embeddings and norms stay in full precision. A matrix whose input width is
    /// not a whole number of 32-value blocks stays in full precision (said through <see cref="Log"/>).
    /// </summary>
    public WeightQuantization Quant { get; init; } = WeightQuantization.None;

    /// <summary>Quantize the LM head too (<c>--quant-lm-head</c>); off by default, as llama.cpp keeps it wider.</summary>
    public bool QuantizeLmHead { get; init; }

    /// <summary>Payload of the step's all-reduces (<c>--sync-dtype</c>); see <see cref="SyncPayload"/>.</summary>
    public SyncPayload SyncDType { get; init; } = SyncPayload.F32;

    /// <summary>Where the loader says what it decided (a matrix kept in full precision, a format converted).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>The helper spin in effect (see <see cref="HelperSpin"/>).</summary>
    public TimeSpan EffectiveHelperSpin =>
        HelperSpin ?? ((Threads ?? 1) <= Environment.ProcessorCount ? TimeSpan.FromMilliseconds(1) : TimeSpan.Zero);
}

namespace ActorRing.Model;

/// <summary>
/// What one rank holds under Megatron-style tensor parallelism: a contiguous block of query heads, the KV
/// heads those queries need (split or replicated), a block of the FFN intermediate dimension and a block of
/// the vocabulary. Created (and refused) before any weight is read.
/// </summary>
public sealed record ShardPlan
{
    public required int Rank { get; init; }
    public required int WorldSize { get; init; }
    public required int HeadStart { get; init; }
    public required int LocalHeads { get; init; }
    public required int KvHeadStart { get; init; }
    public required int LocalKvHeads { get; init; }
    /// <summary>True when several ranks hold copies of the same KV head (world size a multiple of num_key_value_heads).</summary>
    public required bool KvReplicated { get; init; }
    public required int FfnStart { get; init; }
    public required int LocalFfn { get; init; }
    /// <summary>The block of every expert's intermediate dimension this rank holds (mixture of experts; 0 wide when dense).
    /// Every rank holds a slice of every expert, so a token's experts run on all ranks and one all-reduce sums them.</summary>
    public int ExpertFfnStart { get; init; }
    public int LocalExpertFfn { get; init; }
    /// <summary>The block of the shared expert's intermediate dimension this rank holds (qwen2_moe; else 0 wide).</summary>
    public int SharedFfnStart { get; init; }
    public int LocalSharedFfn { get; init; }
    public required int VocabStart { get; init; }
    public required int LocalVocab { get; init; }
    /// <summary>Vocabulary rows per rank, in rank order (the counts of the logits gather).</summary>
    public required int[] VocabCounts { get; init; }

    /// <param name="ffnUnit">
    /// The FFN block is dealt out in whole units of this many columns (32 when down_proj is quantized, so no
    /// rank's share cuts a block); 1 deals single columns. <c>intermediate_size</c> must be a multiple of it.
    /// </param>
    public static ShardPlan Create(ModelConfig c, int rank, int worldSize, int ffnUnit = 1)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize));
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank));
        if (c.NumHeads % worldSize != 0)
            throw new ModelLoadException($"{c.NumHeads} attention heads cannot be split over {worldSize} ranks; use a world size that divides {c.NumHeads}");
        int localHeads = c.NumHeads / worldSize;
        int group = c.NumHeads / c.NumKvHeads;
        int kvStart, localKv;
        bool replicated;
        if (c.NumKvHeads % worldSize == 0)
        {
            localKv = c.NumKvHeads / worldSize;
            kvStart = rank * localKv;
            replicated = false;
        }
        else if (worldSize % c.NumKvHeads == 0)
        {
            // Each rank's query heads all sit in one GQA group, so it keeps a copy of that group's KV head.
            localKv = 1;
            kvStart = rank * localHeads / group;
            replicated = true;
        }
        else
        {
            throw new ModelLoadException($"{c.NumKvHeads} key/value heads cannot be split over {worldSize} ranks, nor replicated (the world size must divide {c.NumKvHeads} or be a multiple of it)");
        }
        if (ffnUnit < 1 || c.IntermediateSize % ffnUnit != 0) throw new ArgumentOutOfRangeException(nameof(ffnUnit));
        if (c.IntermediateSize / ffnUnit < worldSize || c.VocabSize < worldSize)
            throw new ModelLoadException($"intermediate_size {c.IntermediateSize} / vocab_size {c.VocabSize} is too small to split over {worldSize} ranks");
        var (ffnStart, ffnCount) = EvenSplit(c.IntermediateSize / ffnUnit, worldSize, rank);
        ffnStart *= ffnUnit;
        ffnCount *= ffnUnit;
        var (expertStart, expertCount) = (0, 0);
        var (sharedStart, sharedCount) = (0, 0);
        if (c.Moe is { } moe)
        {
            (expertStart, expertCount) = SplitFfn(moe.IntermediateSize, "the experts' intermediate size");
            if (moe.SharedIntermediateSize > 0) (sharedStart, sharedCount) = SplitFfn(moe.SharedIntermediateSize, "the shared expert's intermediate size");
        }

        // An expert's intermediate dimension dealt out as the dense one is, in whole units where its width allows.
        (int Start, int Count) SplitFfn(int width, string what)
        {
            int unit = width % ffnUnit == 0 ? ffnUnit : 1;
            if (width / unit < worldSize)
                throw new ModelLoadException($"{what} {width} is too small to split over {worldSize} ranks");
            var (start, count) = EvenSplit(width / unit, worldSize, rank);
            return (start * unit, count * unit);
        }
        var vocabCounts = Enumerable.Range(0, worldSize).Select(r => EvenSplit(c.VocabSize, worldSize, r).Count).ToArray();
        var (vocabStart, vocabCount) = EvenSplit(c.VocabSize, worldSize, rank);
        return new ShardPlan
        {
            Rank = rank,
            WorldSize = worldSize,
            HeadStart = rank * localHeads,
            LocalHeads = localHeads,
            KvHeadStart = kvStart,
            LocalKvHeads = localKv,
            KvReplicated = replicated,
            FfnStart = ffnStart,
            LocalFfn = ffnCount,
            ExpertFfnStart = expertStart,
            LocalExpertFfn = expertCount,
            SharedFfnStart = sharedStart,
            LocalSharedFfn = sharedCount,
            VocabStart = vocabStart,
            LocalVocab = vocabCount,
            VocabCounts = vocabCounts,
        };
    }

    /// <summary>Uneven splits give the first (total mod n) ranks one extra element.</summary>
    internal static (int Start, int Count) EvenSplit(int total, int parts, int index)
    {
        int baseCount = total / parts, extra = total % parts;
        int start = index * baseCount + Math.Min(index, extra);
        return (start, baseCount + (index < extra ? 1 : 0));
    }
}

namespace ActorRing.Model;

/// <summary>
/// Shapes of real models (<c>--preset</c>) that benches and <c>serve --preset</c> fill with seeded random
/// weights: the runtime can be measured at a real model's size without its checkpoint.
/// </summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["llama-160m", "tinyllama-1.1b", "qwen3-moe-520m"];

    /// <summary>The preset's configuration, or null when no preset has that name.</summary>
    public static ModelConfig? Find(string name) => name switch
    {
        "llama-160m" => Shape(hidden: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 3072),
        "tinyllama-1.1b" => Shape(hidden: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632),
        // Qwen3-30B-A3B's proportions at llama-160m's width: 64 experts of 256, 8 per token, q/k norms. 520M
        // weights, of which a token reads about 100M (its 8 experts, attention, the head).
        "qwen3-moe-520m" => Shape(hidden: 768, layers: 12, heads: 12, kvHeads: 4, ffn: 3072) with
        {
            ModelType = "qwen3_moe",
            QkNorm = true,
            Moe = new MixtureOfExperts(Experts: 64, PerToken: 8, IntermediateSize: 256, NormalizeTopK: true, SparseLayers: null),
        },
        _ => null,
    };

    private static ModelConfig Shape(int hidden, int layers, int heads, int kvHeads, int ffn) => new()
    {
        ModelType = "llama",
        HiddenSize = hidden,
        IntermediateSize = ffn,
        NumLayers = layers,
        NumHeads = heads,
        NumKvHeads = kvHeads,
        HeadDim = hidden / heads,
        VocabSize = 32000,
        MaxPositionEmbeddings = 2048,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        TieWordEmbeddings = false,
        QkvBias = false,
        OProjBias = false,
    };
}

namespace ActorRing.Model;

/// <summary>
/// Shapes of real models (<c>--preset</c>) that benches and <c>serve --preset</c> fill with seeded random
/// weights: the runtime can be measured at a real model's size without its checkpoint.
/// </summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["llama-160m", "tinyllama-1.1b"];

    /// <summary>The preset's configuration, or null when no preset has that name.</summary>
    public static ModelConfig? Find(string name) => name switch
    {
        "llama-160m" => Shape(hidden: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 3072),
        "tinyllama-1.1b" => Shape(hidden: 2048, layers: 22, heads: 32, kvHeads: 4, ffn: 5632),
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

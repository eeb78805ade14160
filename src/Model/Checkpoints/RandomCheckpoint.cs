namespace ActorRing.Model.Checkpoints;

/// <summary>
/// Seeded pseudo-random weights for any <see cref="ModelConfig"/>, computed per element from (seed, tensor
/// name, flat index). Any block a rank asks for is therefore exactly the slice of one well-defined full
/// model, without that model ever existing in memory. Scales keep activations bounded: matrices are
/// uniform in ±1/√fan_in, norm weights near 1, biases small.
/// </summary>
internal sealed class RandomCheckpoint : ICheckpointReader
{
    private readonly ulong _seed;
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);

    public ModelConfig Config { get; }
    public string Source => $"random weights (seed {_seed})";

    public RandomCheckpoint(ModelConfig config, ulong seed)
    {
        Config = config;
        _seed = seed;
        long h = config.HiddenSize, q = (long)config.NumHeads * config.HeadDim, kv = (long)config.NumKvHeads * config.HeadDim;
        _shapes["model.embed_tokens.weight"] = [config.VocabSize, h];
        _shapes["model.norm.weight"] = [h];
        if (!config.TieWordEmbeddings) _shapes["lm_head.weight"] = [config.VocabSize, h];
        for (int i = 0; i < config.NumLayers; i++)
        {
            string p = $"model.layers.{i}.";
            _shapes[p + "input_layernorm.weight"] = [h];
            _shapes[p + "post_attention_layernorm.weight"] = [h];
            if (config.GemmaOutputNorms)
            {
                _shapes[p + "pre_feedforward_layernorm.weight"] = [h];
                _shapes[p + "post_feedforward_layernorm.weight"] = [h];
            }
            if (config.FusedProjections)
            {
                _shapes[p + "self_attn.qkv_proj.weight"] = [q + 2 * kv, h];
            }
            else
            {
                _shapes[p + "self_attn.q_proj.weight"] = [q, h];
                _shapes[p + "self_attn.k_proj.weight"] = [kv, h];
                _shapes[p + "self_attn.v_proj.weight"] = [kv, h];
            }
            _shapes[p + "self_attn.o_proj.weight"] = [h, q];
            if (config.IsSparse(i))
            {
                var moe = config.Moe!;
                for (int e = 0; e < moe.Experts; e++)
                {
                    var (gate, up, down, router) = ShardedLlama.ExpertNames(config, i, e);
                    _shapes[gate] = [moe.IntermediateSize, h];
                    _shapes[up] = [moe.IntermediateSize, h];
                    _shapes[down] = [h, moe.IntermediateSize];
                    _shapes[router] = [moe.Experts, h];
                }
            }
            else
            {
                if (config.FusedGateUp)
                {
                    _shapes[p + "mlp.gate_up_proj.weight"] = [2L * config.IntermediateSize, h];
                }
                else
                {
                    _shapes[p + "mlp.gate_proj.weight"] = [config.IntermediateSize, h];
                    _shapes[p + "mlp.up_proj.weight"] = [config.IntermediateSize, h];
                }
                _shapes[p + "mlp.down_proj.weight"] = [h, config.IntermediateSize];
            }
            if (config.QkvBias)
            {
                _shapes[p + "self_attn.q_proj.bias"] = [q];
                _shapes[p + "self_attn.k_proj.bias"] = [kv];
                _shapes[p + "self_attn.v_proj.bias"] = [kv];
            }
            if (config.OProjBias) _shapes[p + "self_attn.o_proj.bias"] = [h];
            if (config.QkNorm)
            {
                _shapes[p + "self_attn.q_norm.weight"] = [config.HeadDim];
                _shapes[p + "self_attn.k_norm.weight"] = [config.HeadDim];
            }
        }
    }

    public bool Contains(string name) => _shapes.ContainsKey(name);

    public long BytesRead => 0;

    public long[] Shape(string name) => _shapes.TryGetValue(name, out var s) ? s
        : throw new ModelLoadException($"{Source}: no tensor {name}");

    public void ReadBlock(string name, long row0, long rows, long col0, long cols, Span<float> destination)
    {
        var shape = Shape(name);
        long width = shape[^1];
        bool vector = shape.Length == 1;
        bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
        float scale = vector ? (norm ? 0.1f : 0.02f) : 1f / MathF.Sqrt(width);
        float offset = norm ? 1f : 0f;
        ulong key = _seed ^ Fnv1a(name);
        for (long r = 0; r < rows; r++)
        {
            var dst = destination.Slice((int)(r * cols), (int)cols);
            long flat = (row0 + r) * width + col0;
            for (int j = 0; j < dst.Length; j++)
                dst[j] = offset + scale * Uniform(key, (ulong)(flat + j));
        }
    }

    private static ulong Fnv1a(string s)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (char ch in s) hash = (hash ^ ch) * 0x100000001b3UL;
        return hash;
    }

    /// <summary>splitmix64 of (key, index) mapped to [-1, 1).</summary>
    private static float Uniform(ulong key, ulong index)
    {
        ulong z = key + (index + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 40) * (1f / (1 << 23)) - 1f;
    }

    public void Dispose() { }
}

using System.Globalization;
using System.Text.RegularExpressions;
using ActorRing.Model.Quantization;

namespace ActorRing.Model.Checkpoints.Gguf;

/// <summary>
/// A llama.cpp GGUF model (one file, or a split set <c>name-00001-of-0000N.gguf</c>) read as a checkpoint in the
/// Hugging Face layout: llama.cpp's tensor names and <c>llama.*</c>/<c>qwen2.*</c> hyperparameters map to ours,
/// and the q/k row permutation llama.cpp's converter applies to llama-family models is undone as rows are
/// read. Q8_0 and Q4_0 tensors can be read as raw blocks (they are our formats byte for byte); every
/// supported type can be read as float32. A mixture of experts (<c>qwen3moe</c>, and <c>llama</c> with
/// <c>expert_count</c>: Mixtral) stores each layer's experts stacked in one 3-D tensor per projection
/// (<c>ffn_gate_exps</c> [experts, ffn, hidden] and so on); each expert is read as the 2-D tensor of our name, a
/// run of rows of the stack.
/// </summary>
internal sealed partial class GgufCheckpoint : ICheckpointReader
{
    private readonly List<GgufFile> _files = new();
    private readonly Dictionary<string, GgufTensor> _tensors = new(StringComparer.Ordinal);
    private readonly bool _permuteQk;

    public ModelConfig Config { get; }
    public string Source { get; }
    public GgufFile First => _files[0];
    public long BytesRead => _files.Sum(f => f.BytesRead);

    public GgufCheckpoint(string path)
    {
        Source = path;
        try
        {
            foreach (var file in SplitFiles(path))
            {
                var f = new GgufFile(file);
                _files.Add(f);
                foreach (var t in f.Tensors.Values) _tensors[t.Name] = t;
            }
            Config = ReadConfig(_files[0], _tensors);
            // llama.cpp's convert_hf_to_gguf permutes q/k rows of llama-family models (Mixtral included) for its
            // interleaved RoPE; the qwen models keep Hugging Face's rotate-half order.
            _permuteQk = Config.ModelType is "llama" or "mixtral" or "granite" or "granitemoe" or "smollm3" // the converters of these are LlamaModels
                || Config.Glm4; // glm4 keeps GLM's interleaved pairs, over the rotated part of each head only
            _byHfName = MapNames();
            var used = _byHfName.Values.Select(v => v.Tensor).ToHashSet();
            foreach (var t in _tensors.Values)
            {
                if (GgmlTypeTraits.Geometry(t.Type) is null && used.Contains(t))
                    throw new ModelLoadException($"{path}: tensor {t.Name} is {t.Type}, which this loader does not read; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_1, IQ4_NL (natively), Q4_K, Q5_K and IQ4_XS (as Q4_1, Q5_1 and IQ4_NL) and Q6_K (requantized to Q8_0)");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>All parts of a split GGUF (<c>-00001-of-0000N.gguf</c>), in order, or just the file.</summary>
    private static IEnumerable<string> SplitFiles(string path)
    {
        var m = SplitName().Match(Path.GetFileName(path));
        if (!m.Success) return [path];
        int count = int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        string dir = Path.GetDirectoryName(path)!, stem = m.Groups[1].Value, width = m.Groups[3].Value;
        var parts = Enumerable.Range(1, count).Select(i => Path.Combine(dir, $"{stem}-{i.ToString("D" + width.Length, CultureInfo.InvariantCulture)}-of-{width}.gguf")).ToArray();
        var missing = parts.Where(p => !File.Exists(p)).ToArray();
        if (missing.Length > 0) throw new ModelLoadException($"{path}: split GGUF part {Path.GetFileName(missing[0])} of {count} is missing");
        return parts;
    }

    [GeneratedRegex(@"^(.*)-(\d+)-of-(\d+)\.gguf$", RegexOptions.IgnoreCase)]
    private static partial Regex SplitName();

    private static ModelConfig ReadConfig(GgufFile file, Dictionary<string, GgufTensor> tensors)
    {
        var m = file.Metadata;
        string arch = m.TryGetValue("general.architecture", out var a) ? (string)a : throw new ModelLoadException($"{file.Path}: metadata general.architecture is missing");
        if (arch is not ("llama" or "granite" or "granitemoe" or "smollm3" or "olmo2" or "glm4" or "qwen2" or "qwen3" or "qwen3moe" or "qwen2moe" or "gemma" or "gemma2" or "gemma3" or "phi3"))
            throw new ModelLoadException($"{file.Path}: general.architecture is '{arch}'; this server runs llama-family (llama, mistral and mixtral as llama), granite, granitemoe, smollm3, olmo2, glm4, qwen2, qwen3, qwen3moe, qwen2moe, gemma, gemma2, gemma3 and phi3 models");
        if (arch == "glm4" && m.ContainsKey("glm4.rope.dimension_sections"))
            throw new ModelLoadException($"{file.Path}: glm4.rope.dimension_sections is set (multimodal M-RoPE, GLM-4V); only the text model's rotary is implemented");
        // llama.cpp writes OLMo 3 as olmo2 with its window (and windows three layers of four, as Olmo3Config does).
        int? olmo3Window = arch == "olmo2" && m.TryGetValue("olmo2.attention.sliding_window", out var olmoWindow) && Convert.ToInt32(olmoWindow, CultureInfo.InvariantCulture) is > 0 and var ow ? ow : null;
        bool olmo3 = olmo3Window is not null;
        long Int(string key, long? fallback = null) => m.TryGetValue($"{arch}.{key}", out var v) ? Convert.ToInt64(v, CultureInfo.InvariantCulture)
            : fallback ?? throw new ModelLoadException($"{file.Path}: metadata {arch}.{key} is missing");
        double Real(string key, double fallback) => m.TryGetValue($"{arch}.{key}", out var v) ? Convert.ToDouble(v, CultureInfo.InvariantCulture) : fallback;
        // Linear scaling (Gemma 3 4B and up: factor 8 on the global layers) is llama.cpp's freq_scale = 1/factor,
        // which is Hugging Face's linear rope_scaling.
        RopeScaling? ropeScaling = null;
        if (m.TryGetValue($"{arch}.rope.scaling.type", out var scaling) && (string)scaling is not ("none" or ""))
        {
            if ((string)scaling is not ("linear" or "yarn"))
                throw new ModelLoadException($"{file.Path}: {arch}.rope.scaling.type is '{scaling}', which is not implemented for GGUF models (linear and yarn are)");
            double factor = Real("rope.scaling.factor", 0) is > 0 and var f ? f
                : throw new ModelLoadException($"{file.Path}: {arch}.rope.scaling.type is {scaling} but {arch}.rope.scaling.factor is missing or not positive");
            if ((string)scaling == "linear") ropeScaling = new LinearRopeScaling(factor);
            else
            {
                // YaRN as the converter writes Hugging Face's rope_scaling: the original context, and attention_factor
                // and the betas when the config had them (else transformers' defaults: 0.1·ln(factor) + 1, 32 and 1,
                // which llama.cpp applies too). DeepSeek's mscale pair (yarn_log_multiplier) is not implemented.
                if (m.ContainsKey($"{arch}.rope.scaling.yarn_log_multiplier"))
                    throw new ModelLoadException($"{file.Path}: {arch}.rope.scaling.yarn_log_multiplier is set (DeepSeek's YaRN mscale), which is not implemented");
                if (Real("rope.scaling.yarn_ext_factor", 1) != 1)
                    throw new ModelLoadException($"{file.Path}: {arch}.rope.scaling.yarn_ext_factor is {Real("rope.scaling.yarn_ext_factor", 1)}; only 1 (YaRN's own) is implemented");
                long original = Int("rope.scaling.original_context_length");
                ropeScaling = new YarnRopeScaling(factor, (int)original, Real("rope.scaling.yarn_beta_fast", 32), Real("rope.scaling.yarn_beta_slow", 1),
                    Real("rope.scaling.yarn_attn_factor", factor > 1 ? 0.1 * Math.Log(factor) + 1 : 1) * Real("rope.scaling.attn_factor", 1), Truncate: true);
            }
        }
        // Gemma 2's soft-caps, with llama.cpp's defaults when the keys are absent (it always caps a gemma2 model);
        // no other architecture here has them.
        double? Positive(string key, double fallback) => Real(key, fallback) is > 0 and var value ? value
            : throw new ModelLoadException($"{file.Path}: {arch}.{key} is not a positive number");
        double? attentionSoftcap = arch == "gemma2" ? Positive("attn_logit_softcapping", 50) : null;
        double? finalSoftcap = arch == "gemma2" ? Positive("final_logit_softcapping", 30) : null;
        if (arch != "gemma2" && (m.ContainsKey($"{arch}.final_logit_softcapping") || m.ContainsKey($"{arch}.attn_logit_softcapping")))
            throw new ModelLoadException($"{file.Path}: {arch} has no logit soft-capping here (Gemma 2 has; its GGUF files say general.architecture gemma2)");
        if (tensors.ContainsKey("rope_freqs.weight"))
            throw new ModelLoadException($"{file.Path}: holds rope_freqs.weight (llama3-style RoPE scaling baked into a tensor), which is not implemented for GGUF models");
        int hidden = (int)Int("embedding_length"), heads = (int)Int("attention.head_count");
        if (!tensors.TryGetValue("token_embd.weight", out var embed)) throw new ModelLoadException($"{file.Path}: tensor token_embd.weight is missing");
        int vocab = (int)Int("vocab_size", embed.Dims.Length == 2 ? embed.Dims[1] : 0);
        // Experts: every layer has them; llama.cpp normalizes the picked experts' weights for qwen3moe (whose models all
        // set norm_topk_prob), Mixtral and granitemoe (a softmax over the picked logits), not for qwen2moe (Qwen1.5-MoE's norm_topk_prob is false), whose layers also
        // have a shared expert of expert_shared_feed_forward_length.
        long experts = Int("expert_count", 0);
        MixtureOfExperts? moe = experts == 0 ? null : new MixtureOfExperts((int)experts, (int)Int("expert_used_count"),
            (int)(arch is "qwen3moe" or "qwen2moe" ? Int("expert_feed_forward_length") : Int("expert_feed_forward_length", Int("feed_forward_length"))), NormalizeTopK: arch != "qwen2moe", SparseLayers: null,
            SharedIntermediateSize: arch == "qwen2moe" ? (int)Int("expert_shared_feed_forward_length") : 0);
        if (arch is "qwen3moe" or "qwen2moe" or "granitemoe" && moe is null) throw new ModelLoadException($"{file.Path}: metadata {arch}.expert_count is missing");
        bool gemma = arch is "gemma" or "gemma2" or "gemma3";
        int layers = (int)Int("block_count"), headDim = (int)Int("attention.key_length", hidden / heads);
        // Partial rotary (Phi-4-mini: 96 of 128): RoPE turns the first rope.dimension_count dimensions of each head.
        int rotary = (int)Int("rope.dimension_count", headDim);
        if (rotary <= 0 || rotary > headDim || rotary % 2 != 0)
            throw new ModelLoadException($"{file.Path}: {arch}.rope.dimension_count is {rotary} of a head of {headDim}; it must be even and at most the head");
        if (tensors.ContainsKey("rope_factors_long.weight") || tensors.ContainsKey("rope_factors_short.weight"))
            ropeScaling = ReadLongRope(file, tensors, rotary, (int)Int("rope.scaling.original_context_length", Int("context_length")), Real("rope.scaling.attn_factor", 1));
        var (window, windowed) = arch == "gemma2" ? Gemma2Windows(m, layers)
            : arch == "gemma3" ? GemmaWindows(file, m, layers)
            : olmo3 ? (olmo3Window, (IReadOnlyList<bool>?)Enumerable.Range(0, layers).Select(i => (i + 1) % 4 != 0).ToArray())
            // Phi-3's window covers every layer (Phi-4 writes 0: none). llama.cpp ignores it for now (its phi3 has
            // "SWA currently disabled"); the window is the model's own, as transformers runs it.
            : arch == "phi3" && Int("attention.sliding_window", 0) is > 0 and var w ? ((int?)w, null) : (null, null);
        return new ModelConfig
        {
            ModelType = arch switch { "qwen3moe" => "qwen3_moe", "qwen2moe" => "qwen2_moe", "gemma3" => "gemma3_text", "llama" when moe is not null => "mixtral", "olmo2" when olmo3 => "olmo3", _ => arch },
            AttentionSoftcap = attentionSoftcap,
            FinalLogitSoftcap = finalSoftcap,
            // Granite's µP scalars as its converter writes them; llama.cpp takes an attention scale of 0 (or none) as
            // 1/√head_dim, and 1 for the others.
            EmbeddingMultiplier = arch is "granite" or "granitemoe" ? Positive("embedding_scale", 1) : null,
            AttentionMultiplier = arch is "granite" or "granitemoe" && Real("attention.scale", 0) is > 0 and var attentionScale ? attentionScale : null,
            ResidualMultiplier = arch is "granite" or "granitemoe" ? Positive("residual_scale", 1) : null,
            LogitsScaling = arch is "granite" or "granitemoe" ? Positive("logit_scale", 1) : null,
            // SmolLM3 as llama.cpp runs it: every fourth layer without RoPE (the file does not say which).
            RopeLayers = arch == "smollm3" && layers >= 4 ? Enumerable.Range(0, layers).Select(i => (i + 1) % 4 != 0).ToArray() : null,
            QkNorm = arch is "qwen3" or "qwen3moe" or "gemma3",
            Moe = moe,
            HiddenSize = hidden,
            IntermediateSize = (int)Int("feed_forward_length"),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = (int)Int("attention.head_count_kv", heads),
            HeadDim = headDim,
            VocabSize = vocab,
            MaxPositionEmbeddings = (int)Int("context_length"),
            RmsNormEps = Real("attention.layer_norm_rms_epsilon", 1e-5),
            RopeTheta = Real("rope.freq_base", 10000),
            RopeScaling = ropeScaling,
            SlidingWindow = window,
            SlidingLayers = windowed,
            // Gemma 2 and 3 as llama.cpp runs them (query_pre_attn_scalar is not in the file): attention scaled by the
            // head size, except the 27B's hidden/heads (46 layers in Gemma 2, 62 in Gemma 3); Gemma 3's windowed layers
            // on rope.freq_base_swa (10000 by default).
            Activation = gemma ? "gelu_tanh" : "silu",
            QueryPreAttentionScalar = gemma ? (arch != "gemma" && layers == (arch == "gemma2" ? 46 : 62) ? hidden / heads : headDim) : null,
            // OLMo 3's windowed layers rotate unscaled (llama.cpp: no freq_scale or YaRN on its SWA layers).
            LocalRopeTheta = arch == "gemma3" ? Real("rope.freq_base_swa", 10000) : olmo3 && ropeScaling is not null ? Real("rope.freq_base", 10000) : null,
            PartialRotaryDim = rotary == headDim ? null : rotary,
            TieWordEmbeddings = !tensors.ContainsKey("output.weight"),
            QkvBias = tensors.ContainsKey("blk.0.attn_q.bias"),
            OProjBias = tensors.ContainsKey("blk.0.attn_output.bias"),
            BosTokenId = m.TryGetValue("tokenizer.ggml.bos_token_id", out var bos) ? (int)Convert.ToInt64(bos, CultureInfo.InvariantCulture) : null,
            EosTokenIds = m.TryGetValue("tokenizer.ggml.eos_token_id", out var eos) ? [(int)Convert.ToInt64(eos, CultureInfo.InvariantCulture)] : [],
        };
    }

    /// <summary>
    /// LongRoPE as llama.cpp's converter writes it (Phi-3 128k, Phi-3.5, Phi-4-mini): the two factor vectors as the
    /// F32 tensors rope_factors_long/short (one factor per rotated pair), the pretraining context as
    /// <c>rope.scaling.original_context_length</c>, and the attention factor transformers would compute as
    /// <c>rope.scaling.attn_factor</c>.
    /// </summary>
    private static LongRopeScaling ReadLongRope(GgufFile file, Dictionary<string, GgufTensor> tensors, int rotary, int original, double attentionFactor)
    {
        float[] Factors(string name)
        {
            if (!tensors.TryGetValue(name, out var t))
                throw new ModelLoadException($"{file.Path}: holds one of rope_factors_long.weight and rope_factors_short.weight but not {name}");
            if (t.Type != GgmlType.F32 || t.Dims.Length != 1 || t.Dims[0] != rotary / 2)
                throw new ModelLoadException($"{file.Path}: {name} is {t.Type} [{string.Join(", ", t.Dims)}]; longrope needs F32 [{rotary / 2}], one factor per rotated pair");
            var factors = new float[rotary / 2];
            t.File.Read(t.Offset, System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan()));
            if (factors.Any(f => !(f > 0) || float.IsInfinity(f)))
                throw new ModelLoadException($"{file.Path}: {name} holds a factor that is not a positive number");
            return factors;
        }
        return new LongRopeScaling(Factors("rope_factors_short.weight"), Factors("rope_factors_long.weight"), original, attentionFactor);
    }

    /// <summary>
    /// Gemma 3's windowed layers as llama.cpp reads them: <c>attention.sliding_window_pattern</c> as one flag per
    /// layer or as a period (every period-th layer global), 6 when absent (what its converter relies on); no
    /// <c>attention.sliding_window</c> means every layer is global.
    /// </summary>
    private static (int? Window, IReadOnlyList<bool>? Windowed) GemmaWindows(GgufFile file, IReadOnlyDictionary<string, object> m, int layers)
    {
        if (!m.TryGetValue("gemma3.attention.sliding_window", out var w) || Convert.ToInt64(w, CultureInfo.InvariantCulture) is not (> 0 and var window))
            return (null, null);
        bool[] windowed;
        switch (m.GetValueOrDefault("gemma3.attention.sliding_window_pattern"))
        {
            case object[] flags when flags.Length == layers && flags.All(f => f is bool):
                windowed = flags.Select(f => (bool)f).ToArray();
                break;
            case int[] flags when flags.Length == layers:
                windowed = flags.Select(f => f != 0).ToArray();
                break;
            case null:
                windowed = Enumerable.Range(0, layers).Select(i => (i + 1) % 6 != 0).ToArray();
                break;
            case var v when v is not Array && Convert.ToInt64(v, CultureInfo.InvariantCulture) is >= 0 and var period:
                windowed = Enumerable.Range(0, layers).Select(i => period == 0 || (i + 1) % period != 0).ToArray();
                break;
            case var v:
                throw new ModelLoadException($"{file.Path}: gemma3.attention.sliding_window_pattern is {v}; expected a period or one flag per each of the {layers} layers");
        }
        return windowed.Any(b => b) ? ((int)window, windowed) : (null, null);
    }

    /// <summary>
    /// Gemma 2's windowed layers as llama.cpp reads them: the even ones (its swa pattern 2), by
    /// <c>attention.sliding_window</c>, 4096 when absent (Gemma 2's own).
    /// </summary>
    private static (int? Window, IReadOnlyList<bool>? Windowed) Gemma2Windows(IReadOnlyDictionary<string, object> m, int layers)
    {
        long window = m.TryGetValue("gemma2.attention.sliding_window", out var w) ? Convert.ToInt64(w, CultureInfo.InvariantCulture) : 4096;
        return window > 0 ? ((int)window, Enumerable.Range(0, layers).Select(i => i % 2 == 0).ToArray()) : (null, null);
    }

    /// <summary>Our (Hugging Face) name for a llama.cpp tensor name, or null for tensors we do not use.</summary>
    /// <param name="postNorms">Gemma's and OLMo 2's layout: <c>post_attention_norm</c> and <c>post_ffw_norm</c>
    /// normalize the attention's and the MLP's outputs.</param>
    /// <param name="fusedGateUp">phi3's and glm4's <c>ffn_up</c>: gate and up rows in one tensor.</param>
    /// <param name="glm4">glm4's names: <c>post_attention_norm</c> and <c>post_ffw_norm</c> are its
    /// post_self_attn_layernorm and post_mlp_layernorm, <c>ffn_norm</c> its post_attention_layernorm (before the MLP).</param>
    internal static string? HfName(string gguf, bool postNorms = false, bool fusedGateUp = false, bool glm4 = false)
    {
        switch (gguf)
        {
            case "token_embd.weight": return "model.embed_tokens.weight";
            case "output_norm.weight": return "model.norm.weight";
            case "output.weight": return "lm_head.weight";
        }
        var m = LayerName().Match(gguf);
        if (!m.Success) return null;
        string? ours = m.Groups[2].Value switch
        {
            "attn_norm" => "input_layernorm",
            // Gemma's norm before the MLP is pre_feedforward_layernorm; its post_attention_layernorm normalizes the
            // attention's output.
            "ffn_norm" => postNorms ? "pre_feedforward_layernorm" : "post_attention_layernorm",
            "post_attention_norm" when postNorms => "post_attention_layernorm",
            "post_ffw_norm" when postNorms => "post_feedforward_layernorm",
            "post_attention_norm" when glm4 => "post_self_attn_layernorm",
            "post_ffw_norm" when glm4 => "post_mlp_layernorm",
            "attn_q" => "self_attn.q_proj",
            // phi3: q, k and v in one tensor, and gate and up in ffn_up (2 × intermediate rows, gate first), as
            // transformers' qkv_proj and gate_up_proj.
            "attn_qkv" => "self_attn.qkv_proj",
            "ffn_up" when fusedGateUp => "mlp.gate_up_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            // qwen2moe's shared expert and its gate vector.
            "ffn_gate_shexp" => "mlp.shared_expert.gate_proj",
            "ffn_up_shexp" => "mlp.shared_expert.up_proj",
            "ffn_down_shexp" => "mlp.shared_expert.down_proj",
            "ffn_gate_inp_shexp" => "mlp.shared_expert_gate",
            _ => null,
        };
        return ours is null ? null : $"model.layers.{m.Groups[1].Value}.{ours}.{m.Groups[3].Value}";
    }

    [GeneratedRegex(@"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")]
    private static partial Regex LayerName();

    /// <summary>What one of our tensor names reads: a GGUF tensor, or (an expert) a run of rows of a stacked one.</summary>
    private sealed record Slice(GgufTensor Tensor, long RowOffset, long[] Shape);

    private readonly Dictionary<string, Slice> _byHfName;

    /// <summary>Our names of the file's tensors; each expert of a stacked tensor under its own name.</summary>
    private Dictionary<string, Slice> MapNames()
    {
        var map = new Dictionary<string, Slice>(StringComparer.Ordinal);
        foreach (var t in _tensors.Values)
        {
            if (HfName(t.Name, Config.GemmaOutputNorms || Config.Olmo2, Config.FusedGateUp, Config.Glm4) is { } hf) map[hf] = new Slice(t, 0, t.Dims.Reverse().ToArray());
            if (Config.Moe is not { } moe) continue;
            var m = ExpertTensorName().Match(t.Name);
            if (!m.Success) continue;
            int layer = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            string kind = m.Groups[2].Value;
            if (kind == "gate_inp")
            {
                map[ShardedLlama.ExpertNames(Config, layer, 0).Router] = new Slice(t, 0, t.Dims.Reverse().ToArray());
                continue;
            }
            if (t.Dims.Length != 3 || t.Dims[2] != moe.Experts)
                throw new ModelLoadException($"{Source}: tensor {t.Name} has shape [{string.Join(", ", t.Dims)}] (ggml order), expected 3 dimensions, the last the {moe.Experts} experts");
            long rows = t.Dims[1];
            for (int e = 0; e < moe.Experts; e++)
            {
                var names = ShardedLlama.ExpertNames(Config, layer, e);
                string name = kind switch { "gate_exps" => names.Gate, "up_exps" => names.Up, _ => names.Down };
                map[name] = new Slice(t, e * rows, [rows, t.Dims[0]]);
            }
        }
        return map;
    }

    [GeneratedRegex(@"^blk\.(\d+)\.ffn_(gate_inp|gate_exps|up_exps|down_exps)\.weight$")]
    private static partial Regex ExpertTensorName();

    private Slice Resolve(string name) =>
        _byHfName.TryGetValue(name, out var t) ? t : throw new ModelLoadException($"{Source}: tensor {name} (llama.cpp name {GgufNameHint(name)}) is missing from the GGUF file");

    private GgufTensor Tensor(string name) => Resolve(name).Tensor;

    private static string GgufNameHint(string hf) => hf switch
    {
        "model.embed_tokens.weight" => "token_embd.weight",
        "lm_head.weight" => "output.weight",
        "model.norm.weight" => "output_norm.weight",
        _ => "blk.N.*",
    };

    public bool Contains(string name)
    {
        try { Tensor(name); return true; }
        catch (ModelLoadException) { return false; }
    }

    /// <summary>Shape in our convention, [rows, cols] (ggml lists ne[0], the row length, first).</summary>
    public long[] Shape(string name) => Resolve(name).Shape;

    public GgmlType StoredType(string name) => Tensor(name).Type;

    public bool GemmaNormsIncludeOne => Config.Gemma;

    /// <summary>Values per block of the stored type: a row-parallel split must not cut one.</summary>
    public int ColumnBlock(string name) => Contains(name) ? GgmlTypeTraits.Geometry(Tensor(name).Type)!.Value.BlockSize : 1;

    /// <summary>Which stored row holds our row <paramref name="row"/> (llama.cpp permutes q/k rows within each head;
    /// glm4's are GLM's own interleaved pairs, over the head's first RotaryDim rows).</summary>
    private long StoredRow(string name, long row)
    {
        if (!_permuteQk) return row;
        int heads = name.EndsWith("q_proj.weight", StringComparison.Ordinal) ? Config.NumHeads
            : name.EndsWith("k_proj.weight", StringComparison.Ordinal) ? Config.NumKvHeads : 0;
        if (heads == 0) return row;
        long d = Config.HeadDim, paired = Config.Glm4 ? Config.RotaryDim : d, half = paired / 2, head = row / d, within = row % d;
        // Our row h·d + t·(R/2) + i (rotate-half pairs i and i+R/2) is stored at h·d + 2i + t (adjacent pairs).
        return within < paired ? head * d + 2 * (within % half) + within / half : row;
    }

    /// <summary>
    /// Heads of a q/k bias that llama.cpp's converter permuted as it permutes the weight rows (its
    /// <c>LlamaModel.permute</c> matches <c>q_proj.bias</c> and <c>k_proj.bias</c> too), or null.
    /// </summary>
    private int? PermutedBiasHeads(string name) =>
        !_permuteQk ? null
        : name.EndsWith("q_proj.bias", StringComparison.Ordinal) ? Config.NumHeads
        : name.EndsWith("k_proj.bias", StringComparison.Ordinal) ? Config.NumKvHeads
        : null;

    /// <summary>Elements [col0, col0+cols) of a permuted q/k bias, in our order: a bias is small, so it is read whole.</summary>
    private unsafe void ReadPermutedBias(string name, int heads, long col0, long cols, Span<float> destination)
    {
        var t = Tensor(name);
        long length = (long)heads * Config.HeadDim;
        if (t.Dims.Length != 1 || t.Dims[0] != length)
            throw new ModelLoadException($"{Source}: tensor {t.Name} has shape [{string.Join(", ", t.Dims)}], expected [{length}] ({heads} heads of {Config.HeadDim})");
        var (bs, bb) = GgmlTypeTraits.Geometry(t.Type)!.Value;
        var raw = new byte[length / bs * bb];
        var stored = new float[length];
        t.File.Read(t.Offset, raw);
        fixed (byte* src = raw)
        fixed (float* dst = stored)
            GgmlTypeTraits.Dequantize(t.Type, src, length, dst);
        // The same within-head mapping as the weight rows: one bias entry per row.
        for (long i = 0; i < cols; i++) destination[(int)i] = stored[StoredRow(name.Replace(".bias", ".weight", StringComparison.Ordinal), col0 + i)];
    }

    /// <summary>
    /// Raw bytes of rows [row0, row0+rows) × columns [col0, col0+cols) in the stored type, row after row (for
    /// Q8_0/Q4_0, blocks in ggml's row layout). Columns must fall on block boundaries.
    /// </summary>
    public void ReadRaw(string name, long row0, long rows, long col0, long cols, Span<byte> destination)
    {
        var (t, rowOffset, _) = Resolve(name);
        var (bs, bb) = GgmlTypeTraits.Geometry(t.Type)!.Value;
        if (col0 % bs != 0 || cols % bs != 0)
            throw new ModelLoadException($"{Source}: columns [{col0}, {col0 + cols}) of {name} cut its {bs}-value {t.Type} blocks; use a world size that splits on block boundaries");
        long rowBytes = t.Dims[0] / bs * bb, sliceBytes = cols / bs * bb, skip = col0 / bs * bb;
        if (destination.Length != rows * sliceBytes) throw new ArgumentException($"{name}: {destination.Length} bytes given for {rows} rows of {sliceBytes}");
        long r = 0;
        while (r < rows)
        {
            // Consecutive whole stored rows are read in one go (up to 16 MiB).
            long first = StoredRow(name, row0 + r), run = 1;
            if (sliceBytes == rowBytes)
                while (r + run < rows && StoredRow(name, row0 + r + run) == first + run && (run + 1) * rowBytes <= 16 << 20) run++;
            t.File.Read(t.Offset + (rowOffset + first) * rowBytes + skip, destination.Slice((int)(r * sliceBytes), (int)(run * sliceBytes)));
            r += run;
        }
    }

    public unsafe void ReadBlock(string name, long row0, long rows, long col0, long cols, Span<float> destination)
    {
        if (PermutedBiasHeads(name) is int biasHeads)
        {
            ReadPermutedBias(name, biasHeads, col0, cols, destination);
            return;
        }
        var t = Tensor(name);
        var (bs, bb) = GgmlTypeTraits.Geometry(t.Type)!.Value;
        long sliceBytes = cols / bs * bb;
        // A row at a time through a small buffer: the float32 destination is the big allocation.
        var raw = new byte[sliceBytes];
        fixed (byte* src = raw)
        fixed (float* dst = destination)
        {
            for (long r = 0; r < rows; r++)
            {
                ReadRaw(name, row0 + r, 1, col0, cols, raw);
                GgmlTypeTraits.Dequantize(t.Type, src, cols, dst + r * cols);
            }
        }
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}

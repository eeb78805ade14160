using System.Text.Json;

namespace ActorRing.Model.Tests.Support;

/// <summary>
/// A small random-weight Llama-family model written to disk as a Hugging Face directory, plus the exact
/// float values a reader should see (after rounding to the on-disk dtype), for the reference forward.
/// </summary>
internal sealed class SyntheticModel
{
    public required string ModelType;
    public int Hidden = 32, Intermediate = 42, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 8, Vocab = 101, MaxPos = 256;
    public double Theta = 10000, Eps = 1e-5;
    public bool Tied = true, AttentionBias;
    public string DiskDType = "F32";
    public int Shards = 1;
    /// <summary>Multiplies the random projection weights: wider models want about sqrt(32 / hidden) to keep activations in range.</summary>
    public float MatrixScale = 1f;
    /// <summary>llama3 rope_scaling (factor, low, high, original max positions), or null.</summary>
    public (double Factor, double Low, double High, int Original)? Llama3;
    /// <summary>yarn rope_scaling (factor, original max positions; transformers' defaults otherwise), or null.</summary>
    public (double Factor, int Original)? Yarn;
    /// <summary>linear rope_scaling factor, or null.</summary>
    public double? LinearRope;
    /// <summary>phi3's longrope rope_scaling (a factor per rotated pair, short and long, and the pretraining context
    /// written as original_max_position_embeddings beside <see cref="MaxPos"/>), or null.</summary>
    public (float[] Short, float[] Long, int Original)? LongRope;
    /// <summary>phi3's partial_rotary_factor (RoPE over that share of each head's dimensions), or null for all.</summary>
    public double? PartialRotary;
    /// <summary>The dimensions RoPE rotates, as transformers computes them.</summary>
    public int RotaryDim => (int)(HeadDim * (PartialRotary ?? 1.0));
    /// <summary>sliding_window written to the config (mistral: every layer; qwen2/qwen3: with
    /// <see cref="UseSlidingWindow"/>, the layers from <see cref="MaxWindowLayers"/> on).</summary>
    public int? SlidingWindow;
    public bool UseSlidingWindow;
    public int MaxWindowLayers;
    /// <summary>Mixture of experts (qwen3_moe, mixtral): experts per sparse layer, picks per token, each expert's
    /// intermediate size, whether the picks' weights are renormalized (qwen3_moe's norm_topk_prob; mixtral always),
    /// and qwen3_moe's mlp_only_layers (dense layers of <see cref="Intermediate"/>).</summary>
    public int Experts, ExpertsPerToken, ExpertIntermediate;
    /// <summary>qwen2_moe's shared expert width (every token runs it, weighted by σ(shared_expert_gate · x)).</summary>
    public int SharedIntermediate;
    public bool NormTopK = true;
    public int[] DenseLayers = [];
    /// <summary>gemma3_text: attention scaled by QueryPreAttnScalar^-1/2, windowed layers' RoPE base, window pattern.</summary>
    public double QueryPreAttnScalar = 24, LocalTheta = 10000;
    public int SlidingWindowPattern = 2;
    /// <summary>gemma2's soft-caps on the attention scores and on the logits, written to the config (null: written
    /// as null, none).</summary>
    public double? AttnSoftcap, FinalSoftcap;
    /// <summary>granite's µP scalars: embeddings times the first, attention scores times the second (in place of
    /// 1/√head_dim), sublayer outputs times the third before the residual add, logits divided by the fourth.</summary>
    public double EmbeddingMultiplier = 1, AttentionMultiplier = 1, ResidualMultiplier = 1, LogitsScaling = 1;
    /// <summary>smollm3's no_rope_layers (1: RoPE, 0: none), or null for its default, every fourth layer without.</summary>
    public int[]? NoRopeLayers;

    /// <summary>Whether layer <paramref name="layer"/> rotates its queries and keys.</summary>
    public bool UsesRope(int layer) => ModelType != "smollm3" || (NoRopeLayers is { } listed ? listed[layer] == 1 : (layer + 1) % 4 != 0);
    /// <summary>Written as an image-and-text model around this text model, beside a vision tower's tensors: for
    /// gemma3_text as Gemma 3 4B+ ships (a "gemma3" config, tensors under language_model.model. /
    /// language_model.lm_head.), for mistral as Mistral Small 3.1 does, saved by transformers 4.52+ (a "mistral3"
    /// config, tensors under model.language_model. / lm_head.).</summary>
    public bool ImageTextWrapper;

    public bool IsMoe => ModelType is "qwen3_moe" or "qwen2_moe" or "mixtral" or "granitemoe";
    /// <summary>gemma, gemma2 and gemma3_text: √hidden embeddings, 1 + w norms, GeGLU.</summary>
    public bool Gemma => ModelType is "gemma" or "gemma2" or "gemma3_text";
    /// <summary>gemma2 and gemma3_text: norms of the attention's and the MLP's outputs, pre_feedforward_layernorm before the MLP.</summary>
    public bool GemmaOutputNorms => ModelType is "gemma2" or "gemma3_text";
    public bool IsSparse(int layer) => IsMoe && !DenseLayers.Contains(layer);

    /// <summary>Checkpoint names of a sparse layer's router and expert e's gate, up and down weights. A
    /// granitemoe keeps every expert's gate and up rows in one [experts, 2·intermediate, hidden] tensor (gate first) and
    /// the downs in one [experts, hidden, intermediate]: its Gate and Up name the first, Down the second.</summary>
    public (string Router, string Gate, string Up, string Down) ExpertNames(int layer, int e) => ModelType == "granitemoe"
        ? ($"model.layers.{layer}.block_sparse_moe.router.layer.weight", $"model.layers.{layer}.block_sparse_moe.input_linear.weight",
           $"model.layers.{layer}.block_sparse_moe.input_linear.weight", $"model.layers.{layer}.block_sparse_moe.output_linear.weight")
        : ModelType == "mixtral"
        ? ($"model.layers.{layer}.block_sparse_moe.gate.weight", $"model.layers.{layer}.block_sparse_moe.experts.{e}.w1.weight",
           $"model.layers.{layer}.block_sparse_moe.experts.{e}.w3.weight", $"model.layers.{layer}.block_sparse_moe.experts.{e}.w2.weight")
        : ($"model.layers.{layer}.mlp.gate.weight", $"model.layers.{layer}.mlp.experts.{e}.gate_proj.weight",
           $"model.layers.{layer}.mlp.experts.{e}.up_proj.weight", $"model.layers.{layer}.mlp.experts.{e}.down_proj.weight");

    public readonly Dictionary<string, float[]> W = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);

    public bool QkvBias => ModelType is "qwen2" or "qwen2_moe" || AttentionBias;
    public bool OBias => ModelType is not ("qwen2" or "qwen2_moe" or "glm4") && AttentionBias;
    public bool QkNorm => ModelType is "qwen3" or "qwen3_moe" or "gemma3_text";

    /// <summary>The window layer <paramref name="layer"/> attends through, as transformers reads the config; null for full attention.</summary>
    public int? WindowOf(int layer) => ModelType switch
    {
        "mistral" or "mixtral" or "phi3" => SlidingWindow,
        "gemma3_text" when (layer + 1) % SlidingWindowPattern != 0 => SlidingWindow ?? 4096,
        "gemma2" when layer % 2 == 0 => SlidingWindow ?? 4096,
        "olmo3" when (layer + 1) % 4 != 0 => SlidingWindow ?? 4096,
        "qwen2" or "qwen3" or "qwen3_moe" or "qwen2_moe" or "smollm3" when UseSlidingWindow && layer >= MaxWindowLayers => SlidingWindow,
        _ => null,
    };

    public SyntheticModel Build(int seed)
    {
        var rng = new Random(seed);
        void Add(string name, float scale, float offset, params long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            if (shape.Length == 2 && name != "model.embed_tokens.weight") scale *= MatrixScale;
            var v = new float[n];
            for (long i = 0; i < n; i++)
                v[i] = SafetensorsWriter.RoundTo(DiskDType, offset + scale * (float)(rng.NextDouble() * 2 - 1));
            W[name] = v;
            _shapes[name] = shape;
        }
        int q = Heads * HeadDim, kv = KvHeads * HeadDim;
        Add("model.embed_tokens.weight", 1f, 0, Vocab, Hidden);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            // olmo2 has no norm before the attention: its post_attention_layernorm normalizes the attention's output.
            if (ModelType is not ("olmo2" or "olmo3")) Add(p + "input_layernorm.weight", 0.2f, 1, Hidden);
            Add(p + "post_attention_layernorm.weight", 0.2f, 1, Hidden);
            if (ModelType == "glm4")
            {
                // glm4's norms of the attention's and the MLP's outputs (its post_attention_layernorm is before the MLP).
                Add(p + "post_self_attn_layernorm.weight", 0.2f, 1, Hidden);
                Add(p + "post_mlp_layernorm.weight", 0.2f, 1, Hidden);
            }
            if (ModelType is "olmo2" or "olmo3")
            {
                // ... and post_feedforward_layernorm the MLP's; q_norm and k_norm span the whole q and k projections.
                Add(p + "post_feedforward_layernorm.weight", 0.2f, 1, Hidden);
                Add(p + "self_attn.q_norm.weight", 0.2f, 1, q);
                Add(p + "self_attn.k_norm.weight", 0.2f, 1, kv);
            }
            if (GemmaOutputNorms)
            {
                // gemma's norms are stored as w and used as 1 + w: small values around zero.
                Add(p + "pre_feedforward_layernorm.weight", 0.2f, 0, Hidden);
                Add(p + "post_feedforward_layernorm.weight", 0.2f, 0, Hidden);
            }
            Add(p + "self_attn.q_proj.weight", 0.5f, 0, q, Hidden);
            Add(p + "self_attn.k_proj.weight", 0.5f, 0, kv, Hidden);
            Add(p + "self_attn.v_proj.weight", 0.3f, 0, kv, Hidden);
            Add(p + "self_attn.o_proj.weight", 0.3f, 0, Hidden, q);
            if (QkvBias)
            {
                Add(p + "self_attn.q_proj.bias", 0.5f, 0, q);
                Add(p + "self_attn.k_proj.bias", 0.5f, 0, kv);
                Add(p + "self_attn.v_proj.bias", 0.5f, 0, kv);
            }
            if (OBias) Add(p + "self_attn.o_proj.bias", 0.5f, 0, Hidden);
            if (QkNorm)
            {
                Add(p + "self_attn.q_norm.weight", 0.2f, 1, HeadDim);
                Add(p + "self_attn.k_norm.weight", 0.2f, 1, HeadDim);
            }
            if (IsSparse(l))
            {
                // A router wide enough apart that float32 and the double reference pick the same experts.
                Add(ExpertNames(l, 0).Router, 1f, 0, Experts, Hidden);
                if (ModelType == "granitemoe")
                {
                    Add(ExpertNames(l, 0).Gate, 0.3f, 0, Experts, 2 * ExpertIntermediate, Hidden);
                    Add(ExpertNames(l, 0).Down, 0.3f, 0, Experts, Hidden, ExpertIntermediate);
                    continue;
                }
                for (int e = 0; e < Experts; e++)
                {
                    var (_, gate, up, down) = ExpertNames(l, e);
                    Add(gate, 0.3f, 0, ExpertIntermediate, Hidden);
                    Add(up, 0.3f, 0, ExpertIntermediate, Hidden);
                    Add(down, 0.3f, 0, Hidden, ExpertIntermediate);
                }
                if (ModelType == "qwen2_moe")
                {
                    Add(p + "mlp.shared_expert.gate_proj.weight", 0.3f, 0, SharedIntermediate, Hidden);
                    Add(p + "mlp.shared_expert.up_proj.weight", 0.3f, 0, SharedIntermediate, Hidden);
                    Add(p + "mlp.shared_expert.down_proj.weight", 0.3f, 0, Hidden, SharedIntermediate);
                    Add(p + "mlp.shared_expert_gate.weight", 0.5f, 0, 1, Hidden);
                }
                continue;
            }
            Add(p + "mlp.gate_proj.weight", 0.3f, 0, Intermediate, Hidden);
            Add(p + "mlp.up_proj.weight", 0.3f, 0, Intermediate, Hidden);
            Add(p + "mlp.down_proj.weight", 0.3f, 0, Hidden, Intermediate);
        }
        Add("model.norm.weight", 0.2f, 1, Hidden);
        if (!Tied) Add("lm_head.weight", 0.3f, 0, Vocab, Hidden);
        return this;
    }

    public string WriteTo(string dir)
    {
        Directory.CreateDirectory(dir);
        var config = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["model_type"] = ModelType,
            ["hidden_size"] = Hidden,
            ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadDim,
            ["vocab_size"] = Vocab,
            ["max_position_embeddings"] = MaxPos,
            ["rms_norm_eps"] = Eps,
            ["rope_theta"] = Theta,
            ["tie_word_embeddings"] = Tied,
            [ModelType == "gemma3_text" ? "hidden_activation" : "hidden_act"] = Gemma ? "gelu_pytorch_tanh" : "silu",
            ["torch_dtype"] = DiskDType == "F32" ? "float32" : DiskDType == "BF16" ? "bfloat16" : "float16",
        };
        if (ModelType == "llama") config["attention_bias"] = AttentionBias;
        if (ModelType is "qwen2" or "qwen3" or "qwen3_moe" or "qwen2_moe" or "smollm3")
        {
            config["use_sliding_window"] = UseSlidingWindow;
            config["sliding_window"] = SlidingWindow ?? 4096;
            config["max_window_layers"] = MaxWindowLayers;
        }
        if (ModelType is "qwen3" or "qwen3_moe") config["attention_bias"] = false;
        if (ModelType is "mistral" or "mixtral" or "phi3") config["sliding_window"] = SlidingWindow; // null: full attention
        if (ModelType == "phi3")
        {
            // Phi-3's fields beside llama's: dropouts (training only), the share of the head RoPE turns, longrope's base length.
            config["resid_pdrop"] = 0.0;
            config["embd_pdrop"] = 0.0;
            config["partial_rotary_factor"] = PartialRotary ?? 1.0;
            config["original_max_position_embeddings"] = LongRope?.Original ?? MaxPos;
            if (LongRope is { } longRope)
                config["rope_scaling"] = new Dictionary<string, object> { ["type"] = "longrope", ["short_factor"] = longRope.Short, ["long_factor"] = longRope.Long };
        }
        if (ModelType is "qwen3_moe" or "qwen2_moe")
        {
            config["num_experts"] = Experts;
            config["num_experts_per_tok"] = ExpertsPerToken;
            config["moe_intermediate_size"] = ExpertIntermediate;
            config["norm_topk_prob"] = NormTopK;
            config["decoder_sparse_step"] = 1;
            config["mlp_only_layers"] = DenseLayers;
            config["router_aux_loss_coef"] = 0.001;
            config["output_router_logits"] = false;
        }
        if (ModelType == "qwen2_moe") config["shared_expert_intermediate_size"] = SharedIntermediate;
        if (ModelType == "granitemoe")
        {
            config["intermediate_size"] = ExpertIntermediate; // as mixtral, the experts' width
            config["num_local_experts"] = Experts;
            config["num_experts_per_tok"] = ExpertsPerToken;
            config["router_aux_loss_coef"] = 0.001;
            config["output_router_logits"] = false;
        }
        if (ModelType == "mixtral")
        {
            config["intermediate_size"] = ExpertIntermediate; // mixtral's experts are its intermediate_size
            config["num_local_experts"] = Experts;
            config["num_experts_per_tok"] = ExpertsPerToken;
            config["router_jitter_noise"] = 0.0;
        }
        if (Llama3 is { } s)
        {
            config["rope_scaling"] = new Dictionary<string, object>
            {
                ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.Low,
                ["high_freq_factor"] = s.High, ["original_max_position_embeddings"] = s.Original,
            };
        }
        if (ModelType == "gemma3_text")
        {
            config["query_pre_attn_scalar"] = QueryPreAttnScalar;
            config["rope_local_base_freq"] = LocalTheta;
            config["sliding_window"] = SlidingWindow ?? 4096;
            config["sliding_window_pattern"] = SlidingWindowPattern;
            config["attn_logit_softcapping"] = null;
            config["final_logit_softcapping"] = null;
            config["cache_implementation"] = "hybrid";
        }
        if (ModelType == "glm4")
        {
            // Glm4Config's: q/k/v biases (o_proj has none), half of each head turned; W keeps q and k as GLM stores
            // them, each head's rotated dimensions in interleaved pairs (the reference turns them so).
            config["attention_bias"] = AttentionBias;
            config["partial_rotary_factor"] = PartialRotary ?? 0.5;
        }
        if (ModelType == "smollm3")
        {
            // As SmolLM3-3B's config.json has them: the list, and the interval it was made from.
            config["no_rope_layer_interval"] = 4;
            if (NoRopeLayers is not null) config["no_rope_layers"] = NoRopeLayers;
            config["pretraining_tp"] = 2;
        }
        if (ModelType is "granite" or "granitemoe")
        {
            config["attention_bias"] = AttentionBias;
            config["embedding_multiplier"] = EmbeddingMultiplier;
            config["attention_multiplier"] = AttentionMultiplier;
            config["residual_multiplier"] = ResidualMultiplier;
            config["logits_scaling"] = LogitsScaling;
        }
        if (ModelType == "gemma")
        {
            // As google/gemma-2b's config.json has it today: the first hidden_act "gelu", and hidden_activation beside it.
            config["hidden_act"] = "gelu";
            config["hidden_activation"] = "gelu_pytorch_tanh";
        }
        if (ModelType == "gemma2")
        {
            // As google/gemma-2-2b-it's config.json has them: hidden_activation beside hidden_act, and both soft-caps.
            config["hidden_activation"] = "gelu_pytorch_tanh";
            config["query_pre_attn_scalar"] = QueryPreAttnScalar;
            config["sliding_window"] = SlidingWindow ?? 4096;
            config["attn_logit_softcapping"] = AttnSoftcap;
            config["final_logit_softcapping"] = FinalSoftcap;
            config["cache_implementation"] = "hybrid";
        }
        if (ModelType == "olmo3") config["sliding_window"] = SlidingWindow ?? 4096; // layer_types: Olmo3Config's default
        if (Yarn is { } yarn)
            config["rope_scaling"] = new Dictionary<string, object> { ["rope_type"] = "yarn", ["factor"] = yarn.Factor, ["original_max_position_embeddings"] = yarn.Original };
        if (LinearRope is double linear)
            config["rope_scaling"] = new Dictionary<string, object> { ["type"] = "linear", ["factor"] = linear };
        if (ImageTextWrapper)
        {
            config.Remove("architectures");
            var outer = ModelType == "mistral" ? new Dictionary<string, object?>
            {
                ["architectures"] = new[] { "Mistral3ForConditionalGeneration" }, ["model_type"] = "mistral3", ["text_config"] = config,
                ["vision_config"] = new Dictionary<string, object> { ["model_type"] = "pixtral", ["hidden_size"] = 8 },
                ["image_token_index"] = 10, ["multimodal_projector_bias"] = false, ["projector_hidden_act"] = "gelu",
                ["spatial_merge_size"] = 2, ["vision_feature_layer"] = -1,
            } : new Dictionary<string, object?>
            {
                ["architectures"] = new[] { "Gemma3ForConditionalGeneration" }, ["model_type"] = "gemma3", ["text_config"] = config,
                ["vision_config"] = new Dictionary<string, object> { ["model_type"] = "siglip_vision_model", ["hidden_size"] = 8 },
                ["mm_tokens_per_image"] = 256, ["boi_token_index"] = 255999, ["eos_token_id"] = new[] { 1, 106 },
            };
            File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(outer));
        }
        else
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config));
        }

        var onDisk = OnDisk();
        var names = onDisk.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        SafetensorsWriter.Entry Entry(string name) => onDisk[name];
        if (Shards == 1)
        {
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), names.ToDictionary(n => n, Entry));
        }
        else
        {
            var map = new Dictionary<string, string>();
            for (int shard = 0; shard < Shards; shard++)
            {
                string file = $"model-{shard + 1:D5}-of-{Shards:D5}.safetensors";
                var mine = names.Where((_, i) => i % Shards == shard).ToArray();
                SafetensorsWriter.Write(Path.Combine(dir, file), mine.ToDictionary(n => n, Entry));
                foreach (var n in mine) map[n] = file;
            }
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
                JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        }
        return dir;
    }

    /// <summary>
    /// The tensors as the checkpoint stores them: <see cref="W"/>'s, except that phi3 stores q, k and v as one
    /// qkv_proj and gate and up as one gate_up_proj, rows in that order (the reference reads <see cref="W"/>'s parts).
    /// </summary>
    private Dictionary<string, SafetensorsWriter.Entry> OnDisk()
    {
        var disk = W.Keys.ToDictionary(n => n, n => new SafetensorsWriter.Entry(DiskDType, _shapes[n], W[n]), StringComparer.Ordinal);
        if (ImageTextWrapper && ModelType == "mistral")
        {
            var wrapped = disk.ToDictionary(kv => kv.Key.StartsWith("model.") ? "model.language_model." + kv.Key["model.".Length..] : kv.Key, kv => kv.Value);
            wrapped["model.vision_tower.patch_conv.weight"] = new SafetensorsWriter.Entry(DiskDType, [8, 3], new float[24]);
            return wrapped;
        }
        if (ImageTextWrapper)
        {
            var wrapped = disk.ToDictionary(kv => kv.Key.StartsWith("model.") ? "language_model." + kv.Key : "language_model." + kv.Key, kv => kv.Value);
            wrapped["vision_tower.vision_model.embeddings.patch_embedding.weight"] = new SafetensorsWriter.Entry(DiskDType, [8, 3], new float[24]);
            return wrapped;
        }
        if (ModelType == "glm4")
        {
            // glm4 stores gate and up as one gate_up_proj (gate rows first), q/k/v apart.
            for (int l = 0; l < Layers; l++)
            {
                string p = $"model.layers.{l}.mlp.";
                disk[p + "gate_up_proj.weight"] = new SafetensorsWriter.Entry(DiskDType, [2L * Intermediate, Hidden], W[p + "gate_proj.weight"].Concat(W[p + "up_proj.weight"]).ToArray());
                disk.Remove(p + "gate_proj.weight");
                disk.Remove(p + "up_proj.weight");
            }
            return disk;
        }
        if (ModelType != "phi3") return disk;
        void Fuse(string fused, params string[] parts)
        {
            disk[fused] = new SafetensorsWriter.Entry(DiskDType, [parts.Sum(n => _shapes[n][0]), _shapes[parts[0]][1]], parts.SelectMany(n => W[n]).ToArray());
            foreach (var n in parts) disk.Remove(n);
        }
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Fuse(p + "self_attn.qkv_proj.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight");
            Fuse(p + "mlp.gate_up_proj.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight");
        }
        return disk;
    }
}

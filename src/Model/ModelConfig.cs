using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ActorRing.Model;

/// <summary>A <c>rope_scaling</c> that stretches RoPE to a longer context (see <see cref="RotaryTables"/>).</summary>
public abstract record RopeScaling;

/// <summary>Llama 3 style frequency-dependent RoPE scaling (<c>rope_scaling.rope_type = "llama3"</c>).</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings) : RopeScaling;

/// <summary>Position interpolation (<c>"linear"</c>): every frequency divided by <paramref name="Factor"/>.</summary>
public sealed record LinearRopeScaling(double Factor) : RopeScaling;

/// <summary>
/// YaRN (<c>"yarn"</c>: Qwen2.5 and Qwen3 past their native context, DeepSeek): the frequencies that turn fewer than
/// <paramref name="BetaSlow"/> times over <paramref name="OriginalMaxPositionEmbeddings"/> positions are divided by
/// <paramref name="Factor"/>, those that turn more than <paramref name="BetaFast"/> times are kept, a linear ramp
/// blends the ones between (its ends rounded outwards when <paramref name="Truncate"/>), and cos and sin are
/// multiplied by <paramref name="AttentionFactor"/> (by default 0.1·ln(factor) + 1).
/// </summary>
public sealed record YarnRopeScaling(double Factor, int OriginalMaxPositionEmbeddings, double BetaFast, double BetaSlow, double AttentionFactor, bool Truncate) : RopeScaling;

/// <summary>
/// LongRoPE (<c>"longrope"</c>, Phi-3 128k, Phi-3.5, Phi-4-mini): frequency i is divided by a factor of its own,
/// <paramref name="LongFactor"/>[i] when the context the server runs is longer than
/// <paramref name="OriginalMaxPositionEmbeddings"/>, else <paramref name="ShortFactor"/>[i] (llama.cpp's rule;
/// transformers switches by the sequence's own length and recomputes the cache when it crosses over, so the two
/// agree on every sequence while the context is at most the original), and cos and sin are multiplied by
/// <paramref name="AttentionFactor"/> (by default √(1 + ln(s) / ln(original)), s = max / original positions).
/// </summary>
public sealed record LongRopeScaling(IReadOnlyList<float> ShortFactor, IReadOnlyList<float> LongFactor, int OriginalMaxPositionEmbeddings, double AttentionFactor) : RopeScaling;

/// <summary>
/// The sparse feed-forward of a mixture-of-experts model: <paramref name="Experts"/> SwiGLU experts of
/// <paramref name="IntermediateSize"/> each; a token runs the <paramref name="PerToken"/> whose router
/// probabilities (a softmax over all experts) are highest, weighted by those probabilities, renormalized to sum to
/// 1 when <paramref name="NormalizeTopK"/>. <paramref name="SparseLayers"/> says which layers have experts (null:
/// all of them; the others have the dense MLP). <paramref name="SharedIntermediateSize"/> (qwen2_moe) is the width
/// of a shared expert every token runs besides its picks, weighted by σ(shared_expert_gate · x); 0: none.
/// </summary>
public sealed record MixtureOfExperts(int Experts, int PerToken, int IntermediateSize, bool NormalizeTopK, IReadOnlyList<bool>? SparseLayers, int SharedIntermediateSize = 0);

/// <summary>
/// The architecture of a Llama-family model, normalised from a Hugging Face <c>config.json</c> or a llama2.c
/// header. Everything the forward pass depends on is here; anything the forward pass does not implement is
/// refused while parsing, so a model never loads with a silently ignored setting.
/// </summary>
public sealed record ModelConfig
{
    /// <summary><c>llama</c>, <c>mistral</c>, <c>qwen2</c>, <c>qwen3</c>, <c>phi3</c>, <c>granite</c>, <c>smollm3</c>, <c>olmo2</c>, <c>olmo3</c>, <c>glm4</c>, <c>gemma</c>, <c>gemma2</c>, <c>gemma3_text</c> (also for a
    /// <c>gemma3</c> checkpoint's text model), or the mixtures of experts <c>qwen3_moe</c>, <c>qwen2_moe</c>, <c>mixtral</c> and <c>granitemoe</c>.</summary>
    public required string ModelType { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required double RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>q/k/v carry biases (qwen2 always; llama when <c>attention_bias</c>). o_proj too for llama.</summary>
    public required bool QkvBias { get; init; }
    public required bool OProjBias { get; init; }
    /// <summary>qwen3: an RMSNorm over each query and key head (<c>q_norm</c>, <c>k_norm</c>, weights of size
    /// head_dim) between the projection and RoPE.</summary>
    public bool QkNorm { get; init; }
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>
    /// Attention window W (a query sees itself and the W−1 positions before it), or null when no layer uses
    /// one. Which layers do is <see cref="SlidingLayers"/>; see <see cref="WindowOf"/>.
    /// </summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Per layer, whether it attends through <see cref="SlidingWindow"/>; null means every layer does
    /// (mistral). Only set together with a window.</summary>
    public IReadOnlyList<bool>? SlidingLayers { get; init; }
    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = [];
    /// <summary>
    /// Mixture of experts (<c>qwen3_moe</c>, <c>mixtral</c>), or null for a dense model: the sparse layers'
    /// feed-forward is a router and <see cref="MixtureOfExperts.Experts"/> SwiGLU experts, of which each token runs
    /// the <see cref="MixtureOfExperts.PerToken"/> its router scores highest.
    /// </summary>
    public MixtureOfExperts? Moe { get; init; }

    /// <summary>Whether layer <paramref name="layer"/>'s feed-forward is the experts (else the dense MLP of <see cref="IntermediateSize"/>).</summary>
    public bool IsSparse(int layer) => Moe is { } m && (m.SparseLayers is null || m.SparseLayers[layer]);

    /// <summary>
    /// gemma3_text (Gemma 3 1B, and the text model of the larger ones): embeddings scaled by √hidden, every RMSNorm
    /// weighted by 1 + w, a norm on the attention's and the MLP's outputs before each residual add, GeGLU with the
    /// tanh GELU, attention scaled by <see cref="QueryPreAttentionScalar"/>^-1/2, and the windowed layers' RoPE on
    /// <see cref="LocalRopeTheta"/> (the others on <see cref="RopeTheta"/> with <see cref="RopeScaling"/>).
    /// gemma2 (Gemma 2 2B, 9B, 27B) is the same but for the per-head q/k norms and the local RoPE base, which it does
    /// not have, and the two soft-caps (<see cref="AttentionSoftcap"/>, <see cref="FinalLogitSoftcap"/>), which it has.
    /// gemma (Gemma 1 2B and 7B, CodeGemma) is Gemma 2 without the output norms (<see cref="GemmaOutputNorms"/>), the
    /// soft-caps and the windows: a llama layer with Gemma's embeddings, norms and GeGLU, attention scaled by head_dim^-1/2.
    /// </summary>
    public bool Gemma => ModelType is "gemma3_text" or "gemma2" or "gemma";

    /// <summary>Gemma 2's and 3's layer: a norm on the attention's and the MLP's outputs (post_attention_layernorm,
    /// post_feedforward_layernorm) before each residual add, and pre_feedforward_layernorm before the MLP. Gemma 1's
    /// layer is llama's: its post_attention_layernorm is the norm before the MLP.</summary>
    public bool GemmaOutputNorms => ModelType is "gemma3_text" or "gemma2";

    /// <summary>Gemma 2's attention soft-cap c: every scaled score s becomes c·tanh(s / c) before the softmax; null: none.</summary>
    public double? AttentionSoftcap { get; init; }

    /// <summary>Gemma 2's final soft-cap c: every logit z becomes c·tanh(z / c); null: none.</summary>
    public double? FinalLogitSoftcap { get; init; }

    /// <summary>
    /// granite (IBM Granite 3.x): llama with four scalars of its µP training. The embeddings are multiplied by
    /// <see cref="EmbeddingMultiplier"/>, attention scores are q·k times <see cref="AttentionMultiplier"/> (in place
    /// of 1/√head_dim), each sublayer's output is multiplied by <see cref="ResidualMultiplier"/> before it is added
    /// to the residual stream, and the logits are divided by <see cref="LogitsScaling"/>. null: not applied.
    /// </summary>
    public double? EmbeddingMultiplier { get; init; }

    /// <summary>
    /// smollm3 (SmolLM3): per layer, whether its queries and keys are rotated; its "NoPE" layers (every fourth,
    /// <c>no_rope_layers</c> 0) attend by content alone. null: every layer rotates.
    /// </summary>
    public IReadOnlyList<bool>? RopeLayers { get; init; }

    /// <summary>
    /// olmo2 (OLMo 2): no norm before the attention or the MLP; their outputs are normalized instead
    /// (<c>post_attention_layernorm</c>, <c>post_feedforward_layernorm</c>) before each residual add, and q and k are
    /// each RMS-normalized over their whole projection (<c>q_norm</c> of num_heads·head_dim, <c>k_norm</c> of
    /// num_key_value_heads·head_dim) before RoPE. Split by heads, that norm needs every rank's sum of squares: one
    /// small all-reduce per layer (two floats per row). olmo3 (OLMo 3) is the same layer, with three layers of four
    /// attending through a window (<see cref="SlidingLayers"/>) and rotating without the RoPE scaling
    /// (<see cref="LocalRopeTheta"/>).
    /// </summary>
    public bool Olmo2 => ModelType is "olmo2" or "olmo3";

    /// <summary>Whether layer <paramref name="layer"/> applies RoPE (see <see cref="RopeLayers"/>).</summary>
    public bool UsesRope(int layer) => RopeLayers is null || RopeLayers[layer];

    public double? AttentionMultiplier { get; init; }
    public double? ResidualMultiplier { get; init; }
    public double? LogitsScaling { get; init; }

    /// <summary>The MLP's gate activation: <c>silu</c> (SwiGLU) or <c>gelu_tanh</c> (GeGLU, gemma's gelu_pytorch_tanh).</summary>
    public string Activation { get; init; } = "silu";

    /// <summary>Attention scores are q·k / √(this); null means head_dim.</summary>
    public double? QueryPreAttentionScalar { get; init; }

    /// <summary>RoPE base of the windowed layers (gemma's rope_local_base_freq), unscaled; null: every layer uses <see cref="RopeTheta"/>.</summary>
    public double? LocalRopeTheta { get; init; }

    /// <summary>How many of each head's leading dimensions RoPE rotates (rotate-half within them); the rest pass
    /// through. null: the whole head. Phi-4-mini's <c>partial_rotary_factor</c> 0.75 rotates 96 of 128.</summary>
    public int? PartialRotaryDim { get; init; }

    /// <summary>The dimensions RoPE rotates: <see cref="PartialRotaryDim"/>, else the whole head.</summary>
    public int RotaryDim => PartialRotaryDim ?? HeadDim;

    /// <summary>phi3 checkpoints store q, k and v as one <c>qkv_proj</c> and gate and up as one <c>gate_up_proj</c>
    /// (rows in that order); the maths is llama's.</summary>
    public bool FusedProjections => ModelType == "phi3";

    /// <summary>The MLP's gate and up rows are stored as one <c>gate_up_proj</c> (gate first): phi3's, and glm4's
    /// (whose q, k and v are separate).</summary>
    public bool FusedGateUp => ModelType is "phi3" or "glm4";

    /// <summary>
    /// glm4 (GLM-4-9B-0414, GLM-4-32B-0414): checkpoints keep each head's rotated q and k dimensions in interleaved
    /// pairs (2i, 2i + 1), as GLM's rotary turns them, which the reader reorders into the rotate-half layout every
    /// other family uses; and four norms a layer: before the attention, on its output
    /// (<c>post_self_attn_layernorm</c>), before the MLP (<c>post_attention_layernorm</c>) and on its output
    /// (<c>post_mlp_layernorm</c>).
    /// </summary>
    public bool Glm4 => ModelType == "glm4";

    /// <summary>
    /// A stable, short identity of everything that changes the numerics (SHA-256 over a canonical text form,
    /// first 16 hex digits). Ranks compare it at registration so a cluster never mixes two models.
    /// </summary>
    public int? WindowOf(int layer) =>
        SlidingWindow is int w && (SlidingLayers is null || SlidingLayers[layer]) ? w : null;

    public string Fingerprint
    {
        get
        {
            var ci = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            sb.Append(ci, $"type={ModelType};h={HiddenSize};i={IntermediateSize};l={NumLayers};nh={NumHeads};nkv={NumKvHeads};hd={HeadDim};");
            sb.Append(ci, $"v={VocabSize};mpe={MaxPositionEmbeddings};eps={RmsNormEps:R};theta={RopeTheta:R};tie={TieWordEmbeddings};");
            sb.Append(ci, $"qkvb={QkvBias};ob={OProjBias};sw={SlidingWindow};");
            // Appended only when set, so the fingerprints of models without them stay what they were.
            if (QkNorm) sb.Append("qkn;");
            if (Gemma) sb.Append(ci, $"gemma={Activation},{QueryPreAttentionScalar:R},{LocalRopeTheta:R};");
            if (AttentionSoftcap is not null || FinalLogitSoftcap is not null) sb.Append(ci, $"softcap={AttentionSoftcap:R},{FinalLogitSoftcap:R};");
            if (RopeLayers is not null) sb.Append(ci, $"rope={string.Concat(RopeLayers.Select(b => b ? '1' : '0'))};");
            if (EmbeddingMultiplier is not null || AttentionMultiplier is not null || ResidualMultiplier is not null || LogitsScaling is not null)
                sb.Append(ci, $"mup={EmbeddingMultiplier:R},{AttentionMultiplier:R},{ResidualMultiplier:R},{LogitsScaling:R};");
            if (SlidingLayers is not null) sb.Append(ci, $"swl={string.Concat(SlidingLayers.Select(b => b ? '1' : '0'))};");
            if (PartialRotaryDim is int rotary) sb.Append(ci, $"rot={rotary};");
            if (Moe is { } moe)
                sb.Append(ci, $"moe={moe.Experts},{moe.PerToken},{moe.IntermediateSize},{moe.NormalizeTopK},{(moe.SparseLayers is null ? "all" : string.Concat(moe.SparseLayers.Select(b => b ? '1' : '0')))}{(moe.SharedIntermediateSize > 0 ? $",shared={moe.SharedIntermediateSize}" : "")};");
            switch (RopeScaling)
            {
                case Llama3RopeScaling rs:
                    sb.Append(ci, $"llama3={rs.Factor:R},{rs.LowFreqFactor:R},{rs.HighFreqFactor:R},{rs.OriginalMaxPositionEmbeddings};");
                    break;
                case LinearRopeScaling rs:
                    sb.Append(ci, $"linear={rs.Factor:R};");
                    break;
                case YarnRopeScaling rs:
                    sb.Append(ci, $"yarn={rs.Factor:R},{rs.OriginalMaxPositionEmbeddings},{rs.BetaFast:R},{rs.BetaSlow:R},{rs.AttentionFactor:R},{rs.Truncate};");
                    break;
                case LongRopeScaling rs:
                    sb.Append(ci, $"longrope={string.Join(',', rs.ShortFactor.Select(f => f.ToString("R", ci)))}/{string.Join(',', rs.LongFactor.Select(f => f.ToString("R", ci)))}/{rs.OriginalMaxPositionEmbeddings},{rs.AttentionFactor:R};");
                    break;
            }
            var hash = SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()));
            return Convert.ToHexStringLower(hash, 0, 8);
        }
    }

    /// <summary>Weight count of the model (embedding counted once when tied).</summary>
    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, q = (long)NumHeads * HeadDim, kv = (long)NumKvHeads * HeadDim;
            long perLayer = h * q + 2 * h * kv + q * h + 2 * h;
            if (QkvBias) perLayer += q + 2 * kv;
            if (OProjBias) perLayer += h;
            if (QkNorm) perLayer += 2L * HeadDim;
            if (GemmaOutputNorms || Glm4) perLayer += 2 * h; // the norms of the attention's and the MLP's outputs
            if (Olmo2) perLayer += q + kv; // the whole-projection q and k norms (its two output norms replace the input ones)
            long total = NumLayers * perLayer + (long)VocabSize * h + h;
            for (int l = 0; l < NumLayers; l++)
                total += IsSparse(l) ? Moe!.Experts * (3 * h * Moe.IntermediateSize + h) + (Moe.SharedIntermediateSize > 0 ? 3 * h * Moe.SharedIntermediateSize + h : 0)
                    : 3 * h * IntermediateSize;
            if (!TieWordEmbeddings) total += (long)VocabSize * h;
            return total;
        }
    }

    private static readonly HashSet<string> SupportedModelTypes = new(StringComparer.Ordinal) { "llama", "mistral", "qwen2", "qwen3", "phi3", "granite", "smollm3", "olmo2", "olmo3", "glm4", "gemma", "gemma2", "gemma3_text", "qwen3_moe", "qwen2_moe", "mixtral", "granitemoe" };

    private const string SupportedLine =
        "supported are the decoders llama, mistral, qwen2, qwen3, phi3, granite, smollm3, olmo2, olmo3, glm4, gemma, gemma2 and gemma3_text and the mixture-of-experts qwen3_moe, qwen2_moe, mixtral and granitemoe (and the text models of gemma3 and mistral3); not deepseek or other experts with shared experts besides qwen2_moe's (granitemoeshared), nor phi or phimoe";

    // Fields that only mixture-of-experts configs carry: an MoE model under a dense model_type is refused as MoE.
    private static readonly HashSet<string> MixtureOfExpertsFields = new(StringComparer.Ordinal)
    {
        "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
        "decoder_sparse_step", "n_shared_experts", "shared_expert_intermediate_size", "router_aux_loss_coef",
        "output_router_logits", "mlp_only_layers", "norm_topk_prob", "router_jitter_noise",
    };

    // The fields only some types read: each MoE type's mixture-of-experts fields (the training-only ones, the
    // router's auxiliary loss and its jitter noise, change nothing at inference), phi3's dropouts (training only),
    // its partial_rotary_factor and original_max_position_embeddings (read by longrope scaling), Phi-4-mini's
    // fields of its own remote code (checked to be the values that change nothing), and gemma2's and gemma3_text's own fields.
    private static readonly Dictionary<string, string[]> FieldsOf = new(StringComparer.Ordinal)
    {
        ["qwen3_moe"] = ["num_experts", "num_experts_per_tok", "moe_intermediate_size", "decoder_sparse_step", "norm_topk_prob", "mlp_only_layers", "router_aux_loss_coef", "output_router_logits"],
        // qwen2_moe: qwen3_moe's, its shared expert's width, and qwen2's q/k/v biases (qkv_bias, on by default).
        ["qwen2_moe"] = ["num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size", "decoder_sparse_step",
            "norm_topk_prob", "mlp_only_layers", "router_aux_loss_coef", "output_router_logits", "qkv_bias"],
        ["mixtral"] = ["num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "output_router_logits", "router_jitter_noise"],
        ["phi3"] = ["resid_pdrop", "embd_pdrop", "partial_rotary_factor", "original_max_position_embeddings", "full_attn_mod", "interpolate_factor", "lm_head_bias"],
        // gemma3_text: its own names for the activation and the windows, the two soft-caps (checked to be null), and
        // cache_implementation (how transformers allocates its cache, not what it computes).
        ["gemma3_text"] = ["hidden_activation", "query_pre_attn_scalar", "rope_local_base_freq", "sliding_window_pattern",
            "attn_logit_softcapping", "final_logit_softcapping", "cache_implementation", "use_bidirectional_attention"],
        // gemma2: the same minus the local RoPE base and the window pattern (every other layer is windowed), and with
        // soft-caps that are on by default.
        ["gemma2"] = ["hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "cache_implementation"],
        // gemma: the activation's later name (its published configs carry it beside hidden_act), and the attention's
        // direction (checked to be causal).
        ["gemma"] = ["hidden_activation", "use_bidirectional_attention"],
        // granite: its four µP scalars.
        ["granite"] = ["embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"],
        // granitemoe: granite's scalars and mixtral's experts (the training-only router loss too).
        ["granitemoe"] = ["embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling",
            "num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "output_router_logits"],
        // smollm3: which layers rotate (no_rope_layers, or every no_rope_layer_interval-th without).
        ["smollm3"] = ["no_rope_layers", "no_rope_layer_interval"],
        // glm4: the share of each head that RoPE turns (0.5 when absent).
        ["glm4"] = ["partial_rotary_factor"],
    };

    // Fields that carry no numerics (metadata, training-only knobs, generation defaults).
    private static readonly HashSet<string> IgnoredFields = new(StringComparer.Ordinal)
    {
        "architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache",
        "initializer_range", "attention_dropout", "pad_token_id", "pretraining_tp", "max_window_layers",
        "tokenizer_class", "bos_token_id", "eos_token_id", "model_type", "hidden_size", "intermediate_size",
        "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
        "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "attention_bias",
        "rope_scaling", "hidden_act", "mlp_bias", "sliding_window", "use_sliding_window", "layer_types",
        "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward", "is_decoder",
        "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder", "pruned_heads", "id2label",
        "label2id", "problem_type", "finetuning_task", "task_specific_params", "prefix", "sep_token_id",
        "decoder_start_token_id", "bad_words_ids", "num_beams", "do_sample", "temperature", "top_k", "top_p",
        "repetition_penalty", "max_length", "min_length", "torchscript", "use_bfloat16", "unsloth_version",
        "auto_map", // the classes of a checkpoint's own remote code: which code to load, not what it computes
    };

    /// <summary>Parses and validates a Hugging Face <c>config.json</c>.</summary>
    public static ModelConfig FromHuggingFaceJson(string json, string source = "config.json")
    {
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(json).RootElement;
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{source} is not valid JSON: {e.Message}");
        }
        if (root.ValueKind != JsonValueKind.Object) throw new ModelLoadException($"{source} must hold a JSON object");

        // The model type first: an unsupported architecture is named as such, not by its first unknown field.
        string modelType = RequiredString(root, source, "model_type");
        if (modelType == "gemma3") return FromImageAndTextWrapper(root, source, "gemma3_text", Gemma3TextDefaults);
        if (modelType == "mistral3") return FromImageAndTextWrapper(root, source, "mistral", MistralDefaults);
        if (!SupportedModelTypes.Contains(modelType))
            throw Refuse(source, "model_type", root.GetProperty("model_type"), SupportedLine);
        var typeFields = FieldsOf.GetValueOrDefault(modelType) ?? [];
        bool moeType = typeFields.Any(MixtureOfExpertsFields.Contains);
        foreach (var p in root.EnumerateObject())
        {
            if (MixtureOfExpertsFields.Contains(p.Name) && !typeFields.Contains(p.Name))
                throw Refuse(source, p.Name, p.Value, !moeType
                    ? $"a mixture-of-experts field under the dense model_type {modelType}; " + SupportedLine
                    : $"{modelType} does not read it; " + SupportedLine);
        }
        foreach (var p in root.EnumerateObject())
        {
            if (!IgnoredFields.Contains(p.Name) && !typeFields.Contains(p.Name))
                throw Refuse(source, p.Name, p.Value, "this field is not supported by ActorRing's forward pass; remove it only if it is known to have no effect");
        }

        string activation = "silu";
        double? attentionSoftcap = null, finalSoftcap = null;
        if (modelType is "gemma3_text" or "gemma2")
        {
            string gelu = OptionalString(root, "hidden_activation") ?? "gelu_pytorch_tanh";
            if (gelu != "gelu_pytorch_tanh")
                throw Refuse(source, "hidden_activation", root.GetProperty("hidden_activation"), $"{modelType} runs gelu_pytorch_tanh (GeGLU) only");
            activation = "gelu_tanh";
            if (modelType == "gemma3_text")
            {
                foreach (var cap in new[] { "attn_logit_softcapping", "final_logit_softcapping" })
                    if (root.TryGetProperty(cap, out var c) && c.ValueKind != JsonValueKind.Null)
                        throw Refuse(source, cap, c, "gemma3_text has no soft-capping (Gemma 2 has; use model_type gemma2 for a Gemma 2 model)");
                if (OptionalBool(root, source, "use_bidirectional_attention") == true)
                    throw Refuse(source, "use_bidirectional_attention", true, "only causal attention is supported");
                if (root.TryGetProperty("hidden_act", out var ha))
                    throw Refuse(source, "hidden_act", ha, "gemma3_text reads hidden_activation");
            }
            else
            {
                // Gemma 2's published configs carry hidden_act beside hidden_activation; transformers reads only the
                // latter, and a hidden_act that disagrees with it means the config was edited by hand.
                if (OptionalString(root, "hidden_act") is string ha && ha != "gelu_pytorch_tanh")
                    throw Refuse(source, "hidden_act", root.GetProperty("hidden_act"), "gemma2 runs gelu_pytorch_tanh (GeGLU) only");
                // Gemma2Config's defaults: 50 on the attention scores and 30 on the logits; null turns one off.
                attentionSoftcap = Softcap(root, source, "attn_logit_softcapping", 50.0);
                finalSoftcap = Softcap(root, source, "final_logit_softcapping", 30.0);
            }
        }
        else if (modelType == "gemma")
        {
            // Gemma 1's first configs said hidden_act "gelu" while the model was trained with the tanh GELU (Google's
            // reference code); transformers then added hidden_activation, and read "gelu_pytorch_tanh" when it was
            // absent, as llama.cpp does. An exact (erf) GELU is not implemented, and is not what these weights want.
            string gelu = OptionalString(root, "hidden_activation") ?? OptionalString(root, "hidden_act") ?? "gelu_pytorch_tanh";
            if (gelu is not ("gelu_pytorch_tanh" or "gelu"))
                throw Refuse(source, root.TryGetProperty("hidden_activation", out _) ? "hidden_activation" : "hidden_act", gelu, "gemma runs gelu_pytorch_tanh (GeGLU) only");
            activation = "gelu_tanh";
            if (OptionalBool(root, source, "use_bidirectional_attention") == true)
                throw Refuse(source, "use_bidirectional_attention", true, "only causal attention is supported");
        }
        else
        {
            string act = OptionalString(root, "hidden_act") ?? "silu";
            if (act != "silu") throw Refuse(source, "hidden_act", root.GetProperty("hidden_act"), "only silu (SwiGLU) is supported");
        }
        if (OptionalBool(root, source, "mlp_bias") == true)
            throw Refuse(source, "mlp_bias", root.GetProperty("mlp_bias"), "MLP biases are not supported");

        int hidden = RequiredInt(root, source, "hidden_size");
        int heads = RequiredInt(root, source, "num_attention_heads");
        int kvHeads = OptionalInt(root, source, "num_key_value_heads") ?? heads;
        int headDim = OptionalInt(root, source, "head_dim") ?? (hidden % heads == 0 ? hidden / heads
            : throw new ModelLoadException($"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads} and no head_dim is given"));
        if (heads % kvHeads != 0)
            throw new ModelLoadException($"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        if (headDim % 2 != 0) throw Refuse(source, "head_dim", headDim, "RoPE needs an even head dimension");

        bool attentionBias = OptionalBool(root, source, "attention_bias") ?? false;
        if (modelType is "gemma3_text" or "gemma2" or "gemma" or "olmo2" or "olmo3" && attentionBias) throw Refuse(source, "attention_bias", true, $"{modelType} attention biases are not implemented");
        if (modelType == "phi3")
        {
            if (attentionBias) throw Refuse(source, "attention_bias", true, "phi3 has no attention biases");
            // Phi-4-mini's config carries three fields of its remote code that transformers' Phi3 never reads; at these
            // values they change nothing (one attention kind on every layer, no interpolation, no head bias).
            if (OptionalBool(root, source, "lm_head_bias") == true) throw Refuse(source, "lm_head_bias", true, "an LM head bias is not implemented");
            foreach (var one in new[] { "full_attn_mod", "interpolate_factor" })
                if (OptionalDouble(root, source, one) is double v && v != 1)
                    throw Refuse(source, one, v, "only 1 (as Phi-4-mini ships it) is supported");
        }
        int? partialRotary = null;
        // Glm4Config turns half of each head by default.
        if ((OptionalDouble(root, source, "partial_rotary_factor") ?? (modelType == "glm4" ? 0.5 : null)) is double rotaryFactor && rotaryFactor != 1.0)
        {
            // transformers: int(head_dim * partial_rotary_factor) leading dimensions, rotated half against half.
            int rotary = (int)(headDim * rotaryFactor);
            if (rotaryFactor <= 0 || rotaryFactor > 1 || rotary % 2 != 0 || rotary == 0)
                throw Refuse(source, "partial_rotary_factor", rotaryFactor, $"needs (0, 1] and an even number of rotated dimensions (head_dim {headDim} gives {rotary})");
            partialRotary = rotary;
        }
        bool qkvBias = modelType == "qwen2" || (modelType == "qwen2_moe" && (OptionalBool(root, source, "qkv_bias") ?? true)) || attentionBias;
        // In transformers, llama's (and qwen3's) attention_bias also puts a bias on o_proj; qwen2's o_proj never has one.
        bool oBias = modelType is not ("qwen2" or "qwen2_moe" or "glm4") && attentionBias; // glm4's o_proj has none either
        int layers = RequiredInt(root, source, "num_hidden_layers");
        var (slidingWindow, slidingLayers) = ParseSlidingWindow(root, source, modelType, layers);

        var scaling = ParseRopeScaling(root, source, partialRotary ?? headDim);
        double ropeTheta = OptionalDouble(root, source, "rope_theta") ?? 10000.0;

        var config = new ModelConfig
        {
            ModelType = modelType,
            HiddenSize = hidden,
            IntermediateSize = RequiredInt(root, source, "intermediate_size"),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = RequiredInt(root, source, "vocab_size"),
            MaxPositionEmbeddings = OptionalInt(root, source, "max_position_embeddings") ?? 2048,
            RmsNormEps = OptionalDouble(root, source, "rms_norm_eps") ?? 1e-6,
            RopeTheta = ropeTheta,
            TieWordEmbeddings = OptionalBool(root, source, "tie_word_embeddings") ?? modelType is "gemma3_text" or "gemma2" or "gemma" or "smollm3", // their configs tie by default
            QkvBias = qkvBias,
            OProjBias = oBias,
            QkNorm = modelType is "qwen3" or "qwen3_moe" or "gemma3_text",
            RopeScaling = scaling,
            SlidingWindow = slidingWindow,
            SlidingLayers = slidingLayers,
            BosTokenId = TokenId(root, source, "bos_token_id"), // 0 is a real id (Granite's, DeepSeek's BOS)
            EosTokenIds = root.TryGetProperty("eos_token_id", out var eos) ? eos.ValueKind switch
            {
                JsonValueKind.Number => [eos.GetInt32()],
                JsonValueKind.Array => eos.EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                _ => [],
            } : [],
            Moe = ParseExperts(root, source, modelType, layers),
            Activation = activation,
            QueryPreAttentionScalar = modelType is "gemma3_text" or "gemma2" ? OptionalDouble(root, source, "query_pre_attn_scalar") ?? 256
                : modelType == "gemma" ? headDim : null, // Gemma 1: llama's head_dim^-1/2
            AttentionSoftcap = attentionSoftcap,
            FinalLogitSoftcap = finalSoftcap,
            // GraniteConfig's defaults are 1.0 each; an attention multiplier of 1 is a real scale (not 1/√head_dim).
            EmbeddingMultiplier = modelType is "granite" or "granitemoe" ? OptionalDouble(root, source, "embedding_multiplier") ?? 1.0 : null,
            AttentionMultiplier = modelType is "granite" or "granitemoe" ? OptionalDouble(root, source, "attention_multiplier") ?? 1.0 : null,
            ResidualMultiplier = modelType is "granite" or "granitemoe" ? OptionalDouble(root, source, "residual_multiplier") ?? 1.0 : null,
            LogitsScaling = modelType is "granite" or "granitemoe" ? OptionalDouble(root, source, "logits_scaling") ?? 1.0 : null,
            RopeLayers = modelType == "smollm3" ? ParseRopeLayers(root, source, layers) : null,
            // OLMo 3's windowed layers rotate without the RoPE scaling (its reference code, and llama.cpp): their
            // own tables, at the same base.
            LocalRopeTheta = modelType == "gemma3_text" ? OptionalDouble(root, source, "rope_local_base_freq") ?? 10000
                : modelType == "olmo3" && slidingWindow is not null && scaling is not null ? ropeTheta : null,
            PartialRotaryDim = partialRotary,
        };
        return config;
    }

    /// <summary>
    /// Which layers attend through a window, as transformers decides it. mistral: every layer, with
    /// <c>sliding_window</c> (4096 when the field is absent; null turns it off). qwen2 and qwen3: only when
    /// <c>use_sliding_window</c> is true, and then the layers from <c>max_window_layers</c> on (default 28), unless
    /// <c>layer_types</c> lists each layer's kind. llama has no windowed attention.
    /// </summary>
    private static (int? Window, IReadOnlyList<bool>? Layers) ParseSlidingWindow(JsonElement root, string source, string modelType, int layers)
    {
        bool hasWindow = root.TryGetProperty("sliding_window", out var swEl) && swEl.ValueKind != JsonValueKind.Null;
        int? declared = hasWindow ? RequiredInt(root, source, "sliding_window") : null; // well-formed even where unused
        bool[]? listed = null;
        if (root.TryGetProperty("layer_types", out var typesEl) && typesEl.ValueKind != JsonValueKind.Null)
        {
            if (typesEl.ValueKind != JsonValueKind.Array || typesEl.GetArrayLength() != layers)
                throw Refuse(source, "layer_types", typesEl, $"expected a list of {layers} entries (one per layer) of \"full_attention\" or \"sliding_attention\"");
            listed = new bool[layers];
            int i = 0;
            foreach (var t in typesEl.EnumerateArray())
            {
                listed[i] = t.ValueKind == JsonValueKind.String ? t.GetString() switch
                {
                    "full_attention" => false,
                    "sliding_attention" => true,
                    _ => throw Refuse(source, $"layer_types[{i}]", t, "supported layer types are full_attention and sliding_attention"),
                } : throw Refuse(source, $"layer_types[{i}]", t, "supported layer types are full_attention and sliding_attention");
                i++;
            }
        }

        switch (modelType)
        {
            case "llama" or "granite" or "granitemoe" or "olmo2" or "glm4" or "gemma":
                if (hasWindow)
                    throw Refuse(source, "sliding_window", swEl, $"{modelType} has no sliding-window attention (transformers ignores the field); set it to null, or use model_type mistral if the model was trained with a window");
                if (OptionalBool(root, source, "use_sliding_window") == true)
                    throw Refuse(source, "use_sliding_window", root.GetProperty("use_sliding_window"), $"{modelType} has no sliding-window attention; set it to false");
                if (listed is not null && listed.Any(b => b))
                    throw Refuse(source, "layer_types", typesEl, $"{modelType} has no sliding-window attention");
                return (null, null);
            case "olmo3":
            {
                // Olmo3Config: layer i is windowed unless (i + 1) is a multiple of 4, or as layer_types lists; the
                // window is sliding_window (4096 when absent).
                int window = declared ?? 4096;
                var layersWindowed = listed ?? Enumerable.Range(0, layers).Select(i => (i + 1) % 4 != 0).ToArray();
                return layersWindowed.Any(b => b) ? (window, layersWindowed) : (null, null);
            }
            case "gemma2":
            {
                // Gemma2Config: the even layers are windowed (layer_types' default), by sliding_window (4096 when absent).
                int window = declared ?? 4096;
                var layersWindowed = listed ?? Enumerable.Range(0, layers).Select(i => i % 2 == 0).ToArray();
                return layersWindowed.Any(b => b) ? (window, layersWindowed) : (null, null);
            }
            case "gemma3_text":
            {
                // Gemma3TextConfig: layer i is windowed unless (i + 1) is a multiple of sliding_window_pattern (6), or as
                // layer_types lists; the window is sliding_window (4096 when absent).
                int window = declared ?? 4096;
                int pattern = OptionalInt(root, source, "sliding_window_pattern") ?? 6;
                var layersWindowed = listed ?? Enumerable.Range(0, layers).Select(i => (i + 1) % pattern != 0).ToArray();
                return layersWindowed.Any(b => b) ? (window, layersWindowed) : (null, null);
            }
            case "mistral" or "mixtral" or "phi3":
            {
                int? window = hasWindow ? declared
                    : root.TryGetProperty("sliding_window", out _) || modelType != "mistral" ? null
                    : 4096; // transformers' MistralConfig default when the field is absent (MixtralConfig's and Phi3Config's are none)
                if (window is not null && OptionalBool(root, source, "use_sliding_window") == false)
                    throw Refuse(source, "use_sliding_window", root.GetProperty("use_sliding_window"), $"{modelType} does not read use_sliding_window: its sliding_window {window} applies anyway; set sliding_window to null for full attention");
                if (listed is not null && listed.Any(b => b != (window is not null)))
                    throw Refuse(source, "layer_types", typesEl, $"{modelType} applies sliding_window {(window is null ? "null" : window)} to every layer; remove layer_types");
                return (window, null);
            }
            default: // qwen2, qwen3, qwen3_moe, qwen2_moe, smollm3
            {
                bool used = OptionalBool(root, source, "use_sliding_window") ?? false;
                if (used && !hasWindow)
                    throw Refuse(source, "use_sliding_window", root.GetProperty("use_sliding_window"), "needs a positive sliding_window, which is missing or null");
                int? window = used ? declared : null;
                int firstWindowed = root.TryGetProperty("max_window_layers", out var mwl) && mwl.ValueKind == JsonValueKind.Number
                    ? (mwl.TryGetInt32(out int m) && m >= 0 ? m : throw Refuse(source, "max_window_layers", mwl, "expected a non-negative integer"))
                    : 28; // transformers' Qwen2Config/Qwen3Config default
                var pattern = listed ?? Enumerable.Range(0, layers).Select(i => window is not null && i >= firstWindowed).ToArray();
                if (window is null)
                {
                    if (pattern.Any(b => b))
                        throw Refuse(source, "layer_types", typesEl, "lists sliding_attention layers but use_sliding_window is false or sliding_window is null");
                    return (null, null);
                }
                // A window that no layer uses is full attention: canonical form, so fingerprints agree.
                return pattern.Any(b => b) ? (window, pattern) : (null, null);
            }
        }
    }

    /// <summary>
    /// SmolLM3's layers that rotate, as SmolLM3Config reads them: <c>no_rope_layers</c> (1: RoPE, 0: none, one per
    /// layer), else every <c>no_rope_layer_interval</c>-th layer (4) without. null when every layer rotates.
    /// </summary>
    private static IReadOnlyList<bool>? ParseRopeLayers(JsonElement root, string source, int layers)
    {
        int interval = OptionalInt(root, source, "no_rope_layer_interval") ?? 4;
        bool[] rope;
        if (root.TryGetProperty("no_rope_layers", out var listed) && listed.ValueKind != JsonValueKind.Null)
        {
            if (listed.ValueKind != JsonValueKind.Array || listed.GetArrayLength() != layers
                || listed.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v) || v is not (0 or 1)))
                throw Refuse(source, "no_rope_layers", listed, $"expected {layers} entries (one per layer) of 1 (RoPE) or 0 (none)");
            rope = listed.EnumerateArray().Select(e => e.GetInt32() == 1).ToArray();
        }
        else
        {
            rope = Enumerable.Range(0, layers).Select(i => (i + 1) % interval != 0).ToArray();
        }
        return rope.All(b => b) ? null : rope;
    }

    // Gemma3TextConfig's defaults, which gemma3's published text_configs rely on.
    private static System.Text.Json.Nodes.JsonObject Gemma3TextDefaults() => new()
    {
        ["vocab_size"] = 262208, ["hidden_size"] = 2304, ["intermediate_size"] = 9216, ["num_hidden_layers"] = 26,
        ["num_attention_heads"] = 8, ["num_key_value_heads"] = 4, ["head_dim"] = 256, ["max_position_embeddings"] = 131072,
        ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1_000_000.0, ["query_pre_attn_scalar"] = 256, ["sliding_window"] = 4096,
        ["rope_local_base_freq"] = 10000.0,
    };

    // MistralConfig's defaults for the fields a mistral3 text_config may leave out (sliding_window's default, 4096,
    // is the mistral parser's own when the field is absent).
    private static System.Text.Json.Nodes.JsonObject MistralDefaults() => new()
    {
        ["vocab_size"] = 32000, ["hidden_size"] = 4096, ["intermediate_size"] = 14336, ["num_hidden_layers"] = 32,
        ["num_attention_heads"] = 32, ["num_key_value_heads"] = 8, ["max_position_embeddings"] = 4096 * 32,
        ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0,
    };

    /// <summary>
    /// Gemma 3 4B, 12B and 27B (<c>gemma3</c>) and Mistral Small 3.1 and 3.2 (<c>mistral3</c>) ship as
    /// image-and-text models whose <c>text_config</c> is a gemma3_text or mistral model; that text part is served
    /// (the vision tower is not loaded, and the checkpoint's <c>language_model.</c> tensors are read under our
    /// names). A text_config lists only what differs from its config class's defaults, so those fill the rest;
    /// bos/eos come from the outer config when the inner one has none.
    /// </summary>
    private static ModelConfig FromImageAndTextWrapper(JsonElement root, string source, string textType, Func<System.Text.Json.Nodes.JsonObject> defaults)
    {
        string outer = OptionalString(root, "model_type")!;
        if (!root.TryGetProperty("text_config", out var text) || text.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"{source}: a {outer} (image and text) config needs a text_config object; its text model is what is served");
        if (OptionalString(text, "model_type") is string inner && inner != textType)
            throw Refuse(source + " (text_config)", "model_type", inner, $"a {outer} model's text model is {textType}");
        var fields = defaults();
        foreach (var p in text.EnumerateObject()) fields[p.Name] = System.Text.Json.Nodes.JsonNode.Parse(p.Value.GetRawText());
        fields["model_type"] = textType;
        foreach (var id in new[] { "bos_token_id", "eos_token_id" })
            if (!fields.ContainsKey(id) && root.TryGetProperty(id, out var v)) fields[id] = System.Text.Json.Nodes.JsonNode.Parse(v.GetRawText());
        return FromHuggingFaceJson(fields.ToJsonString(), source + " (text_config)");
    }

    /// <summary>
    /// <c>rope_scaling</c> as transformers reads it: null, <c>default</c> (none), <c>linear</c>, <c>llama3</c>,
    /// <c>yarn</c> or <c>longrope</c> (also under its old name <c>su</c>, with a factor per rotated pair:
    /// <paramref name="rotaryDim"/> / 2); other types (<c>dynamic</c>, ...) and fields a type does not read are refused.
    /// </summary>
    private static RopeScaling? ParseRopeScaling(JsonElement root, string source, int rotaryDim)
    {
        if (!root.TryGetProperty("rope_scaling", out var rsEl) || rsEl.ValueKind == JsonValueKind.Null) return null;
        if (rsEl.ValueKind != JsonValueKind.Object) throw Refuse(source, "rope_scaling", rsEl, "expected an object or null");
        string? type = OptionalString(rsEl, "rope_type") ?? OptionalString(rsEl, "type");
        string[] fields = type switch
        {
            "default" => [],
            "linear" => ["factor"],
            "llama3" => ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
            "yarn" => ["factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"],
            "longrope" or "su" => ["long_factor", "short_factor", "factor", "attention_factor", "original_max_position_embeddings"],
            _ => throw Refuse(source, "rope_scaling.rope_type", type ?? "(missing)", "supported are linear, llama3, yarn and longrope"),
        };
        foreach (var p in rsEl.EnumerateObject())
        {
            if (p.Name is not ("rope_type" or "type") && !fields.Contains(p.Name))
                throw Refuse(source, "rope_scaling." + p.Name, p.Value, $"not a {type} rope_scaling field");
        }
        double Required(string name) => RequiredDouble(rsEl, source, "rope_scaling." + name, name);
        double? Optional(string name) => OptionalDouble(rsEl, source, name, "rope_scaling." + name);
        switch (type)
        {
            case "linear":
                return new LinearRopeScaling(Required("factor"));
            case "llama3":
            {
                var scaling = new Llama3RopeScaling(Required("factor"), Required("low_freq_factor"), Required("high_freq_factor"),
                    (int)Required("original_max_position_embeddings"));
                if (scaling.Factor <= 0 || scaling.HighFreqFactor <= scaling.LowFreqFactor || scaling.OriginalMaxPositionEmbeddings <= 0)
                    throw Refuse(source, "rope_scaling", rsEl, "needs factor > 0, high_freq_factor > low_freq_factor and original_max_position_embeddings > 0");
                return scaling;
            }
            case "yarn":
            {
                double factor = Required("factor");
                // transformers' get_mscale: 0.1·mscale·ln(factor) + 1, and 1 for a factor of at most 1.
                static double MScale(double factor, double m) => factor <= 1 ? 1 : 0.1 * m * Math.Log(factor) + 1;
                double? mscale = Optional("mscale"), mscaleAllDim = Optional("mscale_all_dim");
                double attention = Optional("attention_factor")
                    ?? (mscale is double m && mscaleAllDim is double all ? MScale(factor, m) / MScale(factor, all) : MScale(factor, 1));
                int original = (int)(Optional("original_max_position_embeddings")
                    ?? OptionalInt(root, source, "max_position_embeddings")
                    ?? throw new ModelLoadException($"{source}: yarn rope_scaling needs original_max_position_embeddings (or max_position_embeddings)"));
                bool truncate = OptionalBool(rsEl, source, "truncate") ?? true;
                return new YarnRopeScaling(factor, original, Optional("beta_fast") ?? 32, Optional("beta_slow") ?? 1, attention, truncate);
            }
            case "longrope" or "su":
            {
                float[] Factors(string name)
                {
                    if (!rsEl.TryGetProperty(name, out var a) || a.ValueKind != JsonValueKind.Array || a.EnumerateArray().Any(f => f.ValueKind != JsonValueKind.Number))
                        throw new ModelLoadException($"{source}: longrope rope_scaling needs {name}, an array of numbers");
                    var factors = a.EnumerateArray().Select(f => f.GetSingle()).ToArray();
                    if (factors.Length != rotaryDim / 2 || factors.Any(f => !(f > 0) || float.IsInfinity(f)))
                        throw Refuse(source, "rope_scaling." + name, $"{factors.Length} factors", $"needs {rotaryDim / 2} positive factors, one per rotated pair of dimensions");
                    return factors;
                }
                // transformers: a config with a top-level original_max_position_embeddings (Phi-3) takes the factor as
                // max / original positions; otherwise rope_scaling's own factor and original.
                int max = OptionalInt(root, source, "max_position_embeddings") ?? 2048;
                double factor;
                int original;
                if (OptionalInt(root, source, "original_max_position_embeddings") is int top)
                {
                    original = top;
                    factor = (double)max / top;
                }
                else
                {
                    original = (int)(Optional("original_max_position_embeddings") ?? max);
                    factor = Optional("factor") ?? 1.0;
                }
                if (original <= 0) throw Refuse(source, "original_max_position_embeddings", original, "must be positive");
                double attention = Optional("attention_factor") ?? (factor <= 1 ? 1 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(original)));
                return new LongRopeScaling(Factors("short_factor"), Factors("long_factor"), original, attention);
            }
            default:
                return null;
        }
    }

    /// <summary>
    /// The experts of a qwen3_moe or mixtral config, as transformers reads them. qwen3_moe: <c>num_experts</c> of
    /// <c>moe_intermediate_size</c>, layer l sparse when it is not in <c>mlp_only_layers</c> and (l + 1) is a
    /// multiple of <c>decoder_sparse_step</c> (default 1), the top-k weights renormalized when <c>norm_topk_prob</c>.
    /// mixtral: <c>num_local_experts</c> of <c>intermediate_size</c> on every layer, always renormalized. qwen2_moe:
    /// qwen3_moe's, and a shared expert of <c>shared_expert_intermediate_size</c> in every sparse layer.
    /// </summary>
    private static MixtureOfExperts? ParseExperts(JsonElement root, string source, string modelType, int layers)
    {
        if (modelType is not ("qwen3_moe" or "qwen2_moe" or "mixtral" or "granitemoe")) return null;
        bool qwen = modelType is "qwen3_moe" or "qwen2_moe";
        string expertsField = qwen ? "num_experts" : "num_local_experts";
        int experts = RequiredInt(root, source, expertsField);
        int perToken = RequiredInt(root, source, "num_experts_per_tok");
        if (perToken > experts)
            throw Refuse(source, "num_experts_per_tok", perToken, $"more than the {experts} experts ({expertsField})");
        int size = qwen ? RequiredInt(root, source, "moe_intermediate_size") : RequiredInt(root, source, "intermediate_size");
        bool[]? sparse = null;
        if (qwen)
        {
            int step = OptionalInt(root, source, "decoder_sparse_step") ?? 1;
            var dense = new HashSet<int>();
            if (root.TryGetProperty("mlp_only_layers", out var only) && only.ValueKind != JsonValueKind.Null)
            {
                if (only.ValueKind != JsonValueKind.Array)
                    throw Refuse(source, "mlp_only_layers", only, "expected a list of layer indices");
                foreach (var e in only.EnumerateArray())
                    dense.Add(e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int l) && l >= 0 && l < layers ? l
                        : throw Refuse(source, "mlp_only_layers", only, $"expected layer indices in [0, {layers})"));
            }
            var pattern = Enumerable.Range(0, layers).Select(l => !dense.Contains(l) && (l + 1) % step == 0).ToArray();
            if (!pattern.Any(b => b))
                throw Refuse(source, "decoder_sparse_step", step, $"no layer is left with experts (mlp_only_layers and decoder_sparse_step exclude them all); use model_type {(modelType == "qwen2_moe" ? "qwen2" : "qwen3")} for a dense model");
            sparse = pattern.All(b => b) ? null : pattern;
        }
        int shared = modelType == "qwen2_moe" ? RequiredInt(root, source, "shared_expert_intermediate_size") : 0;
        return new MixtureOfExperts(experts, perToken, size, qwen ? OptionalBool(root, source, "norm_topk_prob") ?? false : true, sparse, shared);
    }

    private static ModelLoadException Refuse(string source, string field, object value, string why)
    {
        string shown = value is JsonElement e ? e.GetRawText() : Convert.ToString(value, CultureInfo.InvariantCulture) ?? "null";
        return new ModelLoadException($"{source}: unsupported {field} = {shown}: {why}");
    }

    private static int RequiredInt(JsonElement root, string source, string name) =>
        OptionalInt(root, source, name) ?? throw new ModelLoadException($"{source}: required field {name} is missing");

    private static int? OptionalInt(JsonElement root, string source, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i) || i <= 0)
            throw new ModelLoadException($"{source}: field {name} must be a positive integer, got {v.GetRawText()}");
        return i;
    }

    private static int? TokenId(JsonElement root, string source, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int id) || id < 0)
            throw new ModelLoadException($"{source}: field {name} must be a token id (an integer of 0 or more), got {v.GetRawText()}");
        return id;
    }

    private static double RequiredDouble(JsonElement root, string source, string shownName, string name) =>
        OptionalDouble(root, source, name, shownName) ?? throw new ModelLoadException($"{source}: required field {shownName} is missing");

    private static double? OptionalDouble(JsonElement root, string source, string name, string? shownName = null)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !double.IsFinite(v.GetDouble()) || v.GetDouble() <= 0)
            throw new ModelLoadException($"{source}: field {shownName ?? name} must be a positive number, got {v.GetRawText()}");
        return v.GetDouble();
    }

    /// <summary>A soft-cap as transformers reads it: absent means <paramref name="fallback"/> (the config class's
    /// default), null means none, and otherwise a positive number (0 would divide by zero).</summary>
    private static double? Softcap(JsonElement root, string source, string name, double fallback) =>
        !root.TryGetProperty(name, out var v) ? fallback : OptionalDouble(root, source, name);

    private static bool? OptionalBool(JsonElement root, string source, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelLoadException($"{source}: field {name} must be true or false, got {v.GetRawText()}"),
        };
    }

    private static string RequiredString(JsonElement root, string source, string name) =>
        OptionalString(root, name) ?? throw new ModelLoadException($"{source}: required field {name} is missing");

    private static string? OptionalString(JsonElement root, string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}

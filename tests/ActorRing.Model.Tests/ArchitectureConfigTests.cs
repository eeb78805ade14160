namespace ActorRing.Model.Tests;

/// <summary>config.json of the architectures people run: how qwen3, windows and tied heads are read, and what is refused.</summary>
public class ArchitectureConfigTests
{
    // Qwen/Qwen3-0.6B's config.json as published.
    private const string Qwen3 = """
        {"architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
         "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02,
         "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
         "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
         "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
         "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
         "vocab_size": 151936}
        """;

    // mistralai/Mistral-7B-v0.1's config.json as published.
    private const string Mistral = """
        {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
         "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
         "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
         "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000}
        """;

    // A small qwen2 in Qwen2.5's layout; the tests switch its window on and off.
    private const string Qwen2 = """
        {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 512,
         "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 131072, "max_window_layers": 2}
        """;

    private static ModelConfig Parse(string json) => ModelConfig.FromHuggingFaceJson(json);

    private static string Refusal(string json) => Assert.Throws<ModelLoadException>(() => Parse(json)).Message;

    [Fact]
    public void Qwen3_has_qk_norms_no_biases_an_independent_head_dim_and_a_tied_head()
    {
        var c = Parse(Qwen3);
        Assert.Equal(("qwen3", true, false, false, 128, 1024 / 16, true, (int?)null),
            (c.ModelType, c.QkNorm, c.QkvBias, c.OProjBias, c.HeadDim, c.HiddenSize / c.NumHeads, c.TieWordEmbeddings, c.SlidingWindow));
        // Qwen3-0.6B: 0.6B parameters counted once with the tied embedding, q_norm/k_norm included.
        Assert.Equal(596_049_920, c.ParameterCount);
        Assert.NotEqual(c.Fingerprint, Parse(Qwen3.Replace("\"qwen3\"", "\"qwen2\"").Replace("\"attention_bias\": false,", "")).Fingerprint);
    }

    // Qwen/Qwen3-30B-A3B's config.json.
    private const string Qwen3Moe = """
        {"architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
         "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
         "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
         "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": true,
         "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
         "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_scaling": null,
         "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
         "vocab_size": 151936}
        """;

    // mistralai/Mixtral-8x7B-v0.1's config.json.
    private const string Mixtral = """
        {"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
         "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
         "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
         "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": null,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0",
         "use_cache": true, "vocab_size": 32000}
        """;

    // microsoft/Phi-3-mini-4k-instruct's config.json (auto_map shortened).
    private const string Phi3 = """
        {"_name_or_path": "Phi-3-mini-4k-instruct", "architectures": ["Phi3ForCausalLM"], "attention_dropout": 0.0,
         "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config", "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"},
         "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072,
         "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 4096, "model_type": "phi3",
         "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096,
         "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
         "sliding_window": 2047, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.2",
         "use_cache": true, "attention_bias": false, "vocab_size": 32064}
        """;

    // google/gemma-3-1b-it's config.json.
    private const string Gemma3 = """
        {"architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": null,
         "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 106], "final_logit_softcapping": null,
         "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
         "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
         "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0, "query_pre_attn_scalar": 256,
         "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": null, "rope_theta": 1000000,
         "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
         "use_cache": true, "vocab_size": 262144}
        """;

    [Fact]
    public void Gemma3_text_reads_its_windows_its_two_rope_bases_and_its_activation()
    {
        var c = Parse(Gemma3);
        Assert.Equal(("gemma3_text", true, "gelu_tanh", 256.0, 10000.0, 1_000_000.0, true, 512), (c.ModelType, c.Gemma, c.Activation,
            c.QueryPreAttentionScalar, c.LocalRopeTheta, c.RopeTheta, c.TieWordEmbeddings, c.SlidingWindow));
        // Every sixth layer attends globally: 5, 11, 17, 23.
        Assert.Equal([5, 11, 17, 23], Enumerable.Range(0, 26).Where(l => c.WindowOf(l) is null));
        Assert.Equal([1, 106], c.EosTokenIds);
        Assert.Equal(10, Math.Round(c.ParameterCount / 1e8)); // "1B" (999,885,952 weights)
        Assert.Contains("unsupported final_logit_softcapping = 30.0: gemma3_text has no soft-capping (Gemma 2 has; use model_type gemma2",
            Refusal(Gemma3.Replace("\"final_logit_softcapping\": null", "\"final_logit_softcapping\": 30.0")));
        Assert.Contains("unsupported hidden_activation = \"gelu\": gemma3_text runs gelu_pytorch_tanh",
            Refusal(Gemma3.Replace("\"gelu_pytorch_tanh\"", "\"gelu\"")));
        Assert.Contains("a gemma3 (image and text) config needs a text_config object", Refusal(Gemma3.Replace("\"gemma3_text\"", "\"gemma3\"")));

        // google/gemma-3-4b-it's config.json (vision_config shortened): its text_config lists only what differs from
        // Gemma3TextConfig's defaults.
        var wrapped = Parse("""
            {"architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
             "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
             "model_type": "gemma3", "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
             "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
             "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
             "vision_config": {"hidden_size": 1152, "image_size": 896, "model_type": "siglip_vision_model"}}
            """);
        Assert.Equal(("gemma3_text", 2560, 34, 8, 4, 256, 262208, 1024, 1_000_000.0, (RopeScaling?)new LinearRopeScaling(8)),
            (wrapped.ModelType, wrapped.HiddenSize, wrapped.NumLayers, wrapped.NumHeads, wrapped.NumKvHeads, wrapped.HeadDim,
             wrapped.VocabSize, wrapped.SlidingWindow, wrapped.RopeTheta, wrapped.RopeScaling));
        Assert.Equal([1, 106], wrapped.EosTokenIds);
        Assert.Equal(39, Math.Round(wrapped.ParameterCount / 1e8)); // the text model's 3.9B of the 4.3B
    }

    // google/gemma-2b's config.json as first published (hidden_act "gelu"; transformers 4.38).
    private const string Gemma1 = """
        {"architectures": ["GemmaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 2,
         "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_size": 2048, "initializer_range": 0.02,
         "intermediate_size": 16384, "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
         "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": null,
         "rope_theta": 10000.0, "torch_dtype": "bfloat16", "transformers_version": "4.38.0.dev0", "use_cache": true,
         "vocab_size": 256000}
        """;

    [Fact]
    public void Gemma1_is_a_llama_layer_with_gemma_embeddings_norms_and_geglu()
    {
        var c = Parse(Gemma1);
        // The tanh GELU though the config says "gelu" (Google's reference, llama.cpp, and transformers from 4.39 when
        // hidden_activation is absent); attention scaled by head_dim^-1/2; no output norms, soft-caps or windows.
        Assert.Equal(("gemma", true, false, "gelu_tanh", 256.0, true, (int?)null, (double?)null, (double?)null), (c.ModelType, c.Gemma,
            c.GemmaOutputNorms, c.Activation, c.QueryPreAttentionScalar, c.TieWordEmbeddings, c.SlidingWindow, c.AttentionSoftcap, c.FinalLogitSoftcap));
        Assert.Equal([1], c.EosTokenIds);
        Assert.Equal(2_506_172_416, c.ParameterCount); // "2.51B": 18 layers of 110,104,576 and the tied 256000 x 2048 embeddings
        // The later configs' hidden_activation beside hidden_act reads the same model.
        Assert.Equal(c.Fingerprint, Parse(Gemma1.Replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"gelu\", \"hidden_activation\": \"gelu_pytorch_tanh\"")).Fingerprint);

        var relu = Assert.Throws<ModelLoadException>(() => Parse(Gemma1.Replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"")));
        Assert.Contains("unsupported hidden_act = relu: gemma runs gelu_pytorch_tanh (GeGLU) only", relu.Message);
        var both = Assert.Throws<ModelLoadException>(() => Parse(Gemma1.Replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"gelu\", \"hidden_activation\": \"silu\"")));
        Assert.Contains("unsupported hidden_activation = silu", both.Message);
        var bidirectional = Assert.Throws<ModelLoadException>(() => Parse(Gemma1.Replace("\"use_cache\": true", "\"use_cache\": true, \"use_bidirectional_attention\": true")));
        Assert.Contains("only causal attention is supported", bidirectional.Message);
        var window = Assert.Throws<ModelLoadException>(() => Parse(Gemma1.Replace("\"use_cache\": true", "\"use_cache\": true, \"sliding_window\": 4096")));
        Assert.Contains("gemma has no sliding-window attention", window.Message);
    }

    // google/gemma-2-2b-it's config.json.
    private const string Gemma2 = """
        {"architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": 50.0,
         "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 107], "final_logit_softcapping": 30.0,
         "head_dim": 256, "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304,
         "initializer_range": 0.02, "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
         "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
         "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
         "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": true, "vocab_size": 256000}
        """;

    [Fact]
    public void Gemma2_reads_its_soft_caps_and_windows_every_other_layer()
    {
        var c = Parse(Gemma2);
        Assert.Equal(("gemma2", true, "gelu_tanh", 256.0, (double?)null, 10000.0, true, 4096, false), (c.ModelType, c.Gemma, c.Activation,
            c.QueryPreAttentionScalar, c.LocalRopeTheta, c.RopeTheta, c.TieWordEmbeddings, c.SlidingWindow, c.QkNorm));
        Assert.Equal((50.0, 30.0), (c.AttentionSoftcap, c.FinalLogitSoftcap));
        // Gemma2Config: the even layers windowed, the odd ones global.
        Assert.Equal(Enumerable.Range(0, 13).Select(i => 2 * i + 1), Enumerable.Range(0, 26).Where(l => c.WindowOf(l) is null));
        Assert.Equal([1, 107], c.EosTokenIds);
        Assert.Equal(26, Math.Round(c.ParameterCount / 1e8)); // "2B" (2,614,341,888 weights)

        // Absent caps take Gemma2Config's defaults; null turns one off, and the fingerprint tells the three apart.
        var absent = Parse(Gemma2.Replace("\"attn_logit_softcapping\": 50.0, ", "").Replace("\"final_logit_softcapping\": 30.0, ", ""));
        Assert.Equal((50.0, 30.0), (absent.AttentionSoftcap, absent.FinalLogitSoftcap));
        Assert.Equal(c.Fingerprint, absent.Fingerprint);
        var off = Parse(Gemma2.Replace("\"final_logit_softcapping\": 30.0", "\"final_logit_softcapping\": null"));
        Assert.Equal((50.0, (double?)null), (off.AttentionSoftcap, off.FinalLogitSoftcap));
        Assert.NotEqual(c.Fingerprint, off.Fingerprint);
        Assert.NotEqual(c.Fingerprint, Parse(Gemma2.Replace("50.0", "40.0")).Fingerprint);

        Assert.Contains("field attn_logit_softcapping must be a positive number, got 0", Refusal(Gemma2.Replace("50.0", "0")));
        Assert.Contains("unsupported hidden_act = \"gelu\": gemma2 runs gelu_pytorch_tanh", Refusal(Gemma2.Replace("\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"gelu\"")));
        Assert.Contains("unsupported attention_bias = True: gemma2 attention biases are not implemented", Refusal(Gemma2.Replace("\"attention_bias\": false", "\"attention_bias\": true")));
        // A field of Gemma 3's that Gemma 2 does not read.
        Assert.Contains("unsupported rope_local_base_freq = 10000", Refusal(Gemma2.Replace("\"use_cache\": true", "\"rope_local_base_freq\": 10000")));
    }

    // The fields of IBM Granite 3.x 2B instruct's config.json (granite-3.1-2b-instruct's values).
    private const string Granite = """
        {"architectures": ["GraniteForCausalLM"], "attention_bias": false, "attention_dropout": 0.1, "attention_multiplier": 0.015625,
         "bos_token_id": 0, "embedding_multiplier": 12.0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 2048,
         "initializer_range": 0.02, "intermediate_size": 8192, "logits_scaling": 8.0, "max_position_embeddings": 131072,
         "mlp_bias": false, "model_type": "granite", "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8,
         "pad_token_id": 0, "residual_multiplier": 0.22, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 5000000.0,
         "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.47.0", "use_cache": true, "vocab_size": 49155}
        """;

    [Fact]
    public void Granite_reads_its_four_multipliers()
    {
        var c = Parse(Granite);
        Assert.Equal(("granite", 64, 12.0, 0.015625, 0.22, 8.0, true, (int?)null), (c.ModelType, c.HeadDim, c.EmbeddingMultiplier,
            c.AttentionMultiplier, c.ResidualMultiplier, c.LogitsScaling, c.TieWordEmbeddings, c.SlidingWindow));
        Assert.False(c.Gemma);
        Assert.Equal(0, c.BosTokenId); // id 0 is a real BOS (was refused as "must be a positive integer")
        Assert.Equal(25, Math.Round(c.ParameterCount / 1e8)); // "2B" (2,533,531,648 weights)
        // GraniteConfig's defaults are 1 each, and an attention multiplier of 1 stays 1 (not 1/√head_dim).
        string noScalars = System.Text.RegularExpressions.Regex.Replace(Granite, "\"(attention|embedding|residual)_multiplier\": [0-9.]+,\\s*|\"logits_scaling\": [0-9.]+,\\s*", "");
        var plain = Parse(noScalars);
        Assert.Equal((1.0, 1.0, 1.0, 1.0), (plain.EmbeddingMultiplier, plain.AttentionMultiplier, plain.ResidualMultiplier, plain.LogitsScaling));
        Assert.NotEqual(c.Fingerprint, plain.Fingerprint);
        Assert.NotEqual(c.Fingerprint, Parse(Granite.Replace("0.22", "0.25")).Fingerprint);
        // A llama config has none of them.
        Assert.Null(Parse(noScalars.Replace("\"granite\"", "\"llama\"")).EmbeddingMultiplier);

        Assert.Contains("field logits_scaling must be a positive number, got 0", Refusal(Granite.Replace("\"logits_scaling\": 8.0", "\"logits_scaling\": 0")));
        Assert.Contains("unsupported sliding_window = 4096: granite has no sliding-window attention", Refusal(Granite.Replace("\"use_cache\": true", "\"sliding_window\": 4096")));
        // The multipliers under llama are not read by transformers' Llama: refused, not ignored.
        Assert.Contains("unsupported attention_multiplier = 0.015625", Refusal(Granite.Replace("\"granite\"", "\"llama\"")));
    }

    // A Granite 3.0 1B-A400M-shaped granitemoe config: Granite's scalars, 32 experts of 512, 8 per token.
    private const string GraniteMoe = """
        {"architectures": ["GraniteMoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.1, "attention_multiplier": 0.015625,
         "bos_token_id": 0, "embedding_multiplier": 12.0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 1024,
         "initializer_range": 0.02, "intermediate_size": 512, "logits_scaling": 6.0, "max_position_embeddings": 4096,
         "model_type": "granitemoe", "num_attention_heads": 16, "num_experts_per_tok": 8, "num_hidden_layers": 24,
         "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 0,
         "residual_multiplier": 0.22, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000, "router_aux_loss_coef": 0.0,
         "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.46.0", "use_cache": true, "vocab_size": 49155}
        """;

    [Fact]
    public void GraniteMoe_reads_granites_multipliers_and_mixtral_style_experts()
    {
        var c = Parse(GraniteMoe);
        Assert.Equal(("granitemoe", 12.0, 0.015625, 0.22, 6.0, true), (c.ModelType, c.EmbeddingMultiplier, c.AttentionMultiplier,
            c.ResidualMultiplier, c.LogitsScaling, c.TieWordEmbeddings));
        // Every layer sparse; the gates are a softmax over the top k logits, which is the renormalized top k.
        Assert.Equal(new MixtureOfExperts(32, 8, 512, true, null), c.Moe);
        Assert.Equal(13, Math.Round(c.ParameterCount / 1e8)); // 1.3B in all, about 0.4B active per token
        Assert.Contains("unsupported num_experts_per_tok = 33: more than the 32 experts", Refusal(GraniteMoe.Replace("\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 33")));
        Assert.Contains("unsupported shared_intermediate_size = 1024", Refusal(GraniteMoe.Replace("\"use_cache\": true", "\"shared_intermediate_size\": 1024")));
        Assert.Contains("unsupported model_type = \"granitemoeshared\"", Refusal(GraniteMoe.Replace("\"granitemoe\"", "\"granitemoeshared\"")));
    }

    // The fields of SmolLM3-3B's config.json (no_rope_layers written out, as it ships).
    private static readonly string SmolLM3 = $$"""
        {"architectures": ["SmolLM3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": null,
         "eos_token_id": 128012, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008,
         "max_position_embeddings": 65536, "max_window_layers": 28, "mlp_bias": false, "model_type": "smollm3",
         "no_rope_layer_interval": 4, "no_rope_layers": [{{string.Join(", ", Enumerable.Range(0, 36).Select(i => (i + 1) % 4 != 0 ? 1 : 0))}}],
         "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 4, "pad_token_id": 128004, "pretraining_tp": 2,
         "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 5000000.0, "sliding_window": null, "torch_dtype": "bfloat16",
         "transformers_version": "4.54.0.dev0", "use_cache": false, "use_sliding_window": false, "vocab_size": 128256}
        """;

    [Fact]
    public void SmolLM3_turns_rope_off_on_its_nope_layers()
    {
        var c = Parse(SmolLM3);
        Assert.Equal(("smollm3", true, (int?)null, (int?)null, 128), (c.ModelType, c.TieWordEmbeddings, c.BosTokenId, c.SlidingWindow, c.HeadDim));
        Assert.Equal([3, 7, 11, 15, 19, 23, 27, 31, 35], Enumerable.Range(0, 36).Where(l => !c.UsesRope(l)));
        Assert.Equal(31, Math.Round(c.ParameterCount / 1e8)); // "3B" (3,075,098,624 weights)
        // Without the list, the interval says the same; with it, the list rules.
        string withoutList = System.Text.RegularExpressions.Regex.Replace(SmolLM3, "\"no_rope_layers\": \\[[0-9, ]+\\],\\s*", "");
        Assert.Equal(c.Fingerprint, Parse(withoutList).Fingerprint);
        Assert.Equal([1, 3, 5], Enumerable.Range(0, 6).Where(l => !Parse(withoutList.Replace("\"num_hidden_layers\": 36", "\"num_hidden_layers\": 6")
            .Replace("\"no_rope_layer_interval\": 4", "\"no_rope_layer_interval\": 2")).UsesRope(l)));
        // Every layer rotating is plain llama's fingerprint form (no list).
        Assert.Null(Parse(withoutList.Replace("\"no_rope_layer_interval\": 4", "\"no_rope_layer_interval\": 100")).RopeLayers);
        Assert.Contains("unsupported no_rope_layers = [1, 2]: expected 36 entries (one per layer) of 1 (RoPE) or 0 (none)",
            Refusal(withoutList.Replace("\"no_rope_layer_interval\": 4", "\"no_rope_layers\": [1, 2]")));
    }

    [Fact]
    public void Mistral_small_3_1_serves_its_text_model()
    {
        // mistralai/Mistral-Small-3.1-24B-Instruct-2503's config.json (vision_config shortened): a mistral3 config whose
        // text_config lists what differs from MistralConfig's defaults.
        const string json = """
            {"architectures": ["Mistral3ForConditionalGeneration"], "image_token_index": 10, "model_type": "mistral3",
             "multimodal_projector_bias": false, "projector_hidden_act": "gelu", "spatial_merge_size": 2,
             "text_config": {"head_dim": 128, "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 32768,
               "max_position_embeddings": 131072, "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 40,
               "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000000.0, "sliding_window": null, "vocab_size": 131072},
             "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
             "vision_config": {"head_dim": 64, "hidden_size": 1024, "model_type": "pixtral", "patch_size": 14}, "vision_feature_layer": -1}
            """;
        var c = Parse(json);
        Assert.Equal(("mistral", 5120, 40, 32, 8, 128, 131072, (int?)null, 1e9, false), (c.ModelType, c.HiddenSize, c.NumLayers, c.NumHeads,
            c.NumKvHeads, c.HeadDim, c.VocabSize, c.SlidingWindow, c.RopeTheta, c.TieWordEmbeddings));
        Assert.Equal(236, Math.Round(c.ParameterCount / 1e8)); // the text model's 23.6B of the 24B
        // A text_config that leaves sliding_window out gets MistralConfig's 4096; one of another type is refused.
        Assert.Equal(4096, Parse(json.Replace("\"sliding_window\": null, ", "")).SlidingWindow);
        Assert.Contains("unsupported model_type = llama: a mistral3 model's text model is mistral",
            Refusal(json.Replace("\"model_type\": \"mistral\"", "\"model_type\": \"llama\"")));
        Assert.Contains("a mistral3 (image and text) config needs a text_config object", Refusal("""{"model_type": "mistral3"}"""));
    }

    [Fact]
    public void Qwen2_moe_reads_its_shared_expert_and_qkv_biases()
    {
        // The fields of Qwen/Qwen1.5-MoE-A2.7B's config.json.
        const string json = """
            {"architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "decoder_sparse_step": 1,
             "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
             "max_position_embeddings": 8192, "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408,
             "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24,
             "num_key_value_heads": 16, "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
             "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": false,
             "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936}
            """;
        var c = Parse(json);
        Assert.Equal(new MixtureOfExperts(60, 4, 1408, false, null, 5632), c.Moe);
        Assert.Equal((true, false, (int?)null), (c.QkvBias, c.OProjBias, c.SlidingWindow));
        Assert.Equal(143, Math.Round(c.ParameterCount / 1e8)); // "14.3B total" (14,315,784,192 weights)
        Assert.NotEqual(c.Fingerprint, Parse(json.Replace("\"shared_expert_intermediate_size\": 5632", "\"shared_expert_intermediate_size\": 2816")).Fingerprint);
        Assert.False(Parse(json.Replace("\"use_cache\": true", "\"qkv_bias\": false")).QkvBias);
        Assert.Contains("required field shared_expert_intermediate_size is missing",
            Refusal(json.Replace("\"shared_expert_intermediate_size\": 5632, ", "")));
        // qwen3_moe has no shared expert: the field is refused there.
        Assert.Contains("unsupported shared_expert_intermediate_size = 5632: qwen3_moe does not read it",
            Refusal(json.Replace("\"qwen2_moe\"", "\"qwen3_moe\"")));
    }

    [Fact]
    public void Glm4_turns_half_of_each_head_and_fuses_gate_and_up()
    {
        // The fields of THUDM/GLM-4-9B-0414's config.json.
        const string json = """
            {"architectures": ["Glm4ForCausalLM"], "attention_bias": true, "attention_dropout": 0.0, "eos_token_id": [151329, 151336, 151338],
             "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 13696,
             "max_position_embeddings": 32768, "model_type": "glm4", "num_attention_heads": 32, "num_hidden_layers": 40,
             "num_key_value_heads": 2, "pad_token_id": 151329, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
             "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.52.0.dev0", "use_cache": true, "vocab_size": 151552}
            """;
        var c = Parse(json);
        Assert.Equal(("glm4", true, true, false, false, true, 64), (c.ModelType, c.Glm4, c.QkvBias, c.OProjBias, c.FusedProjections, c.FusedGateUp, c.RotaryDim));
        Assert.Equal([151329, 151336, 151338], c.EosTokenIds);
        Assert.Equal(94, Math.Round(c.ParameterCount / 1e8)); // "9B" (9,400,279,040 weights)
        // Glm4Config turns half of each head when the field is absent.
        Assert.Equal(64, Parse(json.Replace("\"partial_rotary_factor\": 0.5, ", "")).RotaryDim);
        Assert.Contains("unsupported sliding_window = 4096: glm4 has no sliding-window attention",
            Refusal(json.Replace("\"use_cache\": true", "\"sliding_window\": 4096")));
    }

    [Fact]
    public void Olmo2_normalizes_outputs_and_whole_projections()
    {
        // The fields of allenai/OLMo-2-1124-7B-Instruct's config.json.
        const string json = """
            {"architectures": ["Olmo2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "eos_token_id": 100257,
             "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
             "max_position_embeddings": 4096, "model_type": "olmo2", "num_attention_heads": 32, "num_hidden_layers": 32,
             "num_key_value_heads": 32, "pad_token_id": 100277, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 500000,
             "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.47.0.dev0", "use_cache": true,
             "vocab_size": 100352}
            """;
        var c = Parse(json);
        Assert.Equal(("olmo2", true, false, false, (int?)null, 128), (c.ModelType, c.Olmo2, c.Gemma, c.QkNorm, c.SlidingWindow, c.HeadDim));
        Assert.Equal(73, Math.Round(c.ParameterCount / 1e8)); // "7B" (7,298,617,344 weights)
        Assert.Contains("unsupported attention_bias = True: olmo2 attention biases are not implemented",
            Refusal(json.Replace("\"attention_bias\": false", "\"attention_bias\": true")));
        Assert.Contains("unsupported sliding_window = 4096: olmo2 has no sliding-window attention",
            Refusal(json.Replace("\"use_cache\": true", "\"sliding_window\": 4096")));

        // OLMo 3: the same layer under model_type olmo3, three layers of four windowed (4096 when absent), and with
        // YaRN (as Olmo-3-7B ships: factor 8 over 8192 positions) the windowed layers rotate unscaled at the same base.
        var olmo3 = Parse(json.Replace("\"olmo2\"", "\"olmo3\""));
        Assert.Equal(("olmo3", true, 4096, (double?)null), (olmo3.ModelType, olmo3.Olmo2, olmo3.SlidingWindow, olmo3.LocalRopeTheta));
        Assert.Equal(Enumerable.Range(0, 8).Select(i => 4 * i + 3), Enumerable.Range(0, 32).Where(l => olmo3.WindowOf(l) is null));
        Assert.NotEqual(c.Fingerprint, olmo3.Fingerprint);
        var yarn = Parse(json.Replace("\"olmo2\"", "\"olmo3\"").Replace("\"rope_scaling\": null", """
            "rope_scaling": {"attention_factor": 1.2079441541679836, "beta_fast": 32, "beta_slow": 1, "factor": 8.0,
             "original_max_position_embeddings": 8192, "rope_type": "yarn"}, "sliding_window": 4096
            """));
        Assert.Equal((500000.0, 500000.0), (yarn.RopeTheta, yarn.LocalRopeTheta));
        Assert.IsType<YarnRopeScaling>(yarn.RopeScaling);
        var listed = Parse(json.Replace("\"olmo2\"", "\"olmo3\"").Replace("\"use_cache\": true",
            "\"use_cache\": true, \"layer_types\": [" + string.Join(", ", Enumerable.Range(0, 32).Select(i => i < 31 ? "\"full_attention\"" : "\"sliding_attention\"")) + "]"));
        Assert.Equal([31], Enumerable.Range(0, 32).Where(l => listed.WindowOf(l) is not null));
        Assert.Contains("unsupported attention_bias = True: olmo3 attention biases are not implemented",
            Refusal(json.Replace("\"olmo2\"", "\"olmo3\"").Replace("\"attention_bias\": false", "\"attention_bias\": true")));
    }

    [Fact]
    public void Phi3_is_llama_with_fused_projections_and_a_window_on_every_layer()
    {
        var c = Parse(Phi3);
        Assert.Equal(("phi3", true, false, false, 2047, (IReadOnlyList<bool>?)null), (c.ModelType, c.FusedProjections, c.QkvBias, c.QkNorm, c.SlidingWindow, c.SlidingLayers));
        Assert.Equal(38, Math.Round(c.ParameterCount / 1e8)); // 3.8B (the model card)
        Assert.Null(Parse(Phi3.Replace("\"sliding_window\": 2047,", "")).SlidingWindow); // Phi3Config's default: none
        Assert.Contains("unsupported attention_bias = True: phi3 has no attention biases", Refusal(Phi3.Replace("\"attention_bias\": false", "\"attention_bias\": true")));
        Assert.Contains("unsupported resid_pdrop = 0.0: this field is not supported", Refusal(Qwen3.Replace("\"use_cache\": true", "\"resid_pdrop\": 0.0")));
    }

    // microsoft/Phi-4-mini-instruct's config.json (its longrope factors as published).
    private const string Phi4Mini = """
        {"_name_or_path": "Phi-4-mini-instruct", "architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
         "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config", "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM", "AutoTokenizer": "Xenova/gpt-4o"},
         "bos_token_id": 199999, "embd_pdrop": 0.0, "eos_token_id": 199999, "full_attn_mod": 1, "hidden_act": "silu", "hidden_size": 3072,
         "initializer_range": 0.02, "intermediate_size": 8192, "interpolate_factor": 1, "lm_head_bias": false, "max_position_embeddings": 131072,
         "mlp_bias": false, "model_type": "phi3", "num_attention_heads": 24, "num_hidden_layers": 32, "num_key_value_heads": 8,
         "original_max_position_embeddings": 4096, "pad_token_id": 199999, "partial_rotary_factor": 0.75, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05,
         "rope_scaling": {"long_factor": [1, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649, 2.446418898,
           2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845, 5.351743533, 5.984965424, 6.693110555, 7.485043894,
           8.370679318, 9.36110372, 10.4687158, 11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105,
           25.61086418, 28.64115884, 32.03, 32.1, 32.13, 32.23, 32.6, 32.61, 32.64, 32.66, 32.7, 32.71, 32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77],
           "short_factor": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
           1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "type": "longrope"},
         "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0",
         "use_cache": true, "vocab_size": 200064}
        """;

    /// <summary>
    /// Phi-4-mini's own config.json loads: 96 of each head's 128 dimensions turned, its 48 published factors per set
    /// (short ones all 1, so within 4096 positions the frequencies are plain RoPE's), the attention factor for 131072
    /// over 4096, and its remote code's fields at their harmless values; other values of them are refused.
    /// </summary>
    [Fact]
    public void Phi4_mini_loads_from_its_own_config()
    {
        var c = Parse(Phi4Mini);
        var rope = Assert.IsType<LongRopeScaling>(c.RopeScaling);
        Assert.Equal(("phi3", 128, 96, 8, true, 4096, 47.77f), (c.ModelType, c.HeadDim, c.RotaryDim, c.NumKvHeads, c.TieWordEmbeddings, rope.OriginalMaxPositionEmbeddings, rope.LongFactor[47]));
        Assert.Equal(1.1902380714238083, rope.AttentionFactor, 12); // √(1 + ln 32 / ln 4096)
        var plain = RotaryTables.InverseFrequencies(c with { RopeScaling = null }, 4096);
        Assert.Equal(plain, RotaryTables.InverseFrequencies(c, 4096)); // short factors of 1: the same frequencies
        Assert.Equal(38, Math.Round(c.ParameterCount / 1e8)); // 3.8B (the model card)
        Assert.Contains("unsupported lm_head_bias = True: an LM head bias is not implemented", Refusal(Phi4Mini.Replace("\"lm_head_bias\": false", "\"lm_head_bias\": true")));
        Assert.Contains("unsupported full_attn_mod = 2: only 1 (as Phi-4-mini ships it) is supported", Refusal(Phi4Mini.Replace("\"full_attn_mod\": 1", "\"full_attn_mod\": 2")));
    }

    /// <summary>
    /// Phi-3 128k and Phi-3.5 (longrope: a short and a long factor per frequency pair, max / original positions 32) and
    /// Phi-4-mini (the same over 96 of each head's 128 dimensions). The long factors apply when the context run is
    /// longer than the original 4096 positions; cos and sin carry √(1 + ln 32 / ln 4096) either way.
    /// </summary>
    [Fact]
    public void Phi3_longrope_and_partial_rotary_pick_their_factors_by_the_context()
    {
        static string Factors(int n, float step) => "[" + string.Join(", ", Enumerable.Range(0, n).Select(i => (1 + step * i).ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
        string LongRope(int pairs) => Phi3.Replace("\"max_position_embeddings\": 4096", "\"max_position_embeddings\": 131072")
            .Replace("\"rope_scaling\": null", $"\"rope_scaling\": {{\"type\": \"longrope\", \"short_factor\": {Factors(pairs, 0.01f)}, \"long_factor\": {Factors(pairs, 0.5f)}}}");
        var c = Parse(LongRope(48));
        var rope = Assert.IsType<LongRopeScaling>(c.RopeScaling);
        Assert.Equal((4096, 48, 48), (rope.OriginalMaxPositionEmbeddings, rope.ShortFactor.Count, rope.LongFactor.Count));
        Assert.Equal(Math.Sqrt(1 + Math.Log(32) / Math.Log(4096)), rope.AttentionFactor, 12);
        Assert.Equal(96, c.RotaryDim);
        // Frequency pair i: 1 / (factor_i · 10000^(2i/96)), short within the original context, long past it.
        var shortInv = RotaryTables.InverseFrequencies(c, 4096);
        var longInv = RotaryTables.InverseFrequencies(c, 4097);
        for (int i = 0; i < 48; i++)
        {
            Assert.Equal(1f / (rope.ShortFactor[i] * MathF.Pow(10000f, 2f * i / 96)), shortInv[i]);
            Assert.Equal(1f / (rope.LongFactor[i] * MathF.Pow(10000f, 2f * i / 96)), longInv[i]);
        }
        var (cos, _) = RotaryTables.Build(c, 8);
        Assert.Equal((float)rope.AttentionFactor, cos[0]); // position 0: cos 1, times the attention factor

        // Phi-4-mini: partial_rotary_factor 0.75 of a 128-wide head (24 heads of 3072), 48 factors per set.
        var phi4 = Parse(LongRope(48).Replace("\"use_cache\": true", "\"partial_rotary_factor\": 0.75").Replace("\"num_attention_heads\": 32", "\"num_attention_heads\": 24")
            .Replace("\"num_key_value_heads\": 32", "\"num_key_value_heads\": 8"));
        Assert.Equal((128, 96, 48), (phi4.HeadDim, phi4.RotaryDim, RotaryTables.InverseFrequencies(phi4, 4096).Length));
        Assert.NotEqual(Parse(LongRope(48)).Fingerprint, Parse(Phi3).Fingerprint);

        Assert.Contains("unsupported rope_scaling.short_factor = 47 factors: needs 48 positive factors, one per rotated pair of dimensions",
            Refusal(LongRope(48).Replace(", 1.47]", "]")));
        Assert.Contains("unsupported partial_rotary_factor = 0.7: needs (0, 1] and an even number of rotated dimensions (head_dim 96 gives 67)",
            Refusal(Phi3.Replace("\"use_cache\": true", "\"partial_rotary_factor\": 0.7")));
        Assert.Contains("unsupported rope_scaling.rope_type = dynamic: supported are linear, llama3, yarn and longrope",
            Refusal(Phi3.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}")));
    }

    [Fact]
    public void Qwen3_moe_and_mixtral_read_their_experts_and_count_their_published_sizes()
    {
        var q = Parse(Qwen3Moe);
        Assert.Equal(new MixtureOfExperts(128, 8, 768, true, null), q.Moe);
        Assert.Null(q.Moe!.SparseLayers);
        Assert.True(q.QkNorm);
        Assert.True(Enumerable.Range(0, 48).All(q.IsSparse));
        Assert.Equal(305, Math.Round(q.ParameterCount / 1e8)); // "30.5B in total" (the model card)

        var m = Parse(Mixtral);
        Assert.Equal(new MixtureOfExperts(8, 2, 14336, true, null), m.Moe);
        Assert.Null(m.SlidingWindow); // MixtralConfig's default is no window, unlike MistralConfig's 4096
        Assert.Null(Parse(Mixtral.Replace("\"sliding_window\": null,", "")).SlidingWindow);
        Assert.Equal(467, Math.Round(m.ParameterCount / 1e8)); // 46.7B

        // qwen3_moe's dense layers: mlp_only_layers, and decoder_sparse_step (layer l has experts when (l + 1) % step == 0).
        var mixed = Parse(Qwen3Moe.Replace("\"mlp_only_layers\": []", "\"mlp_only_layers\": [0, 5]").Replace("\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2"));
        Assert.Equal([1, 3, 7, 9], Enumerable.Range(0, 10).Where(mixed.IsSparse));
        Assert.False(Parse(Qwen3Moe.Replace("\"norm_topk_prob\": true", "\"norm_topk_prob\": false")).Moe!.NormalizeTopK);
        Assert.NotEqual(q.Fingerprint, mixed.Fingerprint);
        Assert.NotEqual(q.Fingerprint, Parse(Qwen3Moe.Replace("\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 4")).Fingerprint);

        Assert.Contains("unsupported num_experts_per_tok = 9: more than the 8 experts (num_local_experts)",
            Refusal(Mixtral.Replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9")));
        Assert.Contains("unsupported moe_intermediate_size = 768: mixtral does not read it",
            Refusal(Mixtral.Replace("\"use_cache\": true", "\"moe_intermediate_size\": 768")));
        Assert.Contains("required field moe_intermediate_size is missing", Refusal(Qwen3Moe.Replace("\"moe_intermediate_size\": 768,", "")));
        Assert.Contains("no layer is left with experts",
            Refusal(Qwen3Moe.Replace("\"num_hidden_layers\": 48", "\"num_hidden_layers\": 2").Replace("\"mlp_only_layers\": []", "\"mlp_only_layers\": [0, 1]")));
        Assert.Contains("unsupported mlp_only_layers = [48]: expected layer indices in [0, 48)",
            Refusal(Qwen3Moe.Replace("\"mlp_only_layers\": []", "\"mlp_only_layers\": [48]")));
    }

    [Fact]
    public void Mistral_applies_its_window_to_every_layer_and_null_turns_it_off()
    {
        var c = Parse(Mistral);
        Assert.Equal(4096, c.SlidingWindow);
        Assert.All(Enumerable.Range(0, 32), l => Assert.Equal(4096, c.WindowOf(l)));
        var full = Parse(Mistral.Replace("\"sliding_window\": 4096", "\"sliding_window\": null"));
        Assert.Null(full.SlidingWindow);
        Assert.Null(full.WindowOf(0));
        // Absent, transformers' default of 4096 applies.
        Assert.Equal(4096, Parse(Mistral.Replace("\"sliding_window\": 4096,", "")).SlidingWindow);
    }

    [Fact]
    public void Qwen2_windows_only_the_layers_from_max_window_layers_on_when_use_sliding_window()
    {
        Assert.Null(Parse(Qwen2).SlidingWindow); // use_sliding_window false: full attention everywhere
        var on = Parse(Qwen2.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("131072", "256"));
        Assert.Equal([null, null, 256, 256], Enumerable.Range(0, 4).Select(on.WindowOf));
        // layer_types, when given, decides per layer.
        var listed = Parse(Qwen2.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("131072", "256")
            .Replace("\"max_window_layers\": 2", "\"layer_types\": [\"sliding_attention\", \"full_attention\", \"sliding_attention\", \"full_attention\"]"));
        Assert.Equal([256, null, 256, null], Enumerable.Range(0, 4).Select(listed.WindowOf));
        Assert.NotEqual(on.Fingerprint, listed.Fingerprint);
        // Windowed from a layer past the last: no layer uses the window, which is full attention.
        var none = Parse(Qwen2.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 2", "\"max_window_layers\": 4"));
        Assert.Null(none.SlidingWindow);
        Assert.Equal(Parse(Qwen2).Fingerprint, none.Fingerprint);
    }

    [Theory]
    // Other architectures, and experts with shared experts: refused by model_type, with what is supported.
    [InlineData("\"model_type\": \"qwen3\"", "\"model_type\": \"deepseek_v2\"", "unsupported model_type = \"deepseek_v2\"")]
    [InlineData("\"model_type\": \"qwen3\"", "\"model_type\": \"phimoe\"", "unsupported model_type = \"phimoe\"")]
    [InlineData("\"model_type\": \"qwen3\"", "\"model_type\": \"deepseek_v3\"", "unsupported model_type = \"deepseek_v3\"")]
    // An MoE config under a dense model type is refused as MoE, by the field that makes it one.
    [InlineData("\"use_cache\": true", "\"num_experts\": 128", "unsupported num_experts = 128: a mixture-of-experts field under the dense model_type qwen3")]
    [InlineData("\"use_cache\": true", "\"num_local_experts\": 8", "unsupported num_local_experts = 8: a mixture-of-experts field")]
    // Window settings that contradict themselves or the model type.
    [InlineData("\"use_sliding_window\": false", "\"use_sliding_window\": true", "unsupported use_sliding_window = true: needs a positive sliding_window")]
    [InlineData("\"model_type\": \"qwen3\"", "\"model_type\": \"llama\", \"layer_types\": [\"sliding_attention\"]", "unsupported layer_types = [\"sliding_attention\"]")]
    [InlineData("\"sliding_window\": null", "\"sliding_window\": 0", "field sliding_window must be a positive integer, got 0")]
    public void Unsupported_architectures_are_refused_naming_field_and_value(string find, string replace, string expected)
    {
        string message = Refusal(Qwen3.Replace(find, replace));
        Assert.Contains(expected, message);
        if (message.Contains("model_type") || message.Contains("experts"))
            Assert.Contains("supported are the decoders llama, mistral, qwen2, qwen3, phi3, granite, smollm3, olmo2, olmo3, glm4, gemma, gemma2 and gemma3_text and the mixture-of-experts qwen3_moe, qwen2_moe, mixtral and granitemoe (and the text models of gemma3 and mistral3)", message);
    }

    [Fact]
    public void Window_settings_a_model_type_does_not_read_are_refused_not_ignored()
    {
        Assert.Contains("unsupported sliding_window = 4096: llama has no sliding-window attention",
            Refusal(Mistral.Replace("\"mistral\"", "\"llama\"")));
        Assert.Contains("unsupported use_sliding_window = false: mistral does not read use_sliding_window",
            Refusal(Mistral.Replace("\"use_cache\": true", "\"use_sliding_window\": false")));
        Assert.Contains("unsupported layer_types[1] = \"chunked_attention\"",
            Refusal(Qwen2.Replace("\"max_window_layers\": 2", "\"layer_types\": [\"full_attention\", \"chunked_attention\", \"full_attention\", \"full_attention\"]")));
        Assert.Contains("unsupported layer_types = [\"full_attention\"]: expected a list of 4 entries",
            Refusal(Qwen2.Replace("\"max_window_layers\": 2", "\"layer_types\": [\"full_attention\"]")));
        Assert.Contains("unsupported max_window_layers = -1",
            Refusal(Qwen2.Replace("\"max_window_layers\": 2", "\"max_window_layers\": -1")));
    }
}

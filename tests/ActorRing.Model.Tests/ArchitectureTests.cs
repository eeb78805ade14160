using ActorRing.Model.Sampling;
using ActorRing.Model.Tests.Support;

namespace ActorRing.Model.Tests;

/// <summary>
/// The architectures beyond llama: qwen3 (per-head q/k norms, head_dim independent of hidden/heads), sliding-window
/// attention (mistral on every layer, qwen2 from max_window_layers on) and tied embeddings under a vocabulary-split
/// head. Their logits are checked against the reference by <see cref="SyntheticModelTests"/> (which runs these
/// variants too); here greedy generation through step plans at world sizes 1, 2 and 4 must pick the reference's ids.
/// </summary>
public sealed class ArchitectureTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "actorring-arch-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    public static readonly string[] VariantNames = ["qwen3-qk-norm", "mistral-sliding-window", "qwen2-window-layers", "tied-uneven-vocab", "qwen3-moe", "mixtral-moe", "phi3-fused", "phi3-longrope-partial", "gemma3-text", "gemma2", "gemma", "granite", "granitemoe", "smollm3", "olmo2", "olmo2-replicated-kv", "olmo3-yarn", "qwen2-moe", "glm4"];

    internal static SyntheticModel Variant(string name) => name switch
    {
        // head_dim 16 with hidden 32 and 4 heads (q is 64 wide, not 32); tied head as in Qwen3 0.6B–4B.
        "qwen3-qk-norm" => new SyntheticModel { ModelType = "qwen3", HeadDim = 16, KvHeads = 2, Theta = 1_000_000 },
        // A window of 4 over prompts of 6 and more tokens: every layer forgets the start. KV heads replicated at N=4.
        "mistral-sliding-window" => new SyntheticModel { ModelType = "mistral", SlidingWindow = 4, KvHeads = 2, Tied = false },
        // use_sliding_window with max_window_layers 1: layer 0 attends fully, layer 1 through a window of 3.
        "qwen2-window-layers" => new SyntheticModel { ModelType = "qwen2", UseSlidingWindow = true, SlidingWindow = 3, MaxWindowLayers = 1, Tied = false },
        // Llama 3.2 / SmolLM style tied head, vocabulary 103 split 26/26/26/25 at N=4 (52/51 at N=2).
        "tied-uneven-vocab" => new SyntheticModel { ModelType = "llama", Tied = true, Vocab = 103, KvHeads = 4 },
        // 8 experts of 12 (3 per rank at N=4), 2 per token, weights not renormalized (norm_topk_prob false), and
        // layer 1 dense (mlp_only_layers) with intermediate 42.
        "qwen3-moe" => new SyntheticModel { ModelType = "qwen3_moe", HeadDim = 16, Experts = 8, ExpertsPerToken = 2, ExpertIntermediate = 12, NormTopK = false, DenseLayers = [1] },
        // phi3: q/k/v in one qkv_proj and gate/up in one gate_up_proj on disk (sliced per rank out of the fused rows),
        // with a window of 5 on every layer; as many KV heads as query heads (each rank's k and v rows at their own
        // offsets in the fused rows), untied head.
        "phi3-fused" => new SyntheticModel { ModelType = "phi3", KvHeads = 4, SlidingWindow = 5, Tied = false },
        // Phi-4-mini's RoPE: partial_rotary_factor 0.75 (12 of 16 dimensions turn, the last 4 pass through) with longrope
        // factors per rotated pair; the tests' contexts (32, 64) exceed the original 16 positions, so the long factors,
        // and cos and sin scaled by √(1 + ln(256/16) / ln 16) = √2.
        "phi3-longrope-partial" => new SyntheticModel
        {
            ModelType = "phi3", HeadDim = 16, KvHeads = 2, Tied = false, PartialRotary = 0.75,
            LongRope = ([1.0f, 1.2f, 1.5f, 2.5f, 4f, 7f], [1.1f, 1.9f, 3.5f, 6f, 11f, 23f], 16),
        },
        // gemma3_text: √hidden embeddings, 1 + w norms, output norms, GeGLU, attention scaled by 24^-1/2 (not head_dim
        // 16), layer 0 windowed (4) with RoPE base 10000 and layer 1 global with base 1e6 and linear scaling 2.
        "gemma3-text" => new SyntheticModel { ModelType = "gemma3_text", HeadDim = 16, KvHeads = 2, SlidingWindow = 4, Theta = 1_000_000, LinearRope = 2.0 },
        // gemma2: gemma3's layer without q/k norms or a local RoPE base, the even layers windowed (4), and both soft-caps
        // low enough to bite: scores capped at 1.5 (their spread is several units here) and logits at 4.
        "gemma2" => new SyntheticModel { ModelType = "gemma2", HeadDim = 16, KvHeads = 2, Layers = 3, SlidingWindow = 4, AttnSoftcap = 1.5, FinalSoftcap = 4 },
        // granitemoe: granite's µP scalars (far from 1) around mixtral-style experts read from two stacked 3-D tensors:
        // 6 experts of 12 (3 columns each per rank at N=4), 2 per token.
        "granitemoe" => new SyntheticModel
        {
            ModelType = "granitemoe", KvHeads = 2, Experts = 6, ExpertsPerToken = 2, ExpertIntermediate = 12, Tied = false,
            EmbeddingMultiplier = 4, AttentionMultiplier = 0.125, ResidualMultiplier = 0.3, LogitsScaling = 2.5,
        },
        // gemma (Gemma 1): a llama layer with gemma's √hidden embeddings, 1 + w norms and GeGLU, attention scaled by
        // head_dim^-1/2 (16, not gemma3's 24), no output norms, soft-caps or windows; multi-query (one KV head, as
        // Gemma 2B), so every rank at 2 and 4 replicates it.
        "gemma" => new SyntheticModel { ModelType = "gemma", HeadDim = 16, KvHeads = 1 },
        // granite: llama with its µP scalars, each far from 1 so that a missed one changes the logits: embeddings ×4,
        // scores × 1/head_dim (0.125, not 1/√8), sublayer outputs × 0.3 before the residual add, logits / 2.5; with
        // llama's attention biases (q/k/v and o).
        "granite" => new SyntheticModel
        {
            ModelType = "granite", KvHeads = 2, AttentionBias = true, EmbeddingMultiplier = 4, AttentionMultiplier = 0.125,
            ResidualMultiplier = 0.3, LogitsScaling = 2.5,
        },
        // smollm3: llama whose layer 1 has no RoPE (no_rope_layers [1, 0, 1]: queries and keys not rotated), tied head.
        "smollm3" => new SyntheticModel { ModelType = "smollm3", KvHeads = 2, Layers = 3, NoRopeLayers = [1, 0, 1] },
        // olmo2: no pre-norms, output norms, and q/k norms over the whole projections, which each rank holds a slice of
        // (at N = 4, one of the 4 KV heads each).
        "olmo2" => new SyntheticModel { ModelType = "olmo2", KvHeads = 4, Tied = false },
        // ... and with 2 KV heads over 4 ranks, each held by two ranks, whose k norm must count it once.
        // olmo3: olmo2's layer, layers 0-2 windowed (3) and layer 3 global, with YaRN (factor 4 over an original 8
        // positions, so the test's 32-position context is scaled); the windowed layers rotate unscaled.
        "olmo3-yarn" => new SyntheticModel { ModelType = "olmo3", KvHeads = 2, Layers = 4, SlidingWindow = 3, Tied = false, Yarn = (4.0, 8) },
        "olmo2-replicated-kv" => new SyntheticModel { ModelType = "olmo2", KvHeads = 2, Tied = false },
        // qwen2_moe: 6 experts of 16, 2 per token, not renormalized, q/k/v biases, and a shared expert of 24 (12 per rank at
        // N = 2, 6 at N = 4) weighted by σ(gate · x); layer 1 dense.
        "qwen2-moe" => new SyntheticModel
        {
            ModelType = "qwen2_moe", Experts = 6, ExpertsPerToken = 2, ExpertIntermediate = 16, SharedIntermediate = 24, NormTopK = false,
            DenseLayers = [1], Tied = false,
        },
        // glm4: half of each 16-wide head turned in GLM's interleaved pairs (stored so, reordered at load), q/k/v biases
        // (o_proj none), four norms a layer, gate_up_proj fused on disk.
        "glm4" => new SyntheticModel { ModelType = "glm4", HeadDim = 16, KvHeads = 2, PartialRotary = 0.5, AttentionBias = true, Tied = false },
        // mixtral: block_sparse_moe names (w1/w3/w2), 4 experts of 16, 2 per token, always renormalized, untied head.
        "mixtral-moe" => new SyntheticModel { ModelType = "mixtral", Experts = 4, ExpertsPerToken = 2, ExpertIntermediate = 16, Tied = false },
        _ => throw new ArgumentException(name),
    };

    public static TheoryData<string> Variants() => new(VariantNames);

    private static List<int> ReferenceGreedy(SyntheticModel model, int[] prompt, int tokens)
    {
        var sequence = new List<int>(prompt);
        var generated = new List<int>();
        for (int i = 0; i < tokens; i++)
        {
            int best = TestPaths.ArgMax(ReferenceForward.LastLogits(model, [.. sequence], contextLength: 32));
            generated.Add(best);
            sequence.Add(best);
        }
        return generated;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Greedy_ids_at_world_sizes_1_2_4_equal_the_reference(string variant)
    {
        var model = Variant(variant).Build(seed: variant.Length * 104729);
        string dir = model.WriteTo(Path.Combine(_root, variant));
        int[] prompt = [1, 17, 42, 5, 60, 3, 88];
        const int tokens = 8; // 15 positions: well past every window
        var expected = ReferenceGreedy(model, prompt, tokens);
        foreach (int n in new[] { 1, 2, 4 })
        {
            var results = InProcessGroup.Run(n, comm =>
            {
                using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 32, Threads = 1 });
                return LockstepGeneration.Run(m, comm, prompt, SamplingOptions.Greedy with { MaxTokens = tokens }, tokenizer: null);
            });
            // Rank 0 samples; the others follow its plans, so they fed the same ids.
            Assert.Equal(expected, results[0].GeneratedIds);
        }
    }

    /// <summary>
    /// Gemma 3 4B and up and Mistral Small 3.1/3.2 ship as image-and-text models: a "gemma3" or "mistral3" config
    /// around the text model's, and the text model's tensors under language_model. (Gemma's, as first published) or
    /// model.language_model. (as transformers 4.52+ saves them), the vision tower's beside them. The same weights
    /// written that way and as a plain text checkpoint give the same logits, bit for bit, at one and two ranks.
    /// </summary>
    [Theory]
    [InlineData("gemma3-text", "gemma3_text")]
    [InlineData("mistral-sliding-window", "mistral")]
    public void An_image_and_text_checkpoint_serves_its_text_model(string variant, string textType)
    {
        var model = Variant(variant).Build(seed: 77);
        string plain = model.WriteTo(Path.Combine(_root, "plain"));
        model.ImageTextWrapper = true;
        string wrapped = model.WriteTo(Path.Combine(_root, "wrapped"));
        int[] tokens = [1, 9, 33, 70, 2, 15];
        foreach (int n in new[] { 1, 2 })
        {
            float[] Logits(string dir) => InProcessGroup.Run(n, comm =>
            {
                using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 16, Threads = 1 });
                Assert.Equal(textType, m.Config.ModelType);
                return m.Forward(0, tokens, 0);
            })[0]!;
            SyntheticModelTests.AssertClose(Logits(plain), Logits(wrapped), 0f, $"wrapped against plain, N={n}");
        }
    }

    /// <summary>
    /// Windowed attention in a prompt appended in chunks: each chunk's queries start after position 0, so the
    /// window's lower bound moves with the offset, and a chunk crosses the window's edge.
    /// </summary>
    [Fact]
    public void Chunked_prefill_through_a_sliding_window_matches_the_reference()
    {
        var model = Variant("qwen2-window-layers").Build(seed: 23);
        string dir = model.WriteTo(Path.Combine(_root, "chunks"));
        int[] tokens = [1, 9, 33, 70, 2, 15, 8, 44, 91, 6];
        var expected = ReferenceForward.LastLogits(model, tokens);
        var got = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 16, Threads = 1 });
            m.Forward(0, tokens.AsSpan(0, 4), 0);
            m.Forward(0, tokens.AsSpan(4, 5), 4);
            return m.Forward(0, tokens.AsSpan(9), 9);
        });
        SyntheticModelTests.AssertClose(expected, got[0]!, 1e-4f, "chunked prefill with a window of 3");
    }

    /// <summary>
    /// Sequences of different lengths in one batched step each attend through their own window: qwen3 with
    /// windows on layer 1, two prompts prefilled in one step, then one decode step for both, against the reference.
    /// </summary>
    [Fact]
    public void Sequences_batched_in_one_step_each_see_their_own_window()
    {
        var model = new SyntheticModel { ModelType = "qwen3", HeadDim = 16, UseSlidingWindow = true, SlidingWindow = 3, MaxWindowLayers = 1 }.Build(seed: 57);
        string dir = model.WriteTo(Path.Combine(_root, "batched"));
        int[] a = [1, 9, 33, 70, 2, 15, 8, 44], b = [1, 50, 51];
        int[] aNext = [12], bNext = [77];
        var got = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 32, Threads = 1, KvCacheTokens = 4 * ShardedLlama.KvBlockSize });
            int[] aBlocks = [0], bBlocks = [2]; // apart, so neither reads the other's pages
            // Copies: a step's rows are the model's buffers, reused by the next step.
            var prefill = m.Execute(new Batching.StepPlan(1, [new(0, 0, a, aBlocks, true), new(1, 0, b, bBlocks, true)])).Logits.Select(r => r.ToArray()).ToArray();
            var decode = m.Execute(new Batching.StepPlan(2, [new(0, a.Length, aNext, aBlocks, true), new(1, b.Length, bNext, bBlocks, true)])).Logits.Select(r => r.ToArray());
            return prefill.Concat(decode).ToArray();
        })[0];
        SyntheticModelTests.AssertClose(ReferenceForward.LastLogits(model, a), got[0], 1e-4f, "sequence a, prefill");
        SyntheticModelTests.AssertClose(ReferenceForward.LastLogits(model, b), got[1], 1e-4f, "sequence b, prefill");
        SyntheticModelTests.AssertClose(ReferenceForward.LastLogits(model, [.. a, .. aNext]), got[2], 1e-4f, "sequence a, decode");
        SyntheticModelTests.AssertClose(ReferenceForward.LastLogits(model, [.. b, .. bNext]), got[3], 1e-4f, "sequence b, decode");
    }

    /// <summary>A window at least as long as the context is plain full attention: loaded, and equal to a model without one.</summary>
    [Fact]
    public void A_window_as_long_as_the_context_loads_and_equals_full_attention()
    {
        var windowed = new SyntheticModel { ModelType = "mistral", SlidingWindow = 16 }.Build(seed: 31);
        var full = new SyntheticModel { ModelType = "mistral", SlidingWindow = null }.Build(seed: 31);
        string a = windowed.WriteTo(Path.Combine(_root, "w16")), b = full.WriteTo(Path.Combine(_root, "full"));
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        float[] Run(string dir) => InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 16, Threads = 1 });
            Assert.Equal(16, m.Config.SlidingWindow);
            return m.Forward(0, prompt, 0)!;
        })[0];
        var loadedFull = InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(b, comm, new ModelLoadOptions { ContextLength = 16, Threads = 1 });
            return (m.Config.SlidingWindow, m.Forward(0, prompt, 0)!);
        })[0];
        Assert.Null(loadedFull.SlidingWindow);
        Assert.Equal(loadedFull.Item2, Run(a));
    }

    /// <summary>Benches and tests build qwen3 shapes from seeded random weights too: q_norm/k_norm included.</summary>
    [Fact]
    public void A_random_qwen3_model_decodes_like_its_own_prefill()
    {
        var config = ModelConfig.FromHuggingFaceJson("""
            {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 97,
             "max_position_embeddings": 64, "tie_word_embeddings": true, "use_sliding_window": true,
             "sliding_window": 3, "max_window_layers": 1}
            """);
        Assert.True(config.QkNorm);
        Assert.Equal([null, 3], Enumerable.Range(0, 2).Select(config.WindowOf));
        int[] tokens = [5, 6, 7, 8, 9, 10];
        var perRank = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.CreateRandom(config, 7, comm, new ModelLoadOptions { ContextLength = 16, Slots = 2, Threads = 1 });
            m.Forward(0, tokens.AsSpan(0, 5), 0);
            var decoded = m.Forward(0, tokens.AsSpan(5), 5);
            var prefilled = m.Forward(1, tokens, 0);
            return (decoded, prefilled);
        });
        SyntheticModelTests.AssertClose(perRank[0].prefilled!, perRank[0].decoded!, 1e-4f, "random qwen3: decode vs prefill");
    }
}

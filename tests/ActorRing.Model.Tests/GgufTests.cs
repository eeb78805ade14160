using ActorRing.Model.Quantization;
using ActorRing.Model.Tests.Support;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

/// <summary>
/// GGUF files written by the test's own writer (following the spec, with llama.cpp's names and q/k
/// permutation) load to the same logits as the safetensors checkpoint they came from, at world sizes 1 and 2.
/// </summary>
public sealed class GgufTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "actorring-gguf-" + Guid.NewGuid().ToString("N"));

    public GgufTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static SyntheticModel Model(string type, bool attentionBias = false) => new SyntheticModel
    {
        // phi3-longrope: Phi-4-mini's RoPE, 24 of 32 dimensions turned with longrope factors (the long ones: the
        // test's context 32 exceeds the original 16).
        ModelType = type == "phi3-longrope" ? "phi3" : type == "olmo3-yarn" ? "olmo3" : type,
        PartialRotary = type == "phi3-longrope" ? 0.75 : type == "glm4" ? 0.5 : null,
        LongRope = type == "phi3-longrope" ? (Enumerable.Range(0, 12).Select(i => 1f + 0.3f * i).ToArray(), Enumerable.Range(0, 12).Select(i => 1f + 2.5f * i).ToArray(), 16) : null,
        Hidden = 128, Intermediate = 192, Layers = type == "gemma3_text" ? 6 : type == "gemma2" ? 3 : type is "smollm3" or "olmo3" or "olmo3-yarn" ? 4 : 2,
        AttentionBias = attentionBias || type == "glm4", Heads = 4, KvHeads = 2, HeadDim = 32, Vocab = 300,
        MatrixScale = 0.5f, Tied = type is "llama" or "qwen3" or "qwen3_moe" or "gemma3_text" or "gemma2" or "gemma" or "granite",
        Experts = 4, ExpertsPerToken = 2, ExpertIntermediate = 64, SharedIntermediate = 96, NormTopK = type != "qwen2_moe", // read by the MoE types only
        // Gemma 3 as llama.cpp runs a GGUF of it (the file has neither the pattern nor query_pre_attn_scalar): five
        // windowed layers of six, attention scaled by the head size; a window shorter than the test's 9 positions,
        // and the 4B+ models' linear RoPE scaling on the global layer.
        SlidingWindowPattern = 6, SlidingWindow = type is "gemma3_text" or "gemma2" or "phi3" or "phi3-longrope" or "olmo3" or "olmo3-yarn" ? 4 : null, QueryPreAttnScalar = 32,
        LinearRope = type == "gemma3_text" ? 8.0 : null,
        Yarn = type == "olmo3-yarn" ? (4.0, 8) : null,
        // Gemma 2: soft-caps that bite on these weights, written to the file as its converter writes them.
        AttnSoftcap = type == "gemma2" ? 2.0 : null, FinalSoftcap = type == "gemma2" ? 5.0 : null,
        // Granite's µP scalars, far from 1 (read by granite only).
        EmbeddingMultiplier = 6, AttentionMultiplier = 1.0 / 32, ResidualMultiplier = 0.4, LogitsScaling = 3,
    }.Build(seed: 99);

    private static readonly int[] Prompt = [1, 17, 42, 5, 99, 3];
    private static readonly int[] Decoded = [7, 64, 23];

    private static List<float[]> Run(string model, int worldSize, ModelLoadOptions options)
    {
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var m = ShardedLlama.Load(model, comm, options);
            var steps = new List<float[]?> { m.Forward(0, Prompt, 0) };
            for (int i = 0; i < Decoded.Length; i++) steps.Add(m.Forward(0, [Decoded[i]], Prompt.Length + i));
            return steps;
        });
        return perRank[0].Select(s => s!).ToList();
    }

    [Theory]
    [InlineData("llama", GgmlType.F32, WeightQuantization.None)]
    [InlineData("qwen2", GgmlType.F32, WeightQuantization.None)]
    [InlineData("llama", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    [InlineData("qwen2", GgmlType.Q4_0, WeightQuantization.Q4_0)]
    [InlineData("llama", GgmlType.Q4_1, WeightQuantization.Q4_1)]
    [InlineData("qwen2", GgmlType.Q5_1, WeightQuantization.Q5_1)]
    // qwen3 (q/k norms), and the mixtures of experts as llama.cpp writes them: qwen3moe, and Mixtral as llama with
    // expert_count (q/k permuted), each layer's experts stacked in 3-D ffn_*_exps tensors beside an ffn_gate_inp router.
    [InlineData("qwen3", GgmlType.F32, WeightQuantization.None)]
    [InlineData("qwen3_moe", GgmlType.F32, WeightQuantization.None)]
    [InlineData("qwen3_moe", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    // qwen2moe: the experts stacked as qwen3moe's, a shared expert (ffn_*_shexp) and its gate vector (ffn_gate_inp_shexp),
    // q/k/v biases, the picks not renormalized.
    [InlineData("qwen2_moe", GgmlType.F32, WeightQuantization.None)]
    [InlineData("qwen2_moe", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    [InlineData("mixtral", GgmlType.F16, WeightQuantization.None)]
    [InlineData("mixtral", GgmlType.Q4_0, WeightQuantization.Q4_0)]
    [InlineData("qwen3_moe", GgmlType.Q4_1, WeightQuantization.Q4_1)]
    // gemma3: its post-attention and post-MLP norms under llama.cpp's names, every norm stored as 1 + w.
    [InlineData("gemma3_text", GgmlType.F32, WeightQuantization.None)]
    [InlineData("gemma3_text", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    // granite: llama's names and q/k permutation, its four scalars as granite.embedding_scale, residual_scale,
    // attention.scale and logit_scale.
    [InlineData("granite", GgmlType.F32, WeightQuantization.None)]
    [InlineData("granite", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    // granitemoe: granite's scalars, and Hugging Face's stacked input_linear split into ffn_gate_exps and ffn_up_exps.
    [InlineData("granitemoe", GgmlType.F32, WeightQuantization.None)]
    // smollm3: llama's names and q/k permutation; the fourth layer without RoPE, as llama.cpp assumes for smollm3.
    [InlineData("smollm3", GgmlType.F32, WeightQuantization.None)]
    // olmo2: no attn_norm or ffn_norm, post_attention_norm and post_ffw_norm on the outputs, attn_q_norm and
    // attn_k_norm over the whole projections (no q/k permutation: rotate-half, as Hugging Face's).
    [InlineData("olmo2", GgmlType.F32, WeightQuantization.None)]
    [InlineData("olmo2", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    // OLMo 3: written as olmo2 with attention.sliding_window, which windows layers 0-2 of each four.
    [InlineData("olmo3", GgmlType.F32, WeightQuantization.None)]
    // ... with YaRN (factor 4 over 8 original positions): scaled on the global layer, not on the windowed ones.
    [InlineData("olmo3-yarn", GgmlType.F32, WeightQuantization.None)]
    // glm4: GLM's interleaved q/k rows kept as they are (the reader reorders them, as for the safetensors checkpoint),
    // half of each head turned (rope.dimension_count), four norms, gate and up fused in ffn_up, q/k/v biases.
    [InlineData("glm4", GgmlType.F32, WeightQuantization.None)]
    [InlineData("glm4", GgmlType.Q4_0, WeightQuantization.Q4_0)]
    // gemma2: the same norms and names, no q/k norms, the even layers windowed, and its two soft-caps from the metadata.
    [InlineData("gemma2", GgmlType.F32, WeightQuantization.None)]
    [InlineData("gemma2", GgmlType.Q4_0, WeightQuantization.Q4_0)]
    // phi3: q/k/v fused in attn_qkv and gate/up in ffn_up, its window on every layer.
    // gemma (Gemma 1): llama's tensor names, every norm stored as 1 + w, attention scaled by the head size.
    [InlineData("gemma", GgmlType.F32, WeightQuantization.None)]
    [InlineData("gemma", GgmlType.Q8_0, WeightQuantization.Q8_0)]
    [InlineData("phi3", GgmlType.F32, WeightQuantization.None)]
    [InlineData("phi3", GgmlType.Q4_0, WeightQuantization.Q4_0)]
    // phi3 longrope and partial rotary: rope_factors_long/short tensors, rope.dimension_count below the head, attn_factor.
    [InlineData("phi3-longrope", GgmlType.F32, WeightQuantization.None)]
    public void A_gguf_file_gives_the_logits_of_its_safetensors_checkpoint_at_world_sizes_1_and_2(string type, GgmlType stored, WeightQuantization quant)
    {
        var model = Model(type);
        // F16 storage rounds the weights the safetensors copy keeps in f32: write that copy from the rounded values.
        if (stored == GgmlType.F16)
            foreach (var w in model.W.Values) for (int i = 0; i < w.Length; i++) w[i] = (float)(Half)w[i];
        string safetensors = model.WriteTo(Path.Combine(_root, "hf"));
        string gguf = Path.Combine(_root, "model.gguf");
        GgufWriter.Write(gguf, GgufWriter.Metadata(model), GgufWriter.Tensors(model, stored));

        // The safetensors checkpoint quantized at load holds the very blocks the file stores (the file's
        // output.weight is quantized too, so the head is here).
        var options = new ModelLoadOptions { ContextLength = 32, Threads = 1, Quant = quant, QuantizeLmHead = quant != WeightQuantization.None && !model.Tied };
        // At each world size the file gives its checkpoint's logits bit for bit. (Across world sizes a quantized model
        // may differ a little more than a float one: the all-reduce's order can flip a rounding of the activations'
        // 8-bit blocks, as it did for glm4 under Q4_0, 0.026 on one logit.)
        var expected = Run(safetensors, 1, options);
        var fromFile = Run(gguf, 1, new ModelLoadOptions { ContextLength = 32, Threads = 1 });
        var expectedSplit = Run(safetensors, 2, options);
        var split = Run(_root, 2, new ModelLoadOptions { ContextLength = 32, Threads = 1 }); // the directory holding it
        for (int step = 0; step < expected.Count; step++)
        {
            SyntheticModelTests.AssertClose(expected[step], fromFile[step], 0f, $"{type} {stored} N=1, step {step}");
            SyntheticModelTests.AssertClose(expectedSplit[step], split[step], 0f, $"{type} {stored} N=2, step {step}");
        }
    }

    [Fact]
    public void Architectures_it_does_not_run_soft_capping_and_malformed_rope_factors_are_refused_by_name()
    {
        string gguf = Path.Combine(_root, "refused.gguf");
        // The message of loading a file of this model's tensors (or those given) under its edited metadata.
        string Refusal(SyntheticModel model, Action<Dictionary<string, object>> edit, List<GgufWriter.Tensor>? tensors = null)
        {
            var meta = GgufWriter.Metadata(model);
            edit(meta);
            GgufWriter.Write(gguf, meta, tensors ?? GgufWriter.Tensors(model, GgmlType.F32));
            return Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(1, comm => ShardedLlama.Load(gguf, comm, new ModelLoadOptions { ContextLength = 8 }))).Message;
        }

        Assert.Contains("general.architecture is 'phi2'; this server runs llama-family (llama, mistral and mixtral as llama), granite, granitemoe, smollm3, olmo2, glm4, qwen2, qwen3, qwen3moe, qwen2moe, gemma, gemma2, gemma3 and phi3 models",
            Refusal(Model("llama"), meta => meta["general.architecture"] = "phi2"));
        var gemma = Model("gemma3_text");
        Assert.Contains("gemma3 has no logit soft-capping here (Gemma 2 has; its GGUF files say general.architecture gemma2)",
            Refusal(gemma, meta => meta["gemma3.final_logit_softcapping"] = 30f));
        // Gemma 2 with a soft-cap of 0, which would divide by zero.
        Assert.Contains("gemma2.final_logit_softcapping is not a positive number", Refusal(Model("gemma2"), meta => meta["gemma2.final_logit_softcapping"] = 0f));
        Assert.Contains("gemma3.rope.scaling.type is 'dynamic', which is not implemented for GGUF models (linear and yarn are)",
            Refusal(gemma, meta => meta["gemma3.rope.scaling.type"] = "dynamic"));
        // DeepSeek's YaRN mscale pair.
        Assert.Contains("gemma3.rope.scaling.yarn_log_multiplier is set (DeepSeek's YaRN mscale), which is not implemented",
            Refusal(gemma, meta => { meta["gemma3.rope.scaling.type"] = "yarn"; meta["gemma3.rope.scaling.original_context_length"] = 8u; meta["gemma3.rope.scaling.yarn_log_multiplier"] = 0.1f; }));

        // longrope factors that do not fit the rotated dimensions, one of the two missing, and an odd rotary width.
        var phi = Model("phi3-longrope");
        var tensors = GgufWriter.Tensors(phi, GgmlType.F32);
        Assert.Contains("rope_factors_long.weight is F32 [16]; longrope needs F32 [12], one factor per rotated pair", Refusal(phi, _ => { },
            tensors.Select(t => t.Name == "rope_factors_long.weight" ? new GgufWriter.Tensor(t.Name, [16], GgmlType.F32, new byte[64]) : t).ToList()));
        Assert.Contains("holds one of rope_factors_long.weight and rope_factors_short.weight but not rope_factors_short.weight",
            Refusal(phi, _ => { }, tensors.Where(t => t.Name != "rope_factors_short.weight").ToList()));
        Assert.Contains("phi3.rope.dimension_count is 23 of a head of 32; it must be even and at most the head",
            Refusal(phi, meta => meta["phi3.rope.dimension_count"] = 23u, tensors));
    }

    [Fact]
    public void A_llama_file_with_attention_biases_has_its_q_and_k_biases_permuted_back()
    {
        // llama.cpp's converter permutes q_proj.bias and k_proj.bias as it permutes their weight rows; reading the
        // biases unpermuted would rotate the wrong pairs and change every logit.
        var model = Model("llama", attentionBias: true);
        string safetensors = model.WriteTo(Path.Combine(_root, "hf"));
        string gguf = Path.Combine(_root, "biased.gguf");
        GgufWriter.Write(gguf, GgufWriter.Metadata(model), GgufWriter.Tensors(model, GgmlType.F32));
        var options = new ModelLoadOptions { ContextLength = 32, Threads = 1 };
        var expected = Run(safetensors, 1, options);
        var fromFile = Run(gguf, 1, options);
        var split = Run(gguf, 2, options);
        for (int step = 0; step < expected.Count; step++)
        {
            SyntheticModelTests.AssertClose(expected[step], fromFile[step], 0f, $"N=1, step {step}");
            SyntheticModelTests.AssertClose(expected[step], split[step], 1e-4f, $"N=2, step {step}");
        }
    }

    [Fact]
    public void A_k_quant_file_runs_q4_k_and_q5_k_as_q4_1_and_q5_1_and_q6_k_as_q8_0_at_world_sizes_1_and_2()
    {
        // Q4_K_M's mix: Q4_K for most matrices, Q6_K for down_proj and the head, and Q5_K (as in Q5_K_M) for
        // o_proj. Blocks of 256 values, so every row-parallel share at world size 2 must be 256 columns wide.
        var model = SuperBlockModel(seed: 5);
        var tensors = GgufWriter.Tensors(model, GgmlType.F32);
        // The reference file holds what each matrix must run as, built independently of the loader's conversion:
        // the Q4_K and Q5_K matrices' sub-blocks written out as Q4_1 and Q5_1 blocks, and the Q6_K values quantized
        // to Q8_0.
        var reference = tensors.ToList();
        var rng = new Random(6);
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            if (t.Shape.Length != 2 || t.Name == "token_embd.weight") continue;
            var type = t.Name.Contains("ffn_down") || t.Name == "output.weight" ? GgmlType.Q6_K
                : t.Name.Contains("attn_output") ? GgmlType.Q5_K : GgmlType.Q4_K;
            long count = t.Shape[0] * t.Shape[1];
            if (type is GgmlType.Q4_K or GgmlType.Q5_K)
            {
                var (kquant, scaled) = RandomScaleMinimumKQuant(type, count, rng);
                tensors[i] = t with { Type = type, Data = kquant };
                reference[i] = t with { Type = type == GgmlType.Q4_K ? GgmlType.Q4_1 : GgmlType.Q5_1, Data = scaled };
                Dequantized(type, kquant, count).CopyTo(model.W.First(kv => GgufWriter.GgufName(kv.Key) == t.Name).Value, 0);
                continue;
            }
            byte[] blocks = RandomKBlocks(type, count, rng);
            tensors[i] = t with { Type = type, Data = blocks };
            var values = Dequantized(type, blocks, count);
            values.CopyTo(model.W.First(kv => GgufWriter.GgufName(kv.Key) == t.Name).Value, 0);
            long cols = t.Shape[^1], rowBytes = BlockFormat.Q8_0.RowBytes(cols);
            var q8 = new byte[count / cols * rowBytes];
            for (long r = 0; r < count / cols; r++)
                BlockFormat.Q8_0.QuantizeRow(values.AsSpan((int)(r * cols), (int)cols), q8.AsSpan((int)(r * rowBytes), (int)rowBytes));
            reference[i] = t with { Type = GgmlType.Q8_0, Data = q8 };
        }
        var (gguf, referenceGguf) = WriteWithReference(model, tensors, reference);

        var options = new ModelLoadOptions { ContextLength = 32, Threads = 1 };
        var expected = Run(referenceGguf, 1, options);
        var fromFile = Run(gguf, 1, options);
        var split = Run(gguf, 2, options);
        for (int step = 0; step < expected.Count; step++)
        {
            SyntheticModelTests.AssertClose(expected[step], fromFile[step], 0f, $"N=1, step {step}");
            SyntheticModelTests.AssertClose(expected[step], split[step], 1e-4f, $"N=2, step {step}");
        }

        // With --quant q8_0 (and the head) every K-quant matrix is requantized instead: the file then gives the logits
        // of a checkpoint holding the very values its blocks stand for, quantized to Q8_0 at load.
        var asQ8 = new ModelLoadOptions { ContextLength = 32, Threads = 1, Quant = WeightQuantization.Q8_0, QuantizeLmHead = true };
        var expectedQ8 = Run(model.WriteTo(Path.Combine(_root, "hf")), 1, asQ8);
        var fromFileQ8 = Run(gguf, 1, asQ8);
        for (int step = 0; step < expectedQ8.Count; step++)
            SyntheticModelTests.AssertClose(expectedQ8[step], fromFileQ8[step], 0f, $"--quant q8_0, step {step}");
        Assert.NotEqual(fromFile[0], fromFileQ8[0]); // the two runs did hold different blocks
    }

    /// <summary>
    /// IQ4_NL files run natively and IQ4_XS files as IQ4_NL: each gives exactly the logits of a reference file holding
    /// the Q8_0 blocks of the very same values (a block's scale, and its table values as int8; the IQ4_XS sub-block
    /// scales d·(ls-32) exact in fp16 with d = 2^-12), at one rank and at two.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void An_iq4_file_gives_the_logits_of_the_q8_0_blocks_of_its_values(GgmlType type)
    {
        var model = SuperBlockModel(seed: 7);
        var tensors = GgufWriter.Tensors(model, GgmlType.F32);
        var reference = tensors.ToList();
        var rng = new Random(8);
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            if (t.Shape.Length != 2 || t.Name == "token_embd.weight") continue;
            long blocks = t.Shape[0] * t.Shape[1] / 32;
            var q8 = new byte[blocks * 34];
            byte[] data;
            if (type == GgmlType.IQ4_NL)
            {
                data = new byte[blocks * 18];
                rng.NextBytes(data);
                for (long b = 0; b < blocks; b++)
                {
                    BitConverter.TryWriteBytes(data.AsSpan((int)(b * 18)), (Half)((rng.NextDouble() * 2 - 1) * 0.002));
                    ToQ8_0(data.AsSpan((int)(b * 18), 2), data.AsSpan((int)(b * 18 + 2), 16), q8.AsSpan((int)(b * 34), 34));
                }
            }
            else
            {
                data = new byte[blocks / 8 * 136];
                rng.NextBytes(data);
                for (long s = 0; s < blocks / 8; s++)
                {
                    var super = data.AsSpan((int)(s * 136), 136);
                    BitConverter.TryWriteBytes(super, (Half)MathF.Pow(2, -12));
                    for (int j = 0; j < 8; j++)
                    {
                        // ls: four bits in scales_l, two in scales_h (ggml's dequantize_row_iq4_xs).
                        int ls = ((super[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((BitConverter.ToUInt16(super[2..]) >> (2 * j)) & 3) << 4);
                        ToQ8_0(BitConverter.GetBytes((Half)((ls - 32) * MathF.Pow(2, -12))), super.Slice(8 + 16 * j, 16), q8.AsSpan((int)((s * 8 + j) * 34), 34));
                    }
                }
            }
            tensors[i] = t with { Type = type, Data = data };
            reference[i] = t with { Type = GgmlType.Q8_0, Data = q8 };
        }
        var (gguf, referenceGguf) = WriteWithReference(model, tensors, reference);
        var options = new ModelLoadOptions { ContextLength = 32, Threads = 1 };
        // At each world size exactly: across world sizes a quantized model may differ more than a float one (the
        // all-reduce's order can flip a rounding of the activations' 8-bit blocks; 0.03 on one logit here).
        var expected = Run(referenceGguf, 1, options);
        var fromFile = Run(gguf, 1, options);
        var expectedSplit = Run(referenceGguf, 2, options);
        var split = Run(gguf, 2, options);
        for (int step = 0; step < expected.Count; step++)
        {
            SyntheticModelTests.AssertClose(expected[step], fromFile[step], 0f, $"{type} N=1, step {step}");
            SyntheticModelTests.AssertClose(expectedSplit[step], split[step], 0f, $"{type} N=2, step {step}");
        }

        static void ToQ8_0(ReadOnlySpan<byte> scale, ReadOnlySpan<byte> indices, Span<byte> q8)
        {
            scale.CopyTo(q8);
            for (int k = 0; k < 32; k++) q8[2 + k] = (byte)Iq4NlFormat.Table[k < 16 ? indices[k] & 0x0F : indices[k - 16] >> 4];
        }
    }

    /// <summary>A small qwen2 model whose every matrix, and every rank's share of it at two ranks, is whole
    /// 256-value super-blocks (the K-quant and IQ4_XS tests).</summary>
    private static SyntheticModel SuperBlockModel(int seed) => new SyntheticModel
    {
        ModelType = "qwen2", Hidden = 256, Intermediate = 512, Layers = 2, Heads = 8, KvHeads = 4, HeadDim = 64, Vocab = 300,
        Tied = false,
    }.Build(seed);

    /// <summary>The file under test and, in a directory of its own, the reference file holding what it must run as.</summary>
    private (string File, string Reference) WriteWithReference(SyntheticModel model, List<GgufWriter.Tensor> tensors, List<GgufWriter.Tensor> reference)
    {
        string file = Path.Combine(_root, "under-test.gguf");
        GgufWriter.Write(file, GgufWriter.Metadata(model), tensors);
        Directory.CreateDirectory(Path.Combine(_root, "ref"));
        string referenceFile = Path.Combine(_root, "ref", "reference.gguf");
        GgufWriter.Write(referenceFile, GgufWriter.Metadata(model), reference);
        return (file, referenceFile);
    }

    /// <summary>
    /// Random Q4_K or Q5_K super-blocks and the same weights as Q4_1 or Q5_1 blocks, both written from one draw of
    /// every field: d = 2^-12 and dmin = 2^-13, so each sub-block's d·sc and -dmin·m are exact in fp16 and the two
    /// hold the very same values; the 6-bit scales and minimums packed as ggml's get_scale_min_k4 unpacks them, a
    /// Q5_K value's fifth bit as bit j (its sub-block) of qh's byte l (its place in the sub-block).
    /// </summary>
    private static (byte[] KQuant, byte[] Scaled) RandomScaleMinimumKQuant(GgmlType type, long count, Random rng)
    {
        bool q5 = type == GgmlType.Q5_K;
        int superBytes = q5 ? 176 : 144, blockBytes = q5 ? 24 : 20, low = q5 ? 48 : 16;
        long superBlocks = count / 256;
        var kquant = new byte[superBlocks * superBytes];
        var scaled = new byte[superBlocks * 8 * blockBytes];
        for (long s = 0; s < superBlocks; s++)
        {
            var k = kquant.AsSpan((int)(s * superBytes), superBytes);
            BitConverter.TryWriteBytes(k, (Half)MathF.Pow(2, -12));
            BitConverter.TryWriteBytes(k[2..], (Half)MathF.Pow(2, -13));
            var sc = Enumerable.Range(0, 8).Select(_ => rng.Next(64)).ToArray();
            var mins = Enumerable.Range(0, 8).Select(_ => rng.Next(64)).ToArray();
            for (int j = 0; j < 4; j++)
            {
                k[4 + j] = (byte)(sc[j] | ((sc[j + 4] >> 4) << 6));
                k[8 + j] = (byte)(mins[j] | ((mins[j + 4] >> 4) << 6));
                k[12 + j] = (byte)((sc[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4));
            }
            for (int j = 0; j < 8; j++)
            {
                var q = Enumerable.Range(0, 32).Select(_ => rng.Next(q5 ? 32 : 16)).ToArray();
                for (int l = 0; l < 32; l++)
                {
                    k[low + 32 * (j / 2) + l] |= (byte)((q[l] & 0xF) << (4 * (j & 1)));
                    if (q5) k[16 + l] |= (byte)((q[l] >> 4) << j);
                }
                var block = scaled.AsSpan((int)((s * 8 + j) * blockBytes), blockBytes);
                BitConverter.TryWriteBytes(block, (Half)(sc[j] * MathF.Pow(2, -12)));
                BitConverter.TryWriteBytes(block[2..], (Half)(-mins[j] * MathF.Pow(2, -13)));
                uint qh = 0;
                for (int l = 0; l < 16; l++)
                {
                    block[(q5 ? 8 : 4) + l] = (byte)((q[l] & 0xF) | ((q[l + 16] & 0xF) << 4));
                    qh |= (uint)(q[l] >> 4) << l | (uint)(q[l + 16] >> 4) << (l + 16);
                }
                if (q5) BitConverter.TryWriteBytes(block[4..], qh);
            }
        }
        return (kquant, scaled);
    }

    /// <summary>
    /// K-quant blocks with random quants and sub-block scales and a small, finite super-block scale (random bytes
    /// there could be an fp16 NaN): every field of the format is exercised, as a real file's would be.
    /// </summary>
    private static byte[] RandomKBlocks(GgmlType type, long count, Random rng)
    {
        var (blockSize, blockBytes) = GgmlTypeTraits.Geometry(type)!.Value;
        var data = new byte[count / blockSize * blockBytes];
        rng.NextBytes(data);
        for (int at = 0; at < data.Length; at += blockBytes)
        {
            if (type == GgmlType.Q6_K)
            {
                BitConverter.TryWriteBytes(data.AsSpan(at + blockBytes - 2), (Half)0.0002f);
                continue;
            }
            BitConverter.TryWriteBytes(data.AsSpan(at), (Half)0.0003f);     // d
            BitConverter.TryWriteBytes(data.AsSpan(at + 2), (Half)0.0002f); // dmin
        }
        return data;
    }

    private static unsafe float[] Dequantized(GgmlType type, byte[] blocks, long count)
    {
        var values = new float[count];
        fixed (byte* src = blocks)
        fixed (float* dst = values)
            GgmlTypeTraits.Dequantize(type, src, count, dst);
        return values;
    }

    [Fact]
    public void Ranks_read_only_their_own_byte_ranges_of_a_quantized_file()
    {
        var model = Model("qwen2");
        string gguf = Path.Combine(_root, "q8.gguf");
        var tensors = GgufWriter.Tensors(model, GgmlType.Q8_0);
        GgufWriter.Write(gguf, GgufWriter.Metadata(model), tensors);
        long replicated = tensors.Where(t => t.Name is "token_embd.weight" || t.Name.Contains("norm") || t.Name.EndsWith("attn_output.bias")).Sum(t => t.Data.Length);
        long sharded = tensors.Sum(t => t.Data.Length) - replicated;
        var read = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.Load(gguf, comm, new ModelLoadOptions { ContextLength = 8 });
            return m.CheckpointBytesRead;
        });
        Assert.All(read, bytes => Assert.Equal(replicated + sharded / 2, bytes));
    }

    [Fact]
    public void A_split_gguf_set_loads_from_its_first_part()
    {
        var model = Model("llama");
        var tensors = GgufWriter.Tensors(model, GgmlType.F16);
        var meta = GgufWriter.Metadata(model);
        GgufWriter.Write(Path.Combine(_root, "m-00001-of-00002.gguf"), meta, tensors.Where((_, i) => i % 2 == 0).ToList());
        GgufWriter.Write(Path.Combine(_root, "m-00002-of-00002.gguf"), new() { ["split.no"] = (uint)1 }, tensors.Where((_, i) => i % 2 == 1).ToList());
        var expected = Run(model.WriteTo(Path.Combine(_root, "hf")), 1, new ModelLoadOptions { ContextLength = 32, Threads = 1 });
        var got = Run(_root, 1, new ModelLoadOptions { ContextLength = 32, Threads = 1 });
        // F16 on disk: the values rounded to fp16, so near, not equal.
        for (int step = 0; step < expected.Count; step++) SyntheticModelTests.AssertClose(expected[step], got[step], 0.05f, $"step {step}");
        File.Delete(Path.Combine(_root, "m-00002-of-00002.gguf"));
        var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Recognise(_root).ReadConfig());
        Assert.Contains("split GGUF part m-00002-of-00002.gguf of 2 is missing", e.Message);
    }

    [Fact]
    public void Types_it_cannot_read_are_refused_by_name_and_block_cutting_world_sizes_named()
    {
        var model = Model("llama");
        var tensors = GgufWriter.Tensors(model, GgmlType.F32);
        tensors[3] = tensors[3] with { Type = GgmlType.Q5_0 };
        string gguf = Path.Combine(_root, "bad.gguf");
        GgufWriter.Write(gguf, GgufWriter.Metadata(model), tensors);
        var e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(1, comm => ShardedLlama.Load(gguf, comm, new ModelLoadOptions { ContextLength = 8 })));
        Assert.Contains($"tensor {tensors[3].Name} is Q5_0, which this loader does not read", e.Message);

        // 4 heads of 32 in Q8_0 blocks split over 4 ranks is whole blocks; heads of 16 over 4 ranks are not.
        var narrow = new SyntheticModel { ModelType = "qwen2", Hidden = 64, Intermediate = 256, Heads = 4, KvHeads = 4, HeadDim = 16, Vocab = 50 }.Build(1);
        string small = Path.Combine(_root, "narrow.gguf");
        GgufWriter.Write(small, GgufWriter.Metadata(narrow), GgufWriter.Tensors(narrow, GgmlType.Q8_0));
        e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(4, comm => ShardedLlama.Load(small, comm, new ModelLoadOptions { ContextLength = 8 })));
        Assert.Contains("model.layers.0.self_attn.o_proj.weight stored as Q8_0 needs every rank's share of o_proj and down_proj to be whole 32-value blocks, and world size 4 cuts them", e.Message);
        Assert.EndsWith("world sizes that work: 1, 2", e.Message);
    }

    [Fact]
    public void A_llama_vocabulary_in_the_metadata_tokenizes_as_the_original()
    {
        // stories260K's llama2.c vocabulary (pieces and scores), written as a SentencePiece-style GGUF vocabulary.
        var (tokens, scores) = GgufWriter.Llama2cVocabulary(Path.Combine(TestPaths.Llama2c, "tok512.bin"));
        var meta = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = tokens.ToArray(),
            ["tokenizer.ggml.scores"] = scores.ToArray(),
            ["tokenizer.ggml.bos_token_id"] = 1u,
        };
        string gguf = Path.Combine(_root, "tok.gguf");
        GgufWriter.Write(gguf, meta, []);
        var original = TokenizerLoader.Load(Path.Combine(TestPaths.Llama2c, "tok512.bin"));
        var fromGguf = TokenizerLoader.Load(gguf);
        const string text = "Once upon a time, there was a little girl named Lily. She loved to play outside!";
        var ids = fromGguf.Encode(text, addBos: true);
        Assert.Equal(original.Encode(text, addBos: true), ids);
        Assert.Equal(1, ids[0]);
        Assert.Equal(original.Decode(ids), fromGguf.Decode(ids));
        Assert.Contains("little girl named Lily", fromGguf.Decode(ids));
    }

    /// <summary>
    /// A prompt begins with BOS as the file's <c>tokenizer.ggml.add_bos_token</c> says, and without the key as
    /// llama.cpp decides: always for a SentencePiece vocabulary, for a gpt2-type one only with Llama 3's
    /// pre-tokenizer (Qwen2's files say false, Llama 3's true).
    /// </summary>
    [Theory]
    [InlineData("llama", null, true)]
    [InlineData("llama", false, false)]
    [InlineData("llama", true, true)]
    [InlineData("llama-bpe", null, true)]
    [InlineData("llama-bpe", false, false)]
    [InlineData("qwen2", null, false)]
    [InlineData("qwen2", true, true)]
    public void A_prompt_begins_with_bos_as_add_bos_token_says(string vocabulary, bool? addBos, bool expectBos)
    {
        Dictionary<string, object> meta;
        if (vocabulary == "llama")
        {
            var (tokens, scores) = GgufWriter.Llama2cVocabulary(Path.Combine(TestPaths.Llama2c, "tok512.bin"));
            (tokens[1], tokens[2]) = ("<s>", "</s>"); // llama2.c's file spells them "\n<s>\n" and "\n</s>\n"
            meta = new()
            {
                ["tokenizer.ggml.model"] = "llama",
                ["tokenizer.ggml.tokens"] = tokens.ToArray(),
                ["tokenizer.ggml.scores"] = scores.ToArray(),
                ["tokenizer.ggml.token_type"] = tokens.Select((t, i) => i == 0 ? 2 : i < 3 ? 3 : t.StartsWith("<0x", StringComparison.Ordinal) ? 6 : 1).ToArray(),
                ["tokenizer.ggml.bos_token_id"] = 1u,
            };
        }
        else
        {
            // A byte-level vocabulary small enough to spell "Hello" (these letters are their own byte-level symbols).
            meta = new()
            {
                ["tokenizer.ggml.model"] = "gpt2",
                ["tokenizer.ggml.pre"] = vocabulary,
                ["tokenizer.ggml.tokens"] = new[] { "<|begin_of_text|>", "H", "e", "l", "o", "ll" },
                ["tokenizer.ggml.token_type"] = new[] { 3, 1, 1, 1, 1, 1 },
                ["tokenizer.ggml.merges"] = new[] { "l l" },
                ["tokenizer.ggml.bos_token_id"] = 0u,
            };
        }
        if (addBos is { } value) meta["tokenizer.ggml.add_bos_token"] = value;
        string gguf = Path.Combine(_root, "bos.gguf");
        GgufWriter.Write(gguf, meta, []);
        var tok = TokenizerLoader.Load(gguf);
        var plain = tok.Encode("Hello", addBos: false);
        var prompt = tok.Encode("Hello", addBos: true);
        Assert.Equal(expectBos ? [tok.BosId, .. plain] : plain, prompt);
        if (vocabulary != "llama") Assert.Equal([1, 2, 5, 4], plain);
        // A template that writes BOS itself gets no second one, whatever the key says.
        Assert.Equal([tok.BosId, .. plain], tok.EncodePrompt(tok.IdToToken(tok.BosId) + "Hello"));
    }

    /// <summary>
    /// A SentencePiece vocabulary with chat tokens: control tokens are matched whole wherever they are in the text,
    /// the text between them gets the dummy space (as llama.cpp tokenizes a chat prompt), and in a phi3 file the
    /// chat tokens swallow the whitespace after them, as Phi-3's tokenizer.json marks them (rstrip) and llama.cpp
    /// hard-codes; &lt;|endoftext|&gt; does not. The same ids came from llama.cpp on this vocabulary (by hand, with
    /// docs/bench/llamacpp_greedy.cpp tokenize).
    /// </summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("phi3")]
    public void Chat_tokens_are_matched_whole_and_phi3s_strip_the_whitespace_after_them(string arch)
    {
        var (tokens, scores) = GgufWriter.Llama2cVocabulary(Path.Combine(TestPaths.Llama2c, "tok512.bin"));
        (tokens[1], tokens[2]) = ("<s>", "</s>"); // llama2.c's file spells them "\n<s>\n" and "\n</s>\n"
        int plain = tokens.Count;
        string[] chat = ["<|endoftext|>", "<|user|>", "<|end|>", "<|assistant|>"];
        tokens.AddRange(chat);
        scores.AddRange(chat.Select(_ => 0f));
        var types = tokens.Select((t, i) => i == 0 ? 2 : i < 3 || i >= plain ? 3 : t.StartsWith("<0x", StringComparison.Ordinal) ? 6 : 1).ToArray();
        string gguf = Path.Combine(_root, "chat.gguf");
        GgufWriter.Write(gguf, new Dictionary<string, object>
        {
            ["general.architecture"] = arch,
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = tokens.ToArray(),
            ["tokenizer.ggml.scores"] = scores.ToArray(),
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.bos_token_id"] = 1u,
            ["tokenizer.ggml.eos_token_id"] = 2u,
        }, []);
        var tok = TokenizerLoader.Load(gguf);
        int endOfText = plain, user = plain + 1, end = plain + 2, assistant = plain + 3;
        var ids = tok.Encode("<|user|>\nOnce upon<|end|>\n<|assistant|>\n", addBos: false);
        int[] Text(string text) => [.. tok.Encode(text, addBos: false)];
        int[] expected = arch == "phi3"
            ? [user, .. Text("Once upon"), end, assistant]
            : [user, .. Text("\nOnce upon"), end, .. Text("\n"), assistant, .. Text("\n")];
        Assert.Equal(expected, ids);
        // <|endoftext|> keeps what follows; <|end|> ends a turn (found by its text), as does EOS.
        Assert.Equal([endOfText, .. Text(" a")], tok.Encode("<|endoftext|> a", addBos: false));
        // llama.cpp's ids for these on the same vocabulary.
        Assert.Equal(arch == "phi3" ? [user, 403, 407, end, assistant] : [user, 410, 13, 441, 416, 331, 407, end, 410, 13, assistant, 410, 13], ids);
        Assert.Equal(arch == "phi3" ? [user, 320, 417, 383, end] : [user, 410, 410, 320, 417, 383, end], tok.Encode("<|user|>  Hi there<|end|>", addBos: false));
        Assert.Equal([2, end], tok.EosIds.Order());
        Assert.True(tok.IsSpecial(user));
        if (arch == "phi3") Assert.Equal("Once upon", tok.Decode(ids));
    }
}

using ActorRing.Model.Tests.Support;

namespace ActorRing.Model.Tests;

/// <summary>
/// Random-weight models written as safetensors by the test cover what stories260K does not. For each, the
/// logits at world size N equal world size 1, and both equal an independent reference forward pass, for a
/// prefill and for decode steps after it.
/// </summary>
public sealed class SyntheticModelTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "actorring-synth-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static SyntheticModel Variant(string name) => name switch
    {
        // 2 KV heads over 4 ranks: each KV head replicated on two ranks. Vocabulary 101 and FFN 42 split unevenly.
        "kv-replication" => new SyntheticModel { ModelType = "llama", KvHeads = 2 },
        // q/k/v biases on column-parallel layers (sliced per rank), rope_theta 1e6, two-file sharded checkpoint.
        "qwen2-biases" => new SyntheticModel { ModelType = "qwen2", Theta = 1_000_000, Shards = 2, Tied = false },
        // Untied head, BF16 weights on disk, llama3 rope scaling, rope_theta 500000.
        "untied-bf16-llama3" => new SyntheticModel
        {
            ModelType = "llama", Tied = false, DiskDType = "BF16", Theta = 500_000, KvHeads = 4,
            Llama3 = (8.0, 1.0, 4.0, 16),
        },
        // Row-parallel o_proj bias (llama attention_bias) must be added once, after the all-reduce; F16 on disk.
        "attention-bias-f16" => new SyntheticModel { ModelType = "llama", AttentionBias = true, DiskDType = "F16", KvHeads = 1, Vocab = 97 },
        // head_dim given explicitly, not hidden/heads; mistral model type.
        "mistral-head-dim" => new SyntheticModel { ModelType = "mistral", HeadDim = 12, Hidden = 40, KvHeads = 4, Intermediate = 64 },
        // qwen2 with yarn (factor 4 over 64 original positions, head_dim 16: of its 8 frequency pairs the first keeps its
        // frequency, the next two are blended and the rest divided by 4; cos and sin scaled by 0.1·ln 4 + 1).
        "qwen2-yarn" => new SyntheticModel { ModelType = "qwen2", HeadDim = 16, Yarn = (4.0, 64), Tied = false },
        // llama with linear position interpolation (every frequency halved).
        "llama-linear-rope" => new SyntheticModel { ModelType = "llama", LinearRope = 2.0, KvHeads = 4 },
        // phi3 longrope within its pretraining context (128 > the tests' 64): the short factors, cos and sin scaled by
        // √(1 + ln(256/128) / ln 128).
        "phi3-longrope-short" => new SyntheticModel
        {
            ModelType = "phi3", HeadDim = 16, KvHeads = 4, Tied = false,
            LongRope = ([1.0f, 1.1f, 1.3f, 2f, 3f, 5f, 9f, 14f], [2f, 3f, 5f, 8f, 13f, 21f, 34f, 55f], 128),
        },
        _ => ArchitectureTests.Variant(name),
    };

    /// <summary>The tokens every variant test decodes after its prompt.</summary>
    private static readonly int[] Decoded = [7, 64, 23];

    /// <summary>A variant's weights written as a checkpoint directory, and a prompt within its vocabulary.</summary>
    private (SyntheticModel Model, string Dir, int[] Prompt) Written(string variant)
    {
        var model = Variant(variant).Build(seed: variant.Length * 7919);
        return (model, model.WriteTo(Path.Combine(_root, variant)), [1, 17, 42, 5, 99 % model.Vocab, 3]);
    }

    public static TheoryData<string> Variants() => new(["kv-replication", "qwen2-biases", "untied-bf16-llama3", "attention-bias-f16", "mistral-head-dim", "qwen2-yarn", "llama-linear-rope", "phi3-longrope-short", .. ArchitectureTests.VariantNames]);

    [Theory]
    [MemberData(nameof(Variants))]
    public void Logits_at_world_sizes_1_2_4_match_each_other_and_the_reference(string variant)
    {
        var (model, dir, prompt) = Written(variant);

        // Reference: logits after the prompt, then after each decoded token.
        var reference = new List<float[]> { ReferenceForward.LastLogits(model, prompt) };
        for (int i = 1; i <= Decoded.Length; i++)
            reference.Add(ReferenceForward.LastLogits(model, [.. prompt, .. Decoded[..i]]));

        var byWorld = new Dictionary<int, List<float[]>>();
        foreach (int n in new[] { 1, 2, 4 })
        {
            var perRank = InProcessGroup.Run(n, comm =>
            {
                using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 64, Threads = 1 });
                var steps = new List<float[]?> { m.Forward(0, prompt, 0) };
                for (int i = 0; i < Decoded.Length; i++) steps.Add(m.Forward(0, [Decoded[i]], prompt.Length + i));
                return steps;
            });
            Assert.All(perRank.Skip(1), steps => Assert.All(steps, s => Assert.Null(s)));
            byWorld[n] = perRank[0].Select(s => s!).ToList();
        }

        for (int step = 0; step < reference.Count; step++)
        {
            AssertClose(reference[step], byWorld[1][step], 1e-4f, $"{variant} N=1 vs reference, step {step}");
            AssertClose(byWorld[1][step], byWorld[2][step], 1e-4f, $"{variant} N=2 vs N=1, step {step}");
            AssertClose(byWorld[1][step], byWorld[4][step], 1e-4f, $"{variant} N=4 vs N=1, step {step}");
        }
    }

    /// <summary>
    /// bf16 compute: decode steps run the float32 fast path over bf16 weights and cache (biases, replicated KV
    /// heads, uneven vocabulary and all), prefill runs libtorch in bf16. Each decode step must agree with a bf16
    /// prefill of the same tokens, at world sizes 1 and 4, and stay near the float32 reference.
    /// </summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void Bf16_decode_steps_match_a_bf16_prefill_of_the_same_tokens_at_world_sizes_1_and_4(string variant)
    {
        var (model, dir, prompt) = Written(variant);
        var options = new ModelLoadOptions { ContextLength = 64, Threads = 1, DType = ComputeDType.BF16, Slots = 2 };
        foreach (int n in new[] { 1, 4 })
        {
            var perRank = InProcessGroup.Run(n, comm =>
            {
                using var m = ShardedLlama.Load(dir, comm, options);
                var decodeSteps = new List<float[]?>();
                m.Forward(0, prompt, 0);
                for (int i = 0; i < Decoded.Length; i++) decodeSteps.Add(m.Forward(0, [Decoded[i]], prompt.Length + i));
                var prefills = new List<float[]?>();
                for (int i = 1; i <= Decoded.Length; i++)
                {
                    m.ResetSlot(1);
                    prefills.Add(m.Forward(1, [.. prompt, .. Decoded[..i]], 0));
                }
                return (decodeSteps, prefills);
            });
            var (steps, prefilled) = perRank[0];
            for (int i = 0; i < Decoded.Length; i++)
            {
                var reference = ReferenceForward.LastLogits(model, [.. prompt, .. Decoded[..(i + 1)]]);
                float spread = reference.Max() - reference.Min();
                AssertClose(prefilled[i]!, steps[i]!, 0.03f * spread, $"{variant} N={n} bf16 decode vs bf16 prefill, step {i + 1}");
                AssertClose(reference, steps[i]!, 0.03f * spread, $"{variant} N={n} bf16 decode vs float32 reference, step {i + 1}");
            }
        }
    }

    /// <summary>
    /// A prompt appended in chunks (multi-token forwards after position 0, so the causal mask is offset)
    /// matches the reference, and two slots interleaved keep separate caches.
    /// </summary>
    [Fact]
    public void Chunked_prefill_and_interleaved_slots_match_the_reference()
    {
        var model = Variant("kv-replication").Build(seed: 11);
        string dir = model.WriteTo(Path.Combine(_root, "chunks"));
        int[] a = [1, 9, 33, 70, 2, 15, 8];
        int[] b = [1, 50, 51];
        var expectedA = ReferenceForward.LastLogits(model, a);
        var expectedB = ReferenceForward.LastLogits(model, b);
        var got = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 16, Slots = 2 });
            m.Forward(0, a.AsSpan(0, 3), 0);
            m.Forward(1, b.AsSpan(0, 2), 0);
            var la = m.Forward(0, a.AsSpan(3), 3);
            var lb = m.Forward(1, b.AsSpan(2), 2);
            return (la, lb);
        });
        AssertClose(expectedA, got[0].la!, 1e-4f, "slot 0, chunked");
        AssertClose(expectedB, got[0].lb!, 1e-4f, "slot 1");
    }

    /// <summary>
    /// Each rank reads its own slices straight from the file: at N=4 a rank reads the replicated parts
    /// (embedding, norms) plus a quarter of every sharded matrix, never a whole matrix to cut.
    /// </summary>
    [Fact]
    public void Each_rank_reads_only_its_own_byte_ranges()
    {
        var model = new SyntheticModel { ModelType = "llama", KvHeads = 4, Vocab = 100, Intermediate = 40, Tied = false }.Build(seed: 5);
        string dir = model.WriteTo(Path.Combine(_root, "bytes"));
        long replicated = model.W.Where(kv => kv.Key.Contains("embed") || kv.Key.Contains("norm")).Sum(kv => kv.Value.Length * 4L);
        long sharded = model.W.Where(kv => !kv.Key.Contains("embed") && !kv.Key.Contains("norm")).Sum(kv => kv.Value.Length * 4L);
        var read = InProcessGroup.Run(4, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 8 });
            return m.CheckpointBytesRead;
        });
        Assert.All(read, bytes => Assert.Equal(replicated + sharded / 4, bytes));
        var whole = InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 8 });
            return m.CheckpointBytesRead;
        });
        Assert.Equal(replicated + sharded, whole[0]);
    }

    [Fact]
    public void Broken_checkpoints_are_refused_naming_the_tensor()
    {
        var model = new SyntheticModel { ModelType = "llama" }.Build(seed: 3);
        string dir = model.WriteTo(Path.Combine(_root, "broken"));
        string config = Path.Combine(dir, "config.json");

        // The config promises a wider FFN than the weights have.
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\":42", "\"intermediate_size\":44"));
        var e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(1, comm => ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 8 })));
        Assert.Contains("model.layers.0.mlp.gate_proj.weight has shape [42, 32], but the config implies [44, 32]", e.Message);

        // A truncated data section is caught from the header, before any weight is read.
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\":44", "\"intermediate_size\":42"));
        string file = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^100]);
        e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(1, comm => ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 8 })));
        Assert.Contains("data_offsets", e.Message);
    }

    internal static void AssertClose(float[] expected, float[] actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            float diff = Math.Abs(expected[i] - actual[i]);
            if (!(diff <= worst)) { worst = diff; at = i; }
        }
        Assert.True(worst <= tolerance, $"{what}: max |diff| {worst} at index {at} (expected {expected[Math.Max(at, 0)]}, got {actual[Math.Max(at, 0)]})");
    }
}

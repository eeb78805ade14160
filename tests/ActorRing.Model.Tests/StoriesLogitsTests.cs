using ActorRing.Model.Tests.Support;
using TorchSharp;

namespace ActorRing.Model.Tests;

public sealed class StoriesLogitsTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "actorring-stories-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true);
    }

    private static readonly int[] Prompt = [1, 403, 407, 261, 378]; // "Once upon a time" with BOS

    /// <summary>Logits after prefilling <see cref="Prompt"/>, then after each of 8 greedy decode steps.</summary>
    private static List<float[]> PrefillAndDecode(string dir, int worldSize, ModelLoadOptions? options = null)
    {
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, options ?? new ModelLoadOptions { ContextLength = 64, Threads = 1 });
            var steps = new List<float[]>();
            var logits = m.Forward(0, Prompt, 0);
            int pos = Prompt.Length;
            for (int i = 0; i <= 8; i++)
            {
                if (comm.Rank == 0) steps.Add(logits!);
                if (i == 8) break;
                Span<int> next = [logits is null ? 0 : TestPaths.ArgMax(logits)];
                comm.Broadcast(next, 0);
                logits = m.Forward(0, next, pos++);
            }
            return steps;
        });
        return perRank[0];
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Prefill_and_decode_logits_at_world_size_N_equal_world_size_1(int worldSize)
    {
        var one = PrefillAndDecode(TestPaths.Hf, 1);
        var many = PrefillAndDecode(TestPaths.Hf, worldSize);
        Assert.Equal(9, one.Count);
        for (int i = 0; i < one.Count; i++)
            SyntheticModelTests.AssertClose(one[i], many[i], 1e-4f, $"N={worldSize} step {i} ({(i == 0 ? "prefill" : "decode")})");
    }

    [Fact]
    public void Splitting_products_over_helper_threads_in_a_rank_gives_the_same_logits()
    {
        var one = PrefillAndDecode(TestPaths.Hf, 1);
        // Three helpers cut every output dimension unevenly; with two ranks as well.
        var split = PrefillAndDecode(TestPaths.Hf, 2, new ModelLoadOptions { ContextLength = 64, Threads = 3 });
        for (int i = 0; i < one.Count; i++) SyntheticModelTests.AssertClose(one[i], split[i], 1e-4f, $"step {i}");
    }

    [Fact]
    public void Weights_read_in_many_small_pieces_give_the_same_logits()
    {
        var whole = PrefillAndDecode(TestPaths.Hf, 1);
        int saved = ShardedLlama.MaxReadElements;
        ShardedLlama.MaxReadElements = 100; // the 512x64 embedding in pieces of one row
        try
        {
            var pieces = PrefillAndDecode(TestPaths.Hf, 1);
            for (int i = 0; i < whole.Count; i++) Assert.Equal(whole[i], pieces[i]);
        }
        finally
        {
            ShardedLlama.MaxReadElements = saved;
        }
    }

    [Fact]
    public void Llama2c_and_HF_files_give_the_same_logits()
    {
        var hf = PrefillAndDecode(TestPaths.Hf, 1);
        var l2c = PrefillAndDecode(TestPaths.Llama2c, 1);
        for (int i = 0; i < hf.Count; i++) SyntheticModelTests.AssertClose(hf[i], l2c[i], 1e-5f, $"step {i}");
    }

    /// <summary>export.py's version 1 ("ak42") layout, rewritten from the legacy file, loads to the same model.</summary>
    [Fact]
    public void Llama2c_version1_ak42_checkpoint_equals_the_legacy_checkpoint()
    {
        string legacyDir = TestPaths.Llama2c;
        byte[] legacy = File.ReadAllBytes(Path.Combine(legacyDir, "stories260K.bin"));
        int[] hdr = new int[7];
        Buffer.BlockCopy(legacy, 0, hdr, 0, 28);
        int dim = hdr[0], hidden = hdr[1], layers = hdr[2], heads = hdr[3], kvHeads = hdr[4], vocab = Math.Abs(hdr[5]), seqLen = hdr[6];
        int kvDim = kvHeads * dim / heads;
        int at = 28;
        float[] Take(long n)
        {
            var f = new float[n];
            Buffer.BlockCopy(legacy, at, f, 0, (int)(n * 4));
            at += (int)(n * 4);
            return f;
        }
        var emb = Take((long)vocab * dim);
        var attNorm = Take((long)layers * dim);
        var wq = Take((long)layers * dim * dim);
        var wk = Take((long)layers * kvDim * dim);
        var wv = Take((long)layers * kvDim * dim);
        var wo = Take((long)layers * dim * dim);
        var ffnNorm = Take((long)layers * dim);
        var w1 = Take((long)layers * hidden * dim);
        var w2 = Take((long)layers * dim * hidden);
        var w3 = Take((long)layers * hidden * dim);
        var finalNorm = Take(dim);

        string dir = Path.Combine(_tmp, "v1");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(legacyDir, "tok512.bin"), Path.Combine(dir, "tokenizer.bin"));
        using (var w = new BinaryWriter(File.Create(Path.Combine(dir, "model.bin"))))
        {
            w.Write(0x616b3432u);
            w.Write(1);
            foreach (int v in new[] { dim, hidden, layers, heads, kvHeads, vocab, seqLen }) w.Write(v);
            w.Write((byte)1); // shared classifier
            w.Write(new byte[256 - 37]);
            foreach (var block in new[] { attNorm, ffnNorm, finalNorm, emb, wq, wk, wv, wo, w1, w2, w3 })
                foreach (float f in block) w.Write(f);
        }

        var legacyLogits = PrefillAndDecode(legacyDir, 1);
        var v1Logits = PrefillAndDecode(dir, 2);
        for (int i = 0; i < legacyLogits.Count; i++) SyntheticModelTests.AssertClose(legacyLogits[i], v1Logits[i], 1e-4f, $"step {i}");
    }

    [Fact]
    public void BF16_compute_stays_close_to_FP32_and_agrees_on_the_greedy_token()
    {
        var f32 = PrefillAndDecode(TestPaths.Hf, 1);
        var bf16 = PrefillAndDecode(TestPaths.Hf, 2, new ModelLoadOptions { ContextLength = 64, Threads = 1, DType = ComputeDType.BF16 });
        // bf16 keeps 8 bits of mantissa, so logits move by a few percent of their spread; the greedy choice
        // after the prompt (a confident token) must survive.
        Assert.Equal(TestPaths.ArgMax(f32[0]), TestPaths.ArgMax(bf16[0]));
        SyntheticModelTests.AssertClose(f32[0], bf16[0], 0.5f, "bf16 vs f32 prefill");
        Assert.Contains(bf16, l => !l.SequenceEqual(f32[0])); // really computed in another precision
    }

    [Fact]
    public void A_bf16_KV_cache_under_float32_weights_takes_half_the_memory_and_keeps_the_greedy_tokens()
    {
        var options = new ModelLoadOptions { ContextLength = 64, Threads = 1 };
        var f32 = PrefillAndDecode(TestPaths.Hf, 1, options);
        var bf16Kv = PrefillAndDecode(TestPaths.Hf, 2, options with { KvDType = ComputeDType.BF16 });
        // Only keys and values are rounded (to 8 bits of mantissa) as they are stored: every step's greedy token
        // survives and the logits stay close, yet they are not the float32 cache's.
        for (int i = 0; i < f32.Count; i++)
        {
            Assert.Equal(TestPaths.ArgMax(f32[i]), TestPaths.ArgMax(bf16Kv[i]));
            SyntheticModelTests.AssertClose(f32[i], bf16Kv[i], 0.3f, $"bf16 KV vs f32 KV, step {i}");
        }
        Assert.Contains(Enumerable.Range(1, f32.Count - 1), i => !bf16Kv[i].SequenceEqual(f32[i]));

        using var comm = new InProcessGroup(1).Member(0);
        using var wide = ShardedLlama.Load(TestPaths.Hf, comm, options);
        using var narrow = ShardedLlama.Load(TestPaths.Hf, comm, options with { KvDType = ComputeDType.BF16 });
        Assert.Equal(wide.KvBlockBytes, 2 * narrow.KvBlockBytes);
    }

    [Fact]
    public void BF16_decode_steps_agree_with_a_bf16_prefill_of_the_same_tokens()
    {
        // Decode runs its own float32 loops over the bf16 weights and cache; prefill runs libtorch in bf16. Each
        // decode step's logits must match a fresh prefill of the same tokens up to bf16 rounding, and pick the
        // same greedy token.
        var options = new ModelLoadOptions { ContextLength = 64, Threads = 1, DType = ComputeDType.BF16 };
        var decoded = PrefillAndDecode(TestPaths.Hf, 1, options);
        var tokens = new List<int>(Prompt);
        using var comm = new InProcessGroup(1).Member(0);
        using var m = ShardedLlama.Load(TestPaths.Hf, comm, options);
        for (int step = 1; step < decoded.Count; step++)
        {
            tokens.Add(TestPaths.ArgMax(decoded[step - 1]));
            m.ResetSlot(0);
            var prefilled = m.Forward(0, tokens.ToArray(), 0)!;
            Assert.Equal(TestPaths.ArgMax(prefilled), TestPaths.ArgMax(decoded[step]));
            SyntheticModelTests.AssertClose(prefilled, decoded[step], 0.3f, $"bf16 decode step {step} vs prefill");
        }
        // Two ranks (split products, float32 all-reduce in decode) against one.
        var two = PrefillAndDecode(TestPaths.Hf, 2, options);
        for (int i = 1; i < decoded.Count; i++) SyntheticModelTests.AssertClose(decoded[i], two[i], 0.2f, $"bf16 N=2 step {i}");
    }

    [Theory]
    [InlineData(ComputeDType.F32)]
    [InlineData(ComputeDType.BF16)]
    public void Live_tensor_count_is_flat_over_1000_decode_steps(ComputeDType dtype)
    {
        var counts = InProcessGroup.Run(2, comm =>
        {
            using var m = ShardedLlama.Load(TestPaths.Hf, comm, new ModelLoadOptions { ContextLength = 512, Threads = 1, DType = dtype });
            int token = 1, pos = 0;
            long before = 0;
            for (int step = 0; step < 1000; step++)
            {
                if (pos == 500) { m.ResetSlot(0); pos = 0; }
                var logits = m.Forward(0, [token], pos++);
                if (step == 10) before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                Span<int> next = [logits is null ? 0 : TestPaths.ArgMax(logits)];
                comm.Broadcast(next, 0);
                token = next[0];
            }
            return (before, after: DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        });
        foreach (var (before, after) in counts)
        {
            Assert.True(before > 0, "the statistics must see the model's weights");
            Assert.Equal(before, after);
        }
    }

    [Fact]
    public void A_prompt_longer_than_the_context_is_refused_with_a_clear_error()
    {
        var e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(TestPaths.Hf, comm, new ModelLoadOptions { ContextLength = 16 });
            return m.Forward(0, new int[17], 0);
        }));
        Assert.Contains("context length is 16", e.Message);
        Assert.Contains("17", e.Message);
    }
}

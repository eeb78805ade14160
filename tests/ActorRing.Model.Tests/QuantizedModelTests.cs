using ActorRing.Model.Quantization;
using ActorRing.Model.Tests.Support;
using Xunit.Abstractions;

namespace ActorRing.Model.Tests;

/// <summary>
/// Models quantized at load (<c>--quant</c>): fidelity against the same model in float32 over 128
/// teacher-forced decode positions, world sizes 2 and 4 against 1, and the splits that would cut a block.
/// </summary>
public sealed class QuantizedModelTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "actorring-quant-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>
    /// Wide enough that every linear weight quantizes (hidden 256, 8 heads of 32, FFN 704 = 22 blocks, which
    /// splits on block boundaries over 2 and 4 ranks).
    /// </summary>
    private string Larger() => new SyntheticModel
    {
        ModelType = "llama", Hidden = 256, Intermediate = 704, Layers = 2, Heads = 8, KvHeads = 4, HeadDim = 32, Vocab = 512, MaxPos = 256,
        MatrixScale = 0.35f,
    }.Build(seed: 2024).WriteTo(Path.Combine(_root, "larger"));

    /// <summary>Logits of each decode step over <paramref name="tokens"/>, one token at a time from position 0.</summary>
    private static List<float[]> TeacherForced(string dir, int[] tokens, int worldSize, ModelLoadOptions options)
    {
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, options);
            var steps = new List<float[]?>();
            for (int pos = 0; pos < tokens.Length; pos++) steps.Add(m.Forward(0, [tokens[pos]], pos));
            return steps;
        });
        return perRank[0].Select(s => s!).ToList();
    }

    /// <summary>Mean KL(f32 ‖ quantized) of the next-token distributions, and how often their top-1 tokens agree.</summary>
    private static (double MeanKl, double Top1) Compare(List<float[]> f32, List<float[]> quantized)
    {
        double kl = 0;
        int agree = 0;
        for (int i = 0; i < f32.Count; i++)
        {
            var p = LogSoftmax(f32[i]);
            var q = LogSoftmax(quantized[i]);
            for (int v = 0; v < p.Length; v++) kl += Math.Exp(p[v]) * (p[v] - q[v]);
            if (TestPaths.ArgMax(f32[i]) == TestPaths.ArgMax(quantized[i])) agree++;
        }
        return (kl / f32.Count, agree / (double)f32.Count);
    }

    private static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double log = Math.Log(logits.Sum(l => Math.Exp(l - max))) + max;
        return logits.Select(l => l - log).ToArray();
    }

    private static ModelLoadOptions Options(WeightQuantization quant, bool head = false) =>
        new() { ContextLength = 160, Threads = 1, Quant = quant, QuantizeLmHead = head };

    [Fact]
    public void Fidelity_against_float32_over_128_teacher_forced_positions()
    {
        string larger = Larger();
        var rng = new Random(17);
        var models = new (string Name, string Dir, int[] Tokens)[]
        {
            ("stories260K", TestPaths.Hf, TestPaths.ExpectedGreedyIds()[..128]), // the model's own greedy story
            ("synthetic", larger, Enumerable.Range(0, 128).Select(_ => rng.Next(512)).ToArray()),
        };
        foreach (var (name, dir, tokens) in models)
        {
            var f32 = TeacherForced(dir, tokens, 1, Options(WeightQuantization.None));
            foreach (var (quant, head) in new[] { (WeightQuantization.Q8_0, false), (WeightQuantization.Q4_0, false), (WeightQuantization.Q4_1, false), (WeightQuantization.Q5_1, false), (WeightQuantization.Q8_0, true) })
            {
                var (kl, top1) = Compare(f32, TeacherForced(dir, tokens, 1, Options(quant, head)));
                output.WriteLine($"{name} {quant.Name()}{(head ? " +lm_head" : "")}: mean KL {kl:G3}, top-1 agreement {top1:P1}");
                if (quant == WeightQuantization.Q8_0)
                {
                    Assert.True(top1 >= 0.99, $"{name} q8_0 top-1 agreement {top1:P1} is under 99%");
                    Assert.True(kl < 1e-3, $"{name} q8_0 mean KL {kl}");
                }
                else
                {
                    // 4-bit formats lose more; these bounds catch a broken kernel (which gives KL of order 1), not noise.
                    Assert.True(top1 >= 0.8, $"{name} {quant.Name()} top-1 agreement {top1:P1}");
                    Assert.True(kl < 0.05, $"{name} {quant.Name()} mean KL {kl}");
                }
            }
        }
    }

    [Theory]
    [InlineData(WeightQuantization.Q8_0)]
    [InlineData(WeightQuantization.Q4_0)]
    [InlineData(WeightQuantization.Q4_1)]
    [InlineData(WeightQuantization.Q5_1)]
    public void World_sizes_2_and_4_equal_world_size_1(WeightQuantization quant)
    {
        string dir = Larger();
        int[] prompt = [1, 17, 42, 5, 99, 3];
        int[] decoded = [7, 64, 23, 300];
        var byWorld = new Dictionary<int, List<float[]>>();
        foreach (int n in new[] { 1, 2, 4 })
        {
            var perRank = InProcessGroup.Run(n, comm =>
            {
                using var m = ShardedLlama.Load(dir, comm, Options(quant, head: true) with { Threads = n == 2 ? 2 : 1 });
                var steps = new List<float[]?> { m.Forward(0, prompt, 0) };
                for (int i = 0; i < decoded.Length; i++) steps.Add(m.Forward(0, [decoded[i]], prompt.Length + i));
                return steps;
            });
            byWorld[n] = perRank[0].Select(s => s!).ToList();
        }
        for (int step = 0; step <= decoded.Length; step++)
        {
            SyntheticModelTests.AssertClose(byWorld[1][step], byWorld[2][step], 1e-4f, $"{quant} N=2 vs N=1, step {step}");
            SyntheticModelTests.AssertClose(byWorld[1][step], byWorld[4][step], 1e-4f, $"{quant} N=4 vs N=1, step {step}");
        }
    }

    [Theory]
    [InlineData(SyncPayload.BF16)]
    [InlineData(SyncPayload.Q8_0)]
    public void A_compressed_all_reduce_payload_stays_near_float32(SyncPayload payload)
    {
        string dir = Larger();
        var rng = new Random(5);
        int[] tokens = Enumerable.Range(0, 24).Select(_ => rng.Next(512)).ToArray();
        var f32 = TeacherForced(dir, tokens, 2, Options(WeightQuantization.None));
        foreach (int n in new[] { 2, 4 })
        {
            var compressed = TeacherForced(dir, tokens, n, Options(WeightQuantization.None) with { SyncDType = payload });
            var (kl, top1) = Compare(f32, compressed);
            output.WriteLine($"--sync-dtype {payload.Name()} at N={n}: mean KL {kl:G3}, top-1 agreement {top1:P1}");
            Assert.True(top1 >= 0.95, $"N={n} {payload}: top-1 {top1:P1}");
            Assert.True(kl < 2e-3, $"N={n} {payload}: mean KL {kl}");
            Assert.NotEqual(f32[^1], compressed[^1]); // the payload really was rounded
        }
    }

    [Fact]
    public void Prefill_and_decode_steps_run_the_same_integer_kernels()
    {
        // A prompt in one step (7 activation rows through each panel) and one token per step must give the
        // same last logits: each row is quantized and multiplied the same way whatever the batch.
        string dir = Larger();
        int[] tokens = [1, 17, 42, 5, 99, 3, 250];
        var got = InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, Options(WeightQuantization.Q4_0, head: true) with { Slots = 2 });
            var prefill = m.Forward(0, tokens, 0)!;
            float[]? step = null;
            for (int i = 0; i < tokens.Length; i++) step = m.Forward(1, [tokens[i]], i);
            return (prefill, step!);
        })[0];
        SyntheticModelTests.AssertClose(got.prefill, got.Item2, 1e-4f, "q4_0 prefill vs decode");
    }

    [Fact]
    public void Quantized_weights_stream_fewer_bytes_and_the_head_only_when_asked()
    {
        string dir = Larger();
        long Bytes(ModelLoadOptions o) => InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(dir, comm, o);
            return m.WeightBytesPerToken;
        })[0];
        long f32 = Bytes(Options(WeightQuantization.None)), q8 = Bytes(Options(WeightQuantization.Q8_0));
        long q4 = Bytes(Options(WeightQuantization.Q4_0)), q4Head = Bytes(Options(WeightQuantization.Q4_0, head: true));
        // Per layer: qkv 512×256, o 256×256, gate/up 1408×256, down 256×704; head 512×256; norms 2·256 (+256).
        long linear = 2L * (512 * 256 + 256 * 256 + 1408 * 256 + 256 * 704), head = 512L * 256, norms = 2 * 2 * 256 + 256;
        Assert.Equal(4 * (linear + head + norms), f32);
        Assert.Equal(linear / 32 * 34 + 4 * (head + norms), q8);
        Assert.Equal(linear / 32 * 18 + 4 * (head + norms), q4);
        Assert.Equal((linear + head) / 32 * 18 + 4 * norms, q4Head);
    }

    [Fact]
    public void A_world_size_that_cuts_a_block_is_refused_naming_the_ones_that_work()
    {
        // stories260K: 8 heads of 8. Four ranks hold 16 columns of o_proj each, half a block.
        var e = Assert.Throws<ModelLoadException>(() => InProcessGroup.Run(4, comm => ShardedLlama.Load(TestPaths.Hf, comm, Options(WeightQuantization.Q8_0))));
        Assert.Contains("world size 4 cuts them", e.Message);
        Assert.EndsWith("world sizes that work: 1, 2; or load without --quant", e.Message);
        // Its FFN (172 wide) is not whole blocks at all: down_proj stays float32, and the loader says so.
        var notes = new List<string>();
        InProcessGroup.Run(1, comm =>
        {
            using var m = ShardedLlama.Load(TestPaths.Hf, comm, Options(WeightQuantization.Q8_0) with { Log = notes.Add });
            return 0;
        });
        Assert.Equal(["mlp.down_proj: input width 172 is not a whole number of 32-value blocks, so it stays in f32 (not q8_0)"], notes);
    }
}

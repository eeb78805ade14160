using ActorRing.Model.Sampling;

namespace ActorRing.Model.Tests;

public sealed class SamplerTests
{
    private static readonly float[] Logits = [1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, 1.5f];

    private static float[] RandomLogits(int seed, int n)
    {
        var rng = new DeterministicRng((ulong)seed);
        var l = new float[n];
        for (var i = 0; i < n; i++)
        {
            l[i] = (float)((rng.NextDouble() * 8) - 4);
        }

        return l;
    }

    private static List<int> Draw(SamplingOptions options, float[] logits, int count)
    {
        var sampler = new Sampler(options);
        return Enumerable.Range(0, count).Select(_ => sampler.Sample(logits, [])).ToList();
    }

    [Fact]
    public void Rng_stream_is_fixed_by_the_algorithm()
    {
        // xoshiro256** seeded by SplitMix64(0), values from an independent Python implementation.
        var rng = new DeterministicRng(0);
        Assert.Equal(0x99ec5f36cb75f2b4UL, rng.NextUInt64());
        Assert.Equal(0xbf6e1f784956452aUL, rng.NextUInt64());
        Assert.Equal(0x1a5f849d4933e6e0UL, rng.NextUInt64());
    }

    [Fact]
    public void Fixed_seed_gives_golden_tokens()
    {
        // Golden ids from an independent Python implementation of the same algorithm (softmax in double over the
        // score-sorted candidates, inverse CDF with a 53-bit uniform).
        Assert.Equal(
            [1, 4, 2, 4, 5, 4, 4, 4, 4, 0, 1, 5, 7, 0, 4, 7, 5, 7, 5, 4, 4, 4, 4, 4],
            Draw(new SamplingOptions(Temperature: 0.9f, Seed: 12345), Logits, 24));
        Assert.Equal(
            [5, 4, 1, 7, 1, 1, 1, 1, 1, 4, 7, 4, 1, 1, 5, 1, 4, 4, 1, 4, 4, 4, 5, 4],
            Draw(new SamplingOptions(Temperature: 1.2f, TopK: 5, TopP: 0.9f, Seed: 2026), Logits, 24));
    }

    [Fact]
    public void Same_seed_same_tokens_other_seed_other_tokens()
    {
        var flat = new float[100];
        var a = Draw(new SamplingOptions(Temperature: 1, Seed: 7), flat, 50);
        Assert.Equal(a, Draw(new SamplingOptions(Temperature: 1, Seed: 7), flat, 50));
        Assert.NotEqual(a, Draw(new SamplingOptions(Temperature: 1, Seed: 8), flat, 50));
    }

    [Fact]
    public void Greedy_is_argmax_with_lowest_index_on_ties()
    {
        var sampler = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(4, sampler.Sample(Logits, []));
        Assert.Equal(1, sampler.Sample([1f, 3f, 3f, -2f], []));
        Assert.Equal(0, sampler.Sample([float.NegativeInfinity, float.NegativeInfinity], []));
    }

    [Fact]
    public void Greedy_fast_pick_equals_the_scalar_argmax_across_vector_lanes_and_the_tail()
    {
        // The greedy pick without penalties scans in vectors; it must agree with ArgMax wherever the maximum sits
        // (first lane, a later vector, the scalar tail), with ties across vectors, and with -0 beside +0.
        var sampler = new Sampler(SamplingOptions.Greedy);
        foreach (int n in new[] { 1, 7, 31, 32000, 32003 })
        {
            for (int seed = 0; seed < 4; seed++)
            {
                var logits = RandomLogits(seed * 100 + n, n);
                Assert.Equal(Sampler.ArgMax(logits), sampler.Sample(logits, []));
            }
            var tie = new float[n];
            Array.Fill(tie, -1f);
            tie[n - 1] = 5f;
            Assert.Equal(n - 1, sampler.Sample(tie, []));
            if (n > 1) tie[n / 2] = 5f;
            Assert.Equal(n > 1 ? n / 2 : 0, sampler.Sample(tie, []));
        }
        var zeros = new float[40];
        Array.Fill(zeros, -3f);
        zeros[21] = -0f;
        zeros[22] = 0f;
        Assert.Equal(21, sampler.Sample(zeros, []));
        var minusInfinity = new float[50];
        Array.Fill(minusInfinity, float.NegativeInfinity);
        Assert.Equal(0, sampler.Sample(minusInfinity, []));
        var nan = RandomLogits(3, 100);
        nan[77] = float.NaN;
        Assert.Contains("logits[77] is NaN", Assert.Throws<ArgumentException>(() => sampler.Sample(nan, [])).Message);
    }

    [Fact]
    public void Top_k_1_and_tiny_top_p_equal_greedy()
    {
        for (var seed = 0; seed < 40; seed++)
        {
            var logits = RandomLogits(seed, 300);

            // Force a tie at the maximum now and then: greedy and the filters must all pick the lower index.
            if (seed % 4 == 0)
            {
                logits[250] = logits.Max();
            }

            var greedy = Sampler.ArgMax(logits);
            Assert.Equal(greedy, new Sampler(new SamplingOptions(Temperature: 1.5f, TopK: 1, Seed: (ulong)seed)).Sample(logits, []));
            Assert.Equal(greedy, new Sampler(new SamplingOptions(Temperature: 1.5f, TopP: 1e-6f, Seed: (ulong)seed)).Sample(logits, []));
            Assert.Equal(greedy, new Sampler(new SamplingOptions(Temperature: 0, TopK: 40, TopP: 0.5f, Seed: (ulong)seed)).Sample(logits, []));
        }
    }

    [Fact]
    public void Repetition_penalty_changes_the_argmax()
    {
        float[] positive = [2.0f, 1.9f, -1f];
        Assert.Equal(0, new Sampler(SamplingOptions.Greedy).Sample(positive, [0]));

        // 2.0 / 1.5 = 1.33 < 1.9: the repeated token loses.
        Assert.Equal(1, new Sampler(new SamplingOptions(RepetitionPenalty: 1.5f)).Sample(positive, [0]));

        // Negative logits are multiplied: -1 * 1.5 = -1.5 < -1.2.
        Assert.Equal(1, new Sampler(new SamplingOptions(RepetitionPenalty: 1.5f)).Sample([-1f, -1.2f], [0]));

        // A token seen three times is penalised once (3 / 1.4 = 2.14 > 2), as in Hugging Face.
        Assert.Equal(0, new Sampler(new SamplingOptions(RepetitionPenalty: 1.4f)).Sample([3f, 2f], [0, 0, 0]));

        // A penalty below 1 rewards repetition.
        Assert.Equal(1, new Sampler(new SamplingOptions(RepetitionPenalty: 0.5f)).Sample([2f, 1.5f], [1]));

        // The caller's logits are not modified.
        Assert.Equal([2.0f, 1.9f, -1f], positive);
    }

    public static TheoryData<float, int, float, double[]> Distributions => new()
    {
        // p = [0.5, 0.25, 0.125, 0.125] at T = 1.
        { 1f, 0, 1f, [0.5, 0.25, 0.125, 0.125] },

        // T = 2 takes the square root of p before renormalising.
        { 2f, 0, 1f, Normalise([Math.Sqrt(0.5), Math.Sqrt(0.25), Math.Sqrt(0.125), Math.Sqrt(0.125)]) },

        // T = 0.5 squares p.
        { 0.5f, 0, 1f, Normalise([0.25, 0.0625, 0.015625, 0.015625]) },

        // top-k 2 keeps the two best and renormalises.
        { 1f, 2, 1f, [2.0 / 3, 1.0 / 3, 0, 0] },

        // top-p 0.7: 0.5 is not enough, 0.5 + 0.25 reaches it.
        { 1f, 0, 0.7f, [2.0 / 3, 1.0 / 3, 0, 0] },

        // top-p 0.8: the third token is needed; the tie with the fourth goes to the lower index.
        { 1f, 0, 0.8f, [0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875, 0] },
    };

    [Theory]
    [MemberData(nameof(Distributions))]
    public void Sampled_frequencies_match_the_distribution(float temperature, int topK, float topP, double[] expected)
    {
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.25f), MathF.Log(0.125f), MathF.Log(0.125f)];
        const int n = 20_000;
        var counts = new int[4];
        var sampler = new Sampler(new SamplingOptions(temperature, topK, topP, Seed: 99));
        for (var i = 0; i < n; i++)
        {
            counts[sampler.Sample(logits, [])]++;
        }

        for (var t = 0; t < 4; t++)
        {
            // 0.015 is over 4 standard deviations at n = 20000; excluded tokens must never appear.
            var freq = (double)counts[t] / n;
            if (expected[t] == 0)
            {
                Assert.Equal(0, counts[t]);
            }
            else
            {
                Assert.InRange(freq, expected[t] - 0.015, expected[t] + 0.015);
            }
        }
    }

    [Fact]
    public void Filters_agree_with_a_plain_full_sort_reference()
    {
        // The sampler prunes with a heap (top-k) and a probability cutoff (top-p); the reference sorts everything.
        (float T, int K, float P)[] configs = [(0.7f, 0, 0.9f), (1.3f, 50, 1f), (1f, 5, 0.5f), (1f, 0, 0.3f), (0.8f, 0, 1f)];
        foreach (var (t, k, p) in configs)
        {
            for (var seed = 0; seed < 30; seed++)
            {
                var logits = RandomLogits(1000 + seed, 1000);
                var sampler = new Sampler(new SamplingOptions(t, k, p, Seed: (ulong)seed));
                var rng = new DeterministicRng((ulong)seed);
                for (var step = 0; step < 5; step++)
                {
                    Assert.Equal(ReferenceSample(logits, t, k, p, rng), sampler.Sample(logits, []));
                }
            }
        }
    }

    private static int ReferenceSample(float[] logits, float t, int k, float p, DeterministicRng rng)
    {
        var max = logits.Max();
        var w = logits.Select(l => Math.Exp((l - (double)max) / t)).ToArray();
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).ToList();
        if (k > 0)
        {
            order = order.Take(k).ToList();
        }

        if (p < 1)
        {
            var total = order.Sum(i => w[i]);
            var keep = 0;
            double cum = 0;
            while (keep < order.Count && cum < p * total)
            {
                cum += w[order[keep++]];
            }

            order = order.Take(keep).ToList();
        }

        var r = rng.NextDouble() * order.Sum(i => w[i]);
        double acc = 0;
        foreach (var i in order)
        {
            acc += w[i];
            if (r < acc)
            {
                return i;
            }
        }

        return order[^1];
    }

    [Fact]
    public void Huge_logits_do_not_overflow()
    {
        // Without subtracting the maximum, exp(1e4) is infinity and every probability NaN.
        var sampler = new Sampler(new SamplingOptions(Temperature: 1, Seed: 1));
        Assert.Equal(1, sampler.Sample([1e4f, 1e4f + 100f, -1e4f], []));
    }

    [Fact]
    public void Nan_logits_are_rejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions(Temperature: 1)).Sample([0f, float.NaN], []));
        Assert.Contains("logits[1] is NaN", ex.Message);
    }

    [Fact]
    public void Unseeded_sampler_reports_the_seed_it_drew()
    {
        var a = new Sampler(new SamplingOptions(Temperature: 1));
        var replay = new Sampler(new SamplingOptions(Temperature: 1, Seed: a.Seed));
        var logits = RandomLogits(5, 64);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(replay.Sample(logits, []), a.Sample(logits, []));
        }
    }

    [Theory]
    [InlineData(-1f, 0, 1f, 1f, 256, "temperature must be >= 0, got -1")]
    [InlineData(float.NaN, 0, 1f, 1f, 256, "temperature must be >= 0, got NaN")]
    [InlineData(float.PositiveInfinity, 0, 1f, 1f, 256, "temperature must be finite, got Infinity")]
    [InlineData(1f, -3, 1f, 1f, 256, "top_k must be >= 0 (0 disables it), got -3")]
    [InlineData(1f, 0, 0f, 1f, 256, "top_p must be in (0, 1] (1 disables it), got 0")]
    [InlineData(1f, 0, 1.5f, 1f, 256, "top_p must be in (0, 1] (1 disables it), got 1.5")]
    [InlineData(1f, 0, 1f, 0f, 256, "repetition_penalty must be > 0 and finite (1 disables it), got 0")]
    [InlineData(1f, 0, 1f, 1f, 0, "max_tokens must be >= 1, got 0")]
    public void Invalid_options_give_clear_messages(float temperature, int topK, float topP, float penalty, int maxTokens, string message)
    {
        var options = new SamplingOptions(temperature, topK, topP, penalty, MaxTokens: maxTokens);
        Assert.Equal(message, Assert.Throws<ArgumentException>(() => options.Validate()).Message);
        Assert.Equal(message, Assert.Throws<ArgumentException>(() => new Sampler(options)).Message);
    }

    [Fact]
    public void All_problems_are_reported_together()
    {
        var options = new SamplingOptions(Temperature: -1, TopP: 2, StopStrings: ["ok", ""]);
        Assert.Equal(
            ["temperature must be >= 0, got -1", "top_p must be in (0, 1] (1 disables it), got 2", "stop strings must be non-empty, but stop[1] is empty"],
            options.GetErrors());
        Assert.Empty(new SamplingOptions(Temperature: 0.7f, TopK: 40, TopP: 0.95f, RepetitionPenalty: 1.1f, StopStrings: ["\n\n"]).GetErrors());
    }

    private static double[] Normalise(double[] w) => w.Select(x => x / w.Sum()).ToArray();
}

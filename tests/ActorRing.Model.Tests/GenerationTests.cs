using ActorRing.Model.Sampling;
using ActorRing.Model.Tests.Support;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

/// <summary>Generation through step plans over the ring, with the real tokenizer and sampler, across world sizes.</summary>
public class GenerationTests
{
    private static (GenerationResult Result, string Text)[] Generate(int worldSize, IReadOnlyList<int> prompt, SamplingOptions options, string? dir = null)
    {
        string model = dir ?? TestPaths.Hf;
        var results = InProcessGroup.Run(worldSize, comm =>
        {
            using var m = ShardedLlama.Load(model, comm, new ModelLoadOptions { ContextLength = 512, Threads = 1 });
            return LockstepGeneration.Run(m, comm, prompt, options, comm.Rank == 0 ? TokenizerLoader.Load(model) : null);
        });
        return [(results[0], results[0].Text)];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Greedy_generation_from_BOS_reproduces_the_published_text(int worldSize)
    {
        var runs = Generate(worldSize, [1], SamplingOptions.Greedy with { MaxTokens = 256 });
        Assert.All(runs, r => Assert.Equal(TestPaths.ExpectedGreedyIds(), r.Result.GeneratedIds));
        Assert.All(runs, r => Assert.Equal("length", r.Result.FinishReason));
        string expected = File.ReadAllText(Path.Combine(TestPaths.Bundled, "expected", "greedy_bos_256.txt"));
        Assert.Equal(expected.TrimEnd(), runs[0].Text.TrimEnd());
    }

    [Fact]
    public void A_fixed_seed_gives_the_same_tokens_at_world_sizes_1_2_4()
    {
        var options = new SamplingOptions(Temperature: 0.9f, TopK: 40, TopP: 0.95f, RepetitionPenalty: 1.1f, Seed: 1234, MaxTokens: 48);
        int[] prompt = [1, 403, 407, 261, 378];
        var one = Generate(1, prompt, options)[0].Result.GeneratedIds;
        Assert.Equal(one, Generate(1, prompt, options)[0].Result.GeneratedIds);
        Assert.Equal(one, Generate(2, prompt, options)[0].Result.GeneratedIds);
        Assert.Equal(one, Generate(4, prompt, options)[0].Result.GeneratedIds);
        // Sampling really samples: another seed takes another path.
        Assert.NotEqual(one, Generate(1, prompt, options with { Seed = 99 })[0].Result.GeneratedIds);
    }

    [Fact]
    public void Top_k_1_equals_greedy_and_stop_strings_end_generation()
    {
        int[] prompt = [1, 403, 407, 261, 378];
        var greedy = Generate(2, prompt, SamplingOptions.Greedy with { MaxTokens = 40 })[0];
        var topK1 = Generate(2, prompt, new SamplingOptions(Temperature: 1.5f, TopK: 1, Seed: 7, MaxTokens: 40))[0];
        Assert.Equal(greedy.Result.GeneratedIds, topK1.Result.GeneratedIds);

        // Greedy continues ", there was a little girl named Lily." — stop at "Lily" (excluded from the text).
        var stopped = Generate(2, prompt, SamplingOptions.Greedy with { MaxTokens = 40, StopStrings = ["Lily"] })[0];
        Assert.Equal("stop", stopped.Result.FinishReason);
        Assert.True(stopped.Result.GeneratedIds.Count < 40);
        Assert.DoesNotContain("Lily", stopped.Text);
        Assert.StartsWith(stopped.Text, greedy.Text);
    }
}

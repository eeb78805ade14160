using ActorRing.Model.Sampling;

namespace ActorRing.Model.Tests;

/// <summary>The sampling fields the OpenAI-compatible API adds: min_p, presence and frequency penalties, logprobs.</summary>
public sealed class SamplerOpenAiFieldsTests
{
    private static readonly float[] Logits = [1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, 1.5f];

    [Fact]
    public void Min_p_keeps_only_tokens_at_least_that_fraction_as_likely_as_the_top_one()
    {
        // Relative to token 4 (logit 3): token 5 has e^-0.5 = 0.61, token 1 e^-1 = 0.37, the rest less.
        var sampler = new Sampler(new SamplingOptions(Temperature: 1, MinP: 0.5f, Seed: 3));
        var drawn = Enumerable.Range(0, 300).Select(_ => sampler.Sample(Logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 4, 5 }, drawn);

        var wider = new Sampler(new SamplingOptions(Temperature: 1, MinP: 0.3f, Seed: 3));
        Assert.Equal(new HashSet<int> { 1, 4, 5 }, Enumerable.Range(0, 300).Select(_ => wider.Sample(Logits, [])).ToHashSet());
    }

    [Fact]
    public void Frequency_and_presence_penalties_count_generated_tokens_only()
    {
        float[] logits = [0f, 0.1f];
        var frequency = new Sampler(new SamplingOptions(FrequencyPenalty: 0.3f));
        Assert.Equal(1, frequency.Sample(logits, [1, 1], promptLength: 2).TokenId); // both in the prompt: no penalty
        Assert.Equal(1, frequency.Sample(logits, [1, 1, 0], promptLength: 2).TokenId); // token 0 penalised, 1 not
        Assert.Equal(0, frequency.Sample(logits, [1, 1], promptLength: 1).TokenId); // 0.1 - 0.3 < 0

        var presence = new Sampler(new SamplingOptions(PresencePenalty: 0.2f));
        Assert.Equal(0, presence.Sample(logits, [1], promptLength: 0).TokenId); // 0.1 - 0.2 < 0
        // Presence counts once however often: 3 x 0.05 would cross 0.1, but presence applies 0.05 once.
        var once = new Sampler(new SamplingOptions(PresencePenalty: 0.05f));
        Assert.Equal(1, once.Sample(logits, [1, 1, 1], promptLength: 0).TokenId);
    }

    [Fact]
    public void Logprobs_are_the_raw_log_softmax_with_the_most_likely_alternatives_first()
    {
        double logSum = Math.Log(Logits.Sum(l => Math.Exp(l)));
        var picked = new Sampler(new SamplingOptions(Logprobs: 3, RepetitionPenalty: 1.5f)).Sample(Logits, [4], promptLength: 1);

        // The penalty moves the pick from 4 to 5, but logprobs describe the model's own distribution.
        Assert.Equal(5, picked.TokenId);
        Assert.Equal(2.5 - logSum, picked.Logprob!.Value, 5);
        Assert.Equal([4, 5, 1], picked.Top!.Select(t => t.TokenId));
        Assert.Equal(3 - logSum, picked.Top![0].Logprob, 5);

        var none = new Sampler(new SamplingOptions()).Sample(Logits, [], 0);
        Assert.Null(none.Logprob);
        Assert.Null(none.Top);
        var only = new Sampler(new SamplingOptions(Logprobs: 0)).Sample(Logits, [], 0);
        Assert.Empty(only.Top!);
        Assert.Equal(3 - logSum, only.Logprob!.Value, 5);
    }

    [Fact]
    public void Logit_bias_is_added_to_the_logits_before_the_pick_and_leaves_logprobs_raw()
    {
        // Greedy picks token 4 (logit 3); -100 bans it, so 5 (2.5) wins; +1 on token 1 (2 -> 3) then beats 5; +100 on
        // token 3 (-1 -> 99) forces it, even sampled and under a repetition penalty on it.
        Assert.Equal(4, new Sampler(new SamplingOptions()).Sample(Logits, []));
        Assert.Equal(5, new Sampler(new SamplingOptions(LogitBias: new Dictionary<int, float> { [4] = -100 })).Sample(Logits, []));
        Assert.Equal(1, new Sampler(new SamplingOptions(LogitBias: new Dictionary<int, float> { [4] = -100, [1] = 1f })).Sample(Logits, []));
        var forced = new Sampler(new SamplingOptions(Temperature: 1, Seed: 5, RepetitionPenalty: 1.3f, Logprobs: 1,
            LogitBias: new Dictionary<int, float> { [3] = 100 }));
        for (int i = 0; i < 20; i++)
        {
            var picked = forced.Sample(Logits, [3, 3], promptLength: 0);
            Assert.Equal(3, picked.TokenId);
            // Logprobs stay the model's own distribution: token 3's raw log-softmax, the unbiased top token first.
            Assert.Equal(-1 - Math.Log(Logits.Sum(l => Math.Exp(l))), picked.Logprob!.Value, 5);
            Assert.Equal(4, picked.Top![0].TokenId);
        }
    }

    [Fact]
    public void Min_tokens_holds_back_every_stop_id_until_the_completion_is_that_long()
    {
        // Token 4 is the greedy pick and a stop id; with min_tokens 2 it is masked for the first two generated tokens.
        var sampler = new Sampler(new SamplingOptions(StopTokenIds: [4, 6], MinTokens: 2));
        Assert.Equal(5, sampler.Sample(Logits, [0], promptLength: 1).TokenId);
        Assert.Equal(5, sampler.Sample(Logits, [0, 5], promptLength: 1).TokenId);
        Assert.Equal(4, sampler.Sample(Logits, [0, 5, 5], promptLength: 1).TokenId);
        // Sampled: never a stop id before the minimum, whatever the draw.
        var sampled = new Sampler(new SamplingOptions(Temperature: 2, Seed: 9, StopTokenIds: [4, 5, 1], MinTokens: 1));
        Assert.DoesNotContain(Enumerable.Range(0, 200).Select(_ => sampled.Sample(Logits, [7], promptLength: 1).TokenId), t => t is 4 or 5 or 1);
        Assert.Equal(["min_tokens must be in [0, max_tokens = 3], got 4"], new SamplingOptions(MaxTokens: 3, MinTokens: 4).GetErrors());
    }

    [Fact]
    public void Logit_bias_out_of_range_or_beyond_the_vocabulary_is_refused_by_name()
    {
        var options = new SamplingOptions(LogitBias: new Dictionary<int, float> { [2] = 101, [-1] = 0 });
        Assert.Equal(["logit_bias values must be in [-100, 100], but token 2 has 101", "logit_bias keys must be token ids >= 0, got -1"],
            options.GetErrors());
        var beyond = new Sampler(new SamplingOptions(LogitBias: new Dictionary<int, float> { [8] = 1 }));
        Assert.Equal("logit_bias names token 8, but the model's vocabulary is [0, 8)", Assert.Throws<ArgumentException>(() => beyond.Sample(Logits, [])).Message);
    }

    [Theory]
    [InlineData(1.5f, 0f, 0f, 0, "min_p must be in [0, 1] (0 disables it), got 1.5")]
    [InlineData(0f, 2.5f, 0f, 0, "presence_penalty must be in [-2, 2] (0 disables it), got 2.5")]
    [InlineData(0f, 0f, -3f, 0, "frequency_penalty must be in [-2, 2] (0 disables it), got -3")]
    [InlineData(0f, 0f, 0f, 21, "top_logprobs must be in [0, 20], got 21")]
    public void Out_of_range_fields_are_named(float minP, float presence, float frequency, int logprobs, string error)
    {
        var options = new SamplingOptions(MinP: minP, PresencePenalty: presence, FrequencyPenalty: frequency, Logprobs: logprobs);
        Assert.Equal([error], options.GetErrors());
    }
}

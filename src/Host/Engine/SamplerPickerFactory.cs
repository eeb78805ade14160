using ActorRing.Actors;
using ActorRing.Actors.Engine;
using ActorRing.Model.Sampling;

namespace ActorRing.Host.Engine;

/// <summary>The model layer's <see cref="Sampler"/>, one per request (its seeded RNG belongs to that request).</summary>
public sealed class SamplerPickerFactory : ITokenPickerFactory
{
    public static SamplingOptions ToOptions(SamplingSpec s) => new(
        Temperature: (float)s.Temperature,
        TopK: s.TopK,
        TopP: (float)s.TopP,
        RepetitionPenalty: (float)s.RepetitionPenalty,
        Seed: s.Seed,
        MaxTokens: s.MaxTokens,
        MinP: (float)s.MinP,
        PresencePenalty: (float)s.PresencePenalty,
        FrequencyPenalty: (float)s.FrequencyPenalty,
        Logprobs: s.Logprobs,
        LogitBias: s.LogitBias,
        // The spec's stop ids hold the EOS ids too (unless the request ignores EOS): min_tokens holds them all back.
        StopTokenIds: s.StopTokenIds,
        MinTokens: s.MinTokens);

    /// <exception cref="ArgumentException">The options name a field and value that cannot be used.</exception>
    public ITokenPicker Create(SamplingSpec sampling) => new Picker(new Sampler(ToOptions(sampling).Validate()));

    private sealed class Picker(Sampler sampler) : ITokenPicker
    {
        private int _promptLength = -1;

        public int Pick(float[] logits, IReadOnlyList<int> history) => Sample(logits, history).TokenId;

        public SampledToken Sample(float[] logits, IReadOnlyList<int> history)
        {
            if (_promptLength < 0) _promptLength = history.Count;
            return sampler.Sample(logits, history, _promptLength);
        }
    }
}

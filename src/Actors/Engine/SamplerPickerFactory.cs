using ActorRing.Model.Sampling;

namespace ActorRing.Actors.Engine;

/// <summary>The model layer's <see cref="Sampler"/>, one per request (its seeded RNG belongs to that request).</summary>
public sealed class SamplerPickerFactory : ITokenPickerFactory
{
    public static SamplingOptions ToOptions(SamplingSpec s) => new(
        Temperature: (float)s.Temperature,
        TopK: s.TopK,
        TopP: (float)s.TopP,
        RepetitionPenalty: (float)s.RepetitionPenalty,
        Seed: s.Seed,
        MaxTokens: s.MaxTokens);

    /// <exception cref="ArgumentException">The options name a field and value that cannot be used.</exception>
    public ITokenPicker Create(SamplingSpec sampling) => new Picker(new Sampler(ToOptions(sampling).Validate()));

    private sealed class Picker(Sampler sampler) : ITokenPicker
    {
        public int Pick(float[] logits, IReadOnlyList<int> history) => sampler.Sample(logits, history);
    }
}

namespace ActorRing.Actors.Engine;

/// <summary>Chooses the next token from rank 0's logits. One instance per request, so a seeded sampler's RNG
/// state belongs to that request alone and results do not depend on world size or interleaving.</summary>
public interface ITokenPicker
{
    int Pick(float[] logits, IReadOnlyList<int> history);

    /// <summary>The pick with its log-probabilities when the request asked for them. The first call's history is
    /// the prompt, so a picker can tell the prompt from generated tokens (OpenAI's penalties count the latter).</summary>
    Model.Sampling.SampledToken Sample(float[] logits, IReadOnlyList<int> history) => new(Pick(logits, history));
}

/// <summary>Creates the <see cref="ITokenPicker"/> for a request's <see cref="SamplingSpec"/>.</summary>
public interface ITokenPickerFactory
{
    ITokenPicker Create(SamplingSpec sampling);
}

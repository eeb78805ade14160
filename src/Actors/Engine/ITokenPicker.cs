namespace ActorRing.Actors.Engine;

/// <summary>Chooses the next token from rank 0's logits. One instance per request, so a seeded sampler's RNG
/// state belongs to that request alone and results do not depend on world size or interleaving.</summary>
public interface ITokenPicker
{
    int Pick(float[] logits, IReadOnlyList<int> history);
}

/// <summary>Creates the <see cref="ITokenPicker"/> for a request's <see cref="SamplingSpec"/>.</summary>
public interface ITokenPickerFactory
{
    ITokenPicker Create(SamplingSpec sampling);
}

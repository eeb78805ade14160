namespace ActorRing.Model.Sampling;

/// <summary>A token and its natural-log probability under the model's distribution.</summary>
public readonly record struct TokenProbability(int TokenId, float Logprob);

/// <summary>
/// What the sampler picked. <see cref="Logprob"/> and <see cref="Top"/> are filled only when the options ask for
/// log-probabilities; they are of the model's own distribution (log-softmax of the raw logits, before penalties,
/// temperature and filters), as vLLM reports them by default, so they do not depend on the sampling settings.
/// </summary>
public readonly record struct SampledToken(int TokenId, float? Logprob = null, TokenProbability[]? Top = null);

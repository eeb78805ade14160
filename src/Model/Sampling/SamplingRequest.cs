namespace ActorRing.Model.Sampling;

/// <summary>
/// What a request (an HTTP body, a command line) says about sampling: null where it says nothing, so that
/// <see cref="GenerationDefaults.Resolve"/> can tell a default from an explicit value equal to it.
/// IgnoreEos (vLLM's ignore_eos) keeps generating past the model's EOS ids; StopTokenIds still stop.
/// </summary>
public sealed record SamplingRequest(
    float? Temperature = null,
    int? TopK = null,
    float? TopP = null,
    float? RepetitionPenalty = null,
    ulong? Seed = null,
    int? MaxTokens = null,
    IReadOnlyList<string>? StopStrings = null,
    IReadOnlyList<int>? StopTokenIds = null,
    bool IgnoreEos = false);

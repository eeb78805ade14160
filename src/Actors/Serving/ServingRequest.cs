using ActorRing.Actors.Engine;

namespace ActorRing.Actors.Serving;

/// <summary>Where a request's results go. Called on rank 0's compute thread: implementations only hand the
/// event on (an actor Tell, a channel write) and never block.</summary>
public interface IServingClient
{
    void OnToken(TokenGenerated token);
    void OnCompleted(GenerationCompleted completed);
    void OnFailed(GenerationFailed failed);
}

/// <summary>Extra stop rule of one request, checked after each sampled token (stop strings, which need the
/// tokenizer: see <see cref="Model.Sampling.StopConditions"/>). True ends the request with finish reason "stop".</summary>
public interface IStopRule
{
    bool Stops(int token);
}

/// <summary>Makes a request's <see cref="IStopRule"/> for its stop strings (the composition root binds it to the
/// model's tokenizer). No stop string ends a completion shorter than <c>minTokens</c> (vLLM's min_tokens).</summary>
public interface IStopRuleFactory
{
    IStopRule Create(int[] promptTokens, IReadOnlyList<string> stopStrings, int minTokens);
}

/// <summary>A request as the scheduler takes it: prompt ids, sampling limits, its own token picker (and so its own
/// seeded RNG), and where its events go.</summary>
public sealed record ServingRequest(string RequestId, int[] PromptTokens, SamplingSpec Sampling, ITokenPicker Picker,
    IServingClient Client, IStopRule? StopRule = null);

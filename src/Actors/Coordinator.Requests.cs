using ActorRing.Actors.Engine;
using ActorRing.Actors.Serving;
using Akka.Actor;

namespace ActorRing.Actors;

/// <summary>
/// The Coordinator's request side: checks a request, gives it its own token picker (its own seeded RNG), and
/// queues it for the step loop on rank 0's compute thread, which streams its results straight to the caller.
/// </summary>
public sealed partial class Coordinator
{
    private readonly ServingPort _port;
    private readonly IStopRuleFactory? _stopRules;

    private void Submit(GenerateRequest request)
    {
        string? invalid = request switch
        {
            { PromptTokens.Length: 0 } => "the prompt is empty: give at least one token",
            { StartPosition: not 0 } => $"start position {request.StartPosition} is not supported: requests run concurrently and share no slot, so send the whole conversation with start position 0",
            { Sampling.MaxTokens: < 1 } => $"max_tokens must be at least 1, got {request.Sampling.MaxTokens}",
            { StopStrings.Length: > 0 } when _stopRules is null => "stop strings need the model's tokenizer, and this server has none (a --preset model); drop the stop strings",
            _ => null,
        };
        if (invalid is not null)
        {
            Sender.Tell(new GenerationFailed(request.RequestId, invalid));
            return;
        }
        ITokenPicker picker;
        try
        {
            picker = _pickers.Create(request.Sampling);
        }
        catch (ArgumentException e)
        {
            Sender.Tell(new GenerationFailed(request.RequestId, $"invalid sampling options: {e.Message}"));
            return;
        }
        var stopRule = request.StopStrings is { Length: > 0 } stops ? _stopRules!.Create(request.PromptTokens, stops) : null;
        _port.Submit(new ServingRequest(request.RequestId, request.PromptTokens, request.Sampling, picker, new ActorClient(Sender), stopRule));
    }

    private void Cancel(CancelGeneration cancel) => _port.Cancel(cancel.RequestId);

    /// <summary>A caller's actor as the step loop's client: each event is one Tell (thread-safe, never blocks).</summary>
    private sealed class ActorClient(IActorRef client) : IServingClient
    {
        public void OnToken(TokenGenerated token) => client.Tell(token, ActorRefs.NoSender);
        public void OnCompleted(GenerationCompleted completed) => client.Tell(completed, ActorRefs.NoSender);
        public void OnFailed(GenerationFailed failed) => client.Tell(failed, ActorRefs.NoSender);
    }
}

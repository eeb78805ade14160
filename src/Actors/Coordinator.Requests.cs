using ActorRing.Actors.Engine;
using ActorRing.Actors.Serving;
using Akka.Actor;
using Akka.Event;

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
        var stopRule = request.StopStrings is { Length: > 0 } stops ? _stopRules!.Create(request.PromptTokens, stops, request.Sampling.MinTokens) : null;
        _port.Submit(new ServingRequest(request.RequestId, request.PromptTokens, request.Sampling, picker, new ActorClient(Sender), stopRule));
    }

    private void Cancel(CancelGeneration cancel) => _port.Cancel(cancel.RequestId);

    private bool _warmedUp;

    /// <summary>
    /// Once per process, when the cluster first becomes ready: two short internal requests (one greedy, one
    /// sampled with every filter, the same prompt) that the step loop runs to the end before it serves (see
    /// <see cref="ServingPort.WarmUpWith"/>). With tiered compilation off (the host's setting), each method on the
    /// loop's path (planning, the batched forward on every rank, the samplers, block registration, finishing, the
    /// Tell of each kind of event to a client actor) is compiled on its first call, 30-40 ms in all on the bundled
    /// model, which the first request's first steps paid before. The cost is one prefill and one decode step; the
    /// results go to a child actor that drops them.
    /// </summary>
    private void WarmUp()
    {
        if (_warmedUp || !_settings.WarmUp) return;
        _warmedUp = true;
        // Token 0 exists in every vocabulary; two blocks of the largest block size in use, so full blocks register.
        var prompt = new int[32];
        SamplingSpec[] specs =
        [
            new(MaxTokens: 2),
            new(Temperature: 0.8, TopK: 40, TopP: 0.95, Seed: 1, RepetitionPenalty: 1.1, MaxTokens: 2, MinP: 0.01,
                PresencePenalty: 0.1, FrequencyPenalty: 0.1, Logprobs: 2),
        ];
        var client = new ActorClient(Context.ActorOf(Akka.Actor.Props.Create(() => new WarmUpReceiver(specs.Length)), "warm-up"));
        _port.WarmUpWith([.. specs.Select((spec, i) => new ServingRequest($"warm-up-{i}", prompt, spec, _pickers.Create(spec), client))]);
    }

    /// <summary>Drops the warm-up's tokens, logs when its requests are done, and stops.</summary>
    private sealed class WarmUpReceiver : ReceiveActor
    {
        public WarmUpReceiver(int requests)
        {
            var log = Context.GetLogger();
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            void Ended()
            {
                if (--requests > 0) return;
                log.Info("step loop warmed up in {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                Context.Stop(Self);
            }
            Receive<TokenGenerated>(_ => { });
            Receive<GenerationCompleted>(_ => Ended());
            Receive<GenerationFailed>(f =>
            {
                log.Warning("the step loop's warm-up request failed ({0}); the first client request pays the loop's first-call costs instead", f.Reason);
                Ended();
            });
        }
    }

    /// <summary>A caller's actor as the step loop's client: each event is one Tell (thread-safe, never blocks).</summary>
    private sealed class ActorClient(IActorRef client) : IServingClient
    {
        public void OnToken(TokenGenerated token) => client.Tell(token, ActorRefs.NoSender);
        public void OnCompleted(GenerationCompleted completed) => client.Tell(completed, ActorRefs.NoSender);
        public void OnFailed(GenerationFailed failed) => client.Tell(failed, ActorRefs.NoSender);
    }
}

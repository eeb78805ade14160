using System.Diagnostics;
using System.Threading.Channels;
using ActorRing.Actors;
using ActorRing.Actors.Client;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using ActorRing.Templating;
using Microsoft.Extensions.Logging;

namespace ActorRing.Host.Generation;

/// <summary>
/// The one place for request logic on rank 0, shared by the HTTP API and the CLI front ends: the chat template,
/// tokenizing, the fair queue in front of the coordinator, incremental detokenizing (never a broken UTF-8
/// character), stop strings (text that may start one is held back; a completed one is cut and ends the
/// request) and typed events. Entry points turn these events into their own output format and nothing else.
/// </summary>
public sealed class GenerationService
{
    private static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(5);

    private readonly Lazy<Task<CoordinatorClient>> _client;
    private readonly TimeSpan _idleTimeout;
    private readonly ILogger _log;
    private readonly GenerationMetrics? _metrics;
    private volatile string? _lastFailure;

    /// <param name="connect">Resolves the coordinator on first use (it exists only once the actor system runs).</param>
    /// <param name="tokenizer">Null for a model without one (a random --preset): prompts are ids, no text comes out.</param>
    /// <param name="defaults">The model's generation_config.json defaults, for what a request leaves out.</param>
    /// <param name="concurrentRequests">Requests handed to the coordinator at once: its batch size. More would only
    /// wait in the scheduler's queue, where a client that goes away is harder to take out of line than here.</param>
    public GenerationService(Func<Task<CoordinatorClient>> connect, ITextTokenizer? tokenizer, IChatTemplate template,
        GenerationDefaults defaults, int concurrentRequests, int contextLength, int worldSize, TimeSpan idleTimeout, ILogger log, GenerationMetrics? metrics = null)
    {
        _client = new Lazy<Task<CoordinatorClient>>(connect);
        Tokenizer = tokenizer;
        Template = template;
        Defaults = defaults;
        ContextLength = contextLength;
        WorldSize = worldSize;
        _idleTimeout = idleTimeout;
        _log = log;
        _metrics = metrics;
        Queue = new FairQueue(concurrentRequests);
    }

    public ITextTokenizer? Tokenizer { get; }
    public IChatTemplate Template { get; }

    /// <summary>The model's generation_config.json defaults (none with --generation-config ignore).</summary>
    public GenerationDefaults Defaults { get; }
    public int ContextLength { get; }
    public int WorldSize { get; }
    public FairQueue Queue { get; }

    /// <summary>The reason of the last request that failed in the cluster (a rank lost, the ring broken), for /health.</summary>
    public string? LastFailure => _lastFailure;

    public Task<CoordinatorClient> ClientAsync() => _client.Value;

    public async Task<ClusterStatus> StatusAsync(CancellationToken cancellationToken) =>
        await (await _client.Value).StatusAsync(StatusTimeout, cancellationToken);

    /// <summary>The cluster's state as one sentence that names the missing ranks and, when known, why they left.</summary>
    public string Describe(ClusterStatus status)
    {
        if (status.Ready) return "ready";
        string why = _lastFailure is { } f ? $"; last error: {f}" : "";
        return $"the cluster is not ready ({status.Phase}): {status.Detail}{why}";
    }

    public ITextTokenizer RequireTokenizer() => Tokenizer
        ?? throw new GenerationRequestException("this model has no tokenizer (a random --preset model): give the prompt as token ids", "prompt");

    /// <summary>Text to ids. A template that writes the BOS token itself gets no second one.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos = true) =>
        addBos ? RequireTokenizer().EncodePrompt(text) : RequireTokenizer().Encode(text, addBos: false);

    /// <exception cref="ChatTemplateException">The template refused the conversation (a 400 with its message).</exception>
    /// <param name="tools">OpenAI's tools list, which the template describes to the model; null: none.</param>
    /// <param name="variables">Further template variables (chat_template_kwargs); null: none.</param>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, System.Text.Json.JsonElement? tools = null,
        IReadOnlyDictionary<string, object?>? variables = null) =>
        tools is null && variables is null ? Template.Render(messages, addGenerationPrompt) : Template.Render(messages, addGenerationPrompt, tools, variables);

    public IReadOnlyList<int> EncodeChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, System.Text.Json.JsonElement? tools = null,
        IReadOnlyDictionary<string, object?>? variables = null)
    {
        RequireTokenizer();
        return Encode(RenderChat(messages, addGenerationPrompt, tools, variables));
    }

    /// <summary>Whether the model writes a think block before its answer, as its chat template teaches it.</summary>
    public bool TeachesThinking => Template.TeachesThinking;

    /// <summary>How the model writes tool calls, as its chat template teaches it; null when it teaches none this server reads.</summary>
    public ToolCallSyntax? ToolCallSyntax => Template.ToolCallSyntax;

    public string Decode(IReadOnlyList<int> ids) => RequireTokenizer().Decode(ids);

    /// <summary>
    /// max_tokens as given, or (when absent) as many as fit after the prompt, at most <paramref name="fallback"/>.
    /// A prompt that leaves no room, or a max_tokens that does not fit, is refused naming the field.
    /// </summary>
    public int ResolveMaxTokens(int promptTokens, int? requested, int fallback, string promptParam, string maxParam = "max_tokens")
    {
        int room = ContextLength - promptTokens;
        if (room < 1)
            throw new GenerationRequestException($"the prompt is {promptTokens} tokens, but this model's context is {ContextLength} tokens and at least one must be left for the completion; shorten the prompt", promptParam);
        if (requested is null) return Math.Min(fallback, room);
        if (requested.Value > room)
            throw new GenerationRequestException($"{maxParam} is {requested} but only {room} tokens fit after the {promptTokens}-token prompt in this model's context of {ContextLength}; lower {maxParam} or shorten the prompt", maxParam);
        return requested.Value;
    }

    /// <summary>Checks what the coordinator would otherwise refuse mid-stream. Throws a <see cref="GenerationRequestException"/>.</summary>
    public void Validate(GenerationInput input, string promptParam)
    {
        if (input.PromptIds.Count == 0) throw new GenerationRequestException("the prompt is empty: give at least one token", promptParam);
        int vocab = Tokenizer?.VocabSize ?? int.MaxValue;
        void InVocabulary(IEnumerable<int> ids, string param, Func<int, string> what)
        {
            foreach (int id in ids)
                if (id < 0 || id >= vocab) throw new GenerationRequestException($"{what(id)} outside the vocabulary [0, {vocab})", param);
        }
        InVocabulary(input.PromptIds, promptParam, id => $"token id {id} is");
        InVocabulary(input.Sampling.StopTokenIds ?? [], "stop_token_ids", id => $"stop_token_ids names token {id},");
        InVocabulary(input.Sampling.LogitBias?.Keys ?? [], "logit_bias", id => $"logit_bias names token {id},");
        ResolveMaxTokens(input.PromptIds.Count, input.Sampling.MaxTokens, input.Sampling.MaxTokens, promptParam);
        var errors = input.Sampling.GetErrors();
        if (errors.Count > 0) throw new GenerationRequestException(string.Join("; ", errors), null);
    }

    /// <summary>
    /// Runs one request after the ones before it. The sequence ends with one <see cref="FinishedEvent"/> or
    /// <see cref="FailedEvent"/>. Cancelling the token (the client went away) leaves the queue or stops the
    /// coordinator after its current step; the next request does not wait for the abandoned one to finish.
    /// </summary>
    public IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationInput input, CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        _ = Task.Run(() => RunAsync(input, channel.Writer, cancellationToken), CancellationToken.None);
        return channel.Reader.ReadAllAsync(cancellationToken);
    }

    private async Task RunAsync(GenerationInput input, ChannelWriter<GenerationEvent> events, CancellationToken cancellationToken)
    {
        long arrived = Stopwatch.GetTimestamp();
        string outcome = "cancelled";
        try
        {
            FairQueue.Turn turn;
            try
            {
                turn = await Queue.EnterAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            using (turn)
            {
                if (cancellationToken.IsCancellationRequested) return;
                outcome = await RunTurnAsync(input, events, Stopwatch.GetElapsedTime(arrived).TotalMilliseconds, cancellationToken);
            }
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or Akka.Actor.AskTimeoutException or OperationCanceledException)
        {
            outcome = cancellationToken.IsCancellationRequested ? "cancelled" : "unavailable";
            if (!cancellationToken.IsCancellationRequested)
                events.TryWrite(new FailedEvent($"the coordinator did not answer: {e.Message}", GenerationErrorKind.Unavailable));
        }
        finally
        {
            _metrics?.RequestEnded(outcome);
            events.TryComplete();
        }
    }

    /// <returns>The outcome, for the metrics: stop, length, cancelled, invalid or unavailable.</returns>
    private async Task<string> RunTurnAsync(GenerationInput input, ChannelWriter<GenerationEvent> events, double queuedMs, CancellationToken cancellationToken)
    {
        var client = await _client.Value;
        var status = await client.StatusAsync(StatusTimeout, cancellationToken);
        if (!status.Ready && input.WaitForCluster)
        {
            try
            {
                await client.WaitReadyAsync(_idleTimeout, null, cancellationToken);
                status = await client.StatusAsync(StatusTimeout, cancellationToken);
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException)
            {
                events.TryWrite(new FailedEvent(e.Message, GenerationErrorKind.Unavailable));
                return "unavailable";
            }
        }
        if (!status.Ready)
        {
            events.TryWrite(new FailedEvent(Describe(status), GenerationErrorKind.Unavailable));
            return "unavailable";
        }

        var sampling = input.Sampling;
        var prompt = input.PromptIds as int[] ?? input.PromptIds.ToArray();
        // Without a tokenizer (random --preset model) there is no text and no EOS: max_tokens ends the request.
        var stop = Tokenizer is null ? null
            : StopConditions.For(Tokenizer, sampling, prompt);
        var spec = ToSpec(sampling, Tokenizer?.EosIds ?? []);
        // Slot 0 and start position 0: every request is a fresh sequence (see ConcurrentRequests).
        // The scheduler checks the stop strings too, so a stop ends the request on the token that completes it,
        // with no extra step; the text-side check here cuts the stop string out of what the client sees.
        var request = new GenerateRequest(Guid.NewGuid().ToString("N")[..12], 0, prompt, 0, spec,
            sampling.StopStrings is { Count: > 0 } stops ? [.. stops] : null);
        _metrics?.RequestStarted(prompt.Length);

        long started = Stopwatch.GetTimestamp();
        double firstTokenMs = 0;
        int generated = 0;
        string? finish = null, stopString = null;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await foreach (var message in client.GenerateAsync(request, cancel.Token, _idleTimeout))
        {
            switch (message)
            {
                case TokenGenerated t when finish is null:
                    if (generated++ == 0) firstTokenMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    events.TryWrite(new TokenEvent(t.Index, t.TokenId, t.Logprob is float lp
                        ? new TokenLogprob(t.TokenId, lp, [.. (t.TopIds ?? []).Zip(t.TopLogprobs ?? [])])
                        : null));
                    _metrics?.TokenGenerated();
                    if (stop is null) break;
                    var check = stop.Append(t.TokenId);
                    if (check.Text.Length > 0) events.TryWrite(new TextEvent(check.Text));
                    if (check.Stopped)
                    {
                        finish = check.FinishReason ?? FinishReasons.Stop;
                        stopString = stop.MatchedStopString;
                        // The scheduler ends the request on this same token; this only stops reading the stream.
                        cancel.Cancel();
                    }
                    break;
                case GenerationCompleted c:
                    if (finish is null && cancellationToken.IsCancellationRequested) return "cancelled";
                    finish ??= c.FinishReason;
                    var timings = new GenerationTimings(queuedMs, firstTokenMs, c.PrefillMs, c.MsPerToken, c.ControlShare);
                    _metrics?.RequestTimed(timings, generated);
                    _metrics?.PrefixCacheLookup(prompt.Length, c.CachedPromptTokens);
                    _log.LogInformation("request {Id}: {Prompt} prompt + {Count} tokens, {Finish}, queued {Queued:0.#} ms, prefill {Prefill:0.#} ms, {Ms:0.###} ms/token, control share {Share:P1}",
                        c.RequestId, prompt.Length, generated, finish, queuedMs, c.PrefillMs, c.MsPerToken, c.ControlShare);
                    events.TryWrite(new FinishedEvent(finish, new TokenUsage(prompt.Length, generated), timings, stopString));
                    return finish;
                case GenerationFailed f:
                    if (cancellationToken.IsCancellationRequested) return "cancelled";
                    bool invalid = f.Reason.StartsWith("invalid sampling options", StringComparison.Ordinal);
                    if (!invalid) _lastFailure = f.Reason;
                    events.TryWrite(new FailedEvent(f.Reason, invalid ? GenerationErrorKind.InvalidRequest : GenerationErrorKind.Unavailable));
                    return invalid ? "invalid" : "unavailable";
            }
        }
        if (cancellationToken.IsCancellationRequested) return "cancelled";
        events.TryWrite(new FailedEvent("the coordinator ended the request without a result", GenerationErrorKind.Unavailable));
        return "unavailable";
    }

    /// <summary>The control-plane form of the sampling options, stopping at the tokenizer's end-of-sequence ids
    /// (<paramref name="stopIds"/>, dropped when the options ignore EOS) and the options' own stop ids (e.g. those of
    /// the model's generation_config.json).</summary>
    public static SamplingSpec ToSpec(SamplingOptions o, IEnumerable<int> stopIds) =>
        new(o.Temperature, o.TopK, o.TopP, o.Seed, o.RepetitionPenalty, o.MaxTokens,
            (o.IgnoreEos ? [] : stopIds).Union(o.StopTokenIds ?? []).ToArray(),
            o.MinP, o.PresencePenalty, o.FrequencyPenalty, o.Logprobs, o.LogitBias, o.MinTokens, o.JsonObject, o.JsonSchema, o.ThinkFirst);
}

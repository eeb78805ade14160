using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using ActorRing.Host.Generation;
using ActorRing.Model.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Prometheus;

namespace ActorRing.Host.Http;

/// <summary>
/// The OpenAI-compatible HTTP API on rank 0: chat and legacy completions (plain JSON or Server-Sent Events), the
/// model list, vLLM's /tokenize and /detokenize, /health and /metrics. A thin client of
/// <see cref="GenerationService"/>: it parses and answers, the service does the work.
/// </summary>
internal sealed class OpenAiApi(GenerationService service, string modelId, string? apiKey)
{
    /// <summary>Largest request body; a bigger one gets 413. Far above any prompt that fits a context.</summary>
    public const long MaxBodyBytes = 4 << 20;

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>When this server started: the model card's <c>created</c>. A completion's <c>created</c> is its own
    /// request's time (<see cref="Now"/>), as OpenAI gives it; it used to be this one for every completion.</summary>
    private readonly long _created = Now();

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public void Map(WebApplication app, GenerationMetrics metrics)
    {
        app.Use(async (ctx, next) =>
        {
            try
            {
                if (apiKey is not null && ctx.Request.Path != "/health" && !Authorized(ctx.Request))
                    throw new ApiException(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key given by --api-key or ACTORRING_API_KEY", null, "invalid_api_key");
                await next();
            }
            catch (ApiException e) when (!ctx.Response.HasStarted)
            {
                bool completion = ctx.Request.Path.StartsWithSegments("/v1") && ctx.Request.Method == "POST";
                if (e.Code == ClientClosedCode)
                {
                    // Nobody is left to answer: a client that hung up mid-body cancelled its request, it did not send a bad one.
                    if (completion) metrics.RequestEnded("cancelled");
                    ctx.Abort();
                    return;
                }
                // A refused completion request counts as one; 503s are counted by the service that refused them.
                if (e.Status is >= 400 and < 500 && completion)
                    metrics.RequestEnded("invalid");
                await WriteAsync(ctx, e.Status, e.Body);
            }
        });
        app.MapPost("/v1/chat/completions", ChatAsync);
        app.MapPost("/v1/completions", CompletionAsync);
        app.MapPost("/v1/responses", ResponsesAsync);
        app.MapGet("/v1/models", ctx => WriteAsync(ctx, 200,
            new ModelList([new ModelCard(modelId, _created, service.ContextLength)])));
        // OpenAI's "retrieve model" (the .NET and Python clients' GetModel / models.retrieve). The id may hold '/'
        // (a Hugging Face repo name), hence the catch-all segment.
        app.MapGet("/v1/models/{**id}", (HttpContext ctx, string id) => id == modelId
            ? WriteAsync(ctx, 200, new ModelCard(modelId, _created, service.ContextLength))
            : throw new ApiException(404, $"the model '{id}' does not exist; this server serves '{modelId}' (see GET /v1/models)", null, "model_not_found"));
        app.MapPost("/tokenize", TokenizeAsync);
        app.MapPost("/detokenize", DetokenizeAsync);
        app.MapGet("/health", HealthAsync);
        metrics.UpdateBeforeScrape(async ct =>
        {
            int ranks;
            try
            {
                var status = await service.StatusAsync(ct);
                ranks = status.Ready ? status.WorldSize : status.RegisteredRanks;
            }
            catch (Exception e) when (e is TimeoutException or Akka.Actor.AskTimeoutException or InvalidOperationException or OperationCanceledException)
            {
                ranks = 0; // the coordinator does not answer: nothing is ready as far as a client can tell
            }
            return (service.Queue.Running, service.Queue.Waiting, ranks, service.WorldSize);
        });
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapFallback(ctx => throw new ApiException(404,
            $"no such endpoint: {ctx.Request.Method} {ctx.Request.Path}; this server has POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, GET /v1/models, GET /v1/models/{{id}}, POST /tokenize, POST /detokenize, GET /health and GET /metrics",
            null, "not_found"));
    }

    private bool Authorized(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return false;
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()), Encoding.UTF8.GetBytes(apiKey!));
    }

    // ------------------------------------------------------------------ completions

    private async Task ChatAsync(HttpContext ctx)
    {
        var f = await ReadAsync(ctx);
        var request = OpenAiRequest.Chat(f, service);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        await RunAsync(ctx, request, new ChatFormat(this, id, Now(), modelId, request.Tools, request.ThinkingPrompt));
    }

    private async Task ResponsesAsync(HttpContext ctx)
    {
        var f = await ReadAsync(ctx);
        var request = ResponsesRequest.From(f, service);
        string id = "resp_" + Guid.NewGuid().ToString("N");
        long created = Now();
        var chat = new ChatFormat(this, id, created, modelId, request.Tools, request.ThinkingPrompt);
        await RunAsync(ctx, request, new ResponsesFormat(this, id, created, modelId, chat, ResponsesRequest.Echo(f)));
    }

    private async Task CompletionAsync(HttpContext ctx)
    {
        var f = await ReadAsync(ctx);
        var request = OpenAiRequest.Completion(f, service);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        await RunAsync(ctx, request, new TextFormat(this, id, Now(), modelId, request.Echo));
    }

    /// <summary>How chat, legacy completions and responses spell the same events; <c>index</c> is the choice's. A
    /// stream method returns one event, none (null), or several (an <see cref="EventBatch"/>).</summary>
    internal abstract class ResponseFormat(OpenAiApi api)
    {
        public OpenAiApi Api { get; } = api;

        /// <summary>Whether a stream ends with <c>data: [DONE]</c> (chat and completions; the Responses API has its
        /// own last event).</summary>
        public virtual bool EndsWithDone => true;

        /// <summary>The SSE <c>event:</c> name of a body, for APIs that name their events.</summary>
        public virtual string? EventName(object body) => null;

        /// <summary>The event that tells a stream's client the request failed after the stream began.</summary>
        public virtual object StreamError(ApiException error) => error.Body;
        public abstract object? StreamStart(int index);
        /// <summary>The chunk that sends a piece of text, or null while it is held back (a tool call may be starting).</summary>
        public abstract object? StreamText(int index, string text, IReadOnlyList<TokenLogprob> logprobs);
        /// <summary>The chunks that end a choice: what was held back, then the finish reason.</summary>
        public abstract IEnumerable<object> StreamFinish(int index, string reason, IReadOnlyList<TokenLogprob> logprobs);
        public abstract object StreamUsage(UsageBody usage);
        public abstract object Whole(IReadOnlyList<ChoiceResult> choices, UsageBody usage);
    }

    /// <summary>What one choice has received so far.</summary>
    private sealed class ChoiceState
    {
        public readonly StringBuilder Text = new();
        public readonly List<TokenLogprob> Logprobs = [];
        public int Sent; // logprobs already streamed
        public FinishedEvent? Finished;
    }

    private async Task RunAsync(HttpContext ctx, OpenAiRequest request, ResponseFormat format)
    {
        var ct = ctx.RequestAborted;
        // The choices run as separate requests, side by side in the batch; their events meet in one channel, so
        // this method alone writes the response. Leaving it (done, failed, or the client gone) cancels them all.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var events = Channel.CreateUnbounded<(int Index, GenerationEvent Event)>(new UnboundedChannelOptions { SingleReader = true });
        var inputs = request.ChoiceInputs();
        // The other choices start once the first has its first token: its prompt is prefilled by then and its full
        // blocks are in the prefix cache, so they skip that prefill instead of all computing it in the same step.
        var firstPrefilled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var producers = inputs.Select((input, index) => PumpAsync(input, index)).ToArray();
        _ = Task.WhenAll(producers).ContinueWith(_ => events.Writer.TryComplete(), TaskScheduler.Default);
        async Task PumpAsync(GenerationInput input, int index)
        {
            try
            {
                if (index > 0) await firstPrefilled.Task.WaitAsync(stop.Token);
                await foreach (var e in service.GenerateAsync(input, stop.Token).WithCancellation(stop.Token))
                {
                    if (index == 0) firstPrefilled.TrySetResult();
                    events.Writer.TryWrite((index, e));
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                events.Writer.TryComplete(e);
            }
            finally
            {
                if (index == 0) firstPrefilled.TrySetResult(); // it ended without a token: the others need not wait
            }
        }

        var choices = inputs.Select(_ => new ChoiceState()).ToArray(); // best_of's too: all are generated, n returned
        int finished = 0;
        bool streaming = false;
        try
        {
            // Nothing is sent before the first event: a request refused after its wait in the queue still gets
            // a proper status instead of a stream that starts and breaks.
            await foreach (var (index, e) in events.Reader.ReadAllAsync(ct))
            {
                var choice = choices[index];
                switch (e)
                {
                    case FailedEvent failed when !streaming:
                        throw Failure(failed);
                    case FailedEvent failed:
                        await SendEventAsync(ctx, format, format.StreamError(Failure(failed)));
                        if (format.EndsWithDone) await SendDoneAsync(ctx);
                        return;
                    case TokenEvent { Logprob: { } lp } when request.Logprobs is not null || request.Ranked:
                        choice.Logprobs.Add(lp);
                        break;
                    case TextEvent t:
                        choice.Text.Append(t.Text);
                        if (!request.Stream) break;
                        if (!streaming) streaming = await StartStreamAsync(ctx, format, choices.Length);
                        if (format.StreamText(index, t.Text, choice.Logprobs[choice.Sent..]) is not { } piece) break;
                        await SendEventsAsync(ctx, format, piece);
                        choice.Sent = choice.Logprobs.Count;
                        break;
                    case FinishedEvent done:
                        choice.Finished = done;
                        if (request.Stream)
                        {
                            if (!streaming) streaming = await StartStreamAsync(ctx, format, choices.Length);
                            foreach (var chunk in format.StreamFinish(index, done.FinishReason, choice.Logprobs[choice.Sent..]))
                                await SendEventsAsync(ctx, format, chunk);
                        }
                        if (++finished < choices.Length) break;
                        // The prompt is counted once, as OpenAI does for n choices.
                        int prompt = done.Usage.PromptTokens, completion = choices.Sum(c => c.Finished!.Usage.CompletionTokens);
                        var usage = new UsageBody(prompt, completion, prompt + completion);
                        if (!request.Stream)
                        {
                            await WriteAsync(ctx, 200, format.Whole(
                                [.. Returned(request, choices).Select(c => new ChoiceResult(c.Text.ToString(), request.Logprobs is null ? null : c.Logprobs, c.Finished!.FinishReason))],
                                usage));
                            return;
                        }
                        if (request.IncludeUsage) await SendEventsAsync(ctx, format, format.StreamUsage(usage));
                        if (format.EndsWithDone) await SendDoneAsync(ctx);
                        return;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away; the service has already cancelled its request.
            return;
        }
        catch (IOException) when (ct.IsCancellationRequested)
        {
            return;
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(producers);
        }
    }

    /// <summary>
    /// The choices the answer holds: all of them, or with best_of the n with the highest mean log-probability per
    /// token (OpenAI's rule), best first, the earlier choice first on a tie. Usage counts every choice generated.
    /// </summary>
    private static IEnumerable<ChoiceState> Returned(OpenAiRequest request, ChoiceState[] choices) => !request.Ranked ? choices
        : choices.Select((c, i) => (c, i, Mean: c.Logprobs.Count == 0 ? double.NegativeInfinity : c.Logprobs.Average(l => (double)l.Logprob)))
            .OrderByDescending(x => x.Mean).ThenBy(x => x.i).Take(request.N).Select(x => x.c);

    private static async Task<bool> StartStreamAsync(HttpContext ctx, ResponseFormat format, int choices)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        for (int index = 0; index < choices; index++)
            if (format.StreamStart(index) is { } first) await SendEventsAsync(ctx, format, first);
        return true;
    }

    /// <summary>Several events a format returns at once, sent in order.</summary>
    internal sealed record EventBatch(IReadOnlyList<object> Events);

    private static async Task SendEventsAsync(HttpContext ctx, ResponseFormat format, object body)
    {
        if (body is not EventBatch batch)
        {
            await SendEventAsync(ctx, format, body);
            return;
        }
        foreach (var e in batch.Events) await SendEventAsync(ctx, format, e);
    }

    private static async Task SendEventAsync(HttpContext ctx, ResponseFormat format, object body)
    {
        if (format.EventName(body) is { } name) await ctx.Response.Body.WriteAsync(Encoding.UTF8.GetBytes($"event: {name}\n"), ctx.RequestAborted);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(body, body.GetType(), Json);
        await ctx.Response.Body.WriteAsync("data: "u8.ToArray(), ctx.RequestAborted);
        await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted);
        await ctx.Response.Body.WriteAsync("\n\n"u8.ToArray(), ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    private static async Task SendDoneAsync(HttpContext ctx)
    {
        await ctx.Response.Body.WriteAsync("data: [DONE]\n\n"u8.ToArray(), ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    private static ApiException Failure(FailedEvent failed) => failed.Kind == GenerationErrorKind.InvalidRequest
        ? ApiException.BadRequest(failed.Message, null)
        : new ApiException(503, failed.Message, null, "cluster_unavailable");

    /// <summary>A token's text for the logprobs lists; a piece of a multi-byte character decodes as U+FFFD, and its
    /// bytes say what it really is.</summary>
    internal (string Text, int[] Bytes) TokenText(int id)
    {
        var tokenizer = service.Tokenizer;
        string text = tokenizer is null ? "" : tokenizer.Decode([id]);
        return (text, [.. Encoding.UTF8.GetBytes(text)]);
    }

    // ------------------------------------------------------------------ tokenizer and health

    private async Task TokenizeAsync(HttpContext ctx)
    {
        var f = await ReadAsync(ctx);
        CheckModel(f);
        IReadOnlyList<int> ids;
        try
        {
            if (f.Has("messages"))
            {
                // The prompt a chat request with the same messages, tools and template variables would get.
                var messages = OpenAiRequest.Messages(f);
                var tools = f.Get("tools") is { } t ? t.ValueKind == JsonValueKind.Array ? t : throw JsonFields.Type("tools", "an array", t) : (JsonElement?)null;
                ids = service.EncodeChat(messages, f.Bool("add_generation_prompt") ?? true, tools, OpenAiRequest.TemplateVariables(f));
            }
            else if (f.String("prompt") is { } prompt)
            {
                ids = service.Encode(prompt, f.Bool("add_special_tokens") ?? true);
            }
            else
            {
                throw ApiException.BadRequest("give either prompt (a string) or messages", "prompt", "missing_required_parameter");
            }
        }
        catch (Templating.ChatTemplateException e)
        {
            throw ApiException.BadRequest($"the chat template refused the conversation: {e.Message}", "messages");
        }
        catch (GenerationRequestException e)
        {
            throw ApiException.BadRequest(e.Message, e.Param);
        }
        await WriteAsync(ctx, 200, new TokenizeBody(ids.Count, service.ContextLength, [.. ids]));
    }

    private async Task DetokenizeAsync(HttpContext ctx)
    {
        var f = await ReadAsync(ctx);
        CheckModel(f);
        if (f.Get("tokens") is not { } list) throw ApiException.BadRequest("tokens is required: a list of token ids", "tokens", "missing_required_parameter");
        if (list.ValueKind != JsonValueKind.Array) throw JsonFields.Type("tokens", "an array of token ids", list);
        var tokenizer = service.Tokenizer ?? throw ApiException.BadRequest("this model has no tokenizer (a random --preset model)", "tokens");
        var ids = list.EnumerateArray().Select((e, i) =>
            e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) && id >= 0 && id < tokenizer.VocabSize ? id
            : throw ApiException.BadRequest($"tokens[{i}] must be a token id in [0, {tokenizer.VocabSize}), got {e.GetRawText()}", $"tokens[{i}]")).ToArray();
        await WriteAsync(ctx, 200, new DetokenizeBody(tokenizer.Decode(ids)));
    }

    private async Task HealthAsync(HttpContext ctx)
    {
        try
        {
            var status = await service.StatusAsync(ctx.RequestAborted);
            await WriteAsync(ctx, status.Ready ? 200 : 503, new HealthBody(status.Ready ? "ready" : "unavailable",
                status.WorldSize, status.Ready ? status.WorldSize : status.RegisteredRanks, status.Ready ? null : service.Describe(status)));
        }
        catch (Exception e) when (e is TimeoutException or Akka.Actor.AskTimeoutException or InvalidOperationException)
        {
            await WriteAsync(ctx, 503, new HealthBody("unavailable", service.WorldSize, 0, $"the coordinator on rank 0 did not answer: {e.Message}"));
        }
    }

    // ------------------------------------------------------------------ plumbing

    /// <summary>JSON nesting a request may use. Real requests nest about six levels (messages, content parts,
    /// tool schemas a little more); the limit bounds the parser's work and stack on hostile input.</summary>
    public const int MaxJsonDepth = 64;

    private async Task<JsonFields> ReadAsync(HttpContext ctx)
    {
        var body = await ReadBodyAsync(ctx);
        // System.Text.Json checks the UTF-8 of the structure but not of string contents until a string is read,
        // where a bad byte would surface as an exception deep in the request parser: check the whole body first.
        if (FirstInvalidUtf8(body.Span) is int offset)
            throw ApiException.BadRequest(
                $"the request body is not valid UTF-8: byte 0x{body.Span[offset]:X2} at offset {offset} does not start or continue a UTF-8 character; send the JSON encoded as UTF-8",
                null, "invalid_utf8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = MaxJsonDepth });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        ctx.Response.RegisterForDispose(doc);
        var f = JsonFields.Of(doc.RootElement);
        CheckModel(f);
        return f;
    }

    /// <summary>The whole body, up to <see cref="MaxBodyBytes"/>: Kestrel enforces that limit as it reads, with a
    /// Content-Length or chunked alike.</summary>
    private static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpContext ctx)
    {
        // Sized by what arrives, not by what the client announces: a thousand connections each declaring 4 MiB
        // and sending nothing must not reserve 4 GiB.
        var buffer = new MemoryStream(ctx.Request.ContentLength is long length ? (int)Math.Min(length, 64 * 1024) : 4096);
        try
        {
            await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiException(413, $"the request body is larger than {MaxBodyBytes} bytes", null, "request_too_large");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status400BadRequest && IsEndOfContent(ctx, buffer, e))
        {
            throw ClientGone(e.Message);
        }
        catch (BadHttpRequestException e)
        {
            // A body slower than the minimum rate (408), a broken chunk encoding (400): the client's fault, not ours.
            throw new ApiException(e.StatusCode, $"the request body could not be read: {e.Message}", null, "bad_request_body");
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
        {
            throw ClientGone(e.Message);
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    /// <summary>
    /// Whether the connection closed mid-body, so the client is gone (Kestrel does not cancel RequestAborted for
    /// it): with a Content-Length, the body is shorter; a chunked body has no length, and Kestrel's 400 then says
    /// so in its message (its reason code is internal), where a malformed chunk gets another. A body too slow to
    /// arrive is a 408 and is still answered.
    /// </summary>
    private static bool IsEndOfContent(HttpContext ctx, MemoryStream received, BadHttpRequestException e) =>
        ctx.Request.ContentLength is long length
            ? received.Length < length
            : e.Message.StartsWith(KestrelEndOfContent, StringComparison.Ordinal);

    /// <summary>Kestrel's message for a request body cut off by the end of the connection.</summary>
    private const string KestrelEndOfContent = "Unexpected end of request content";

    private const string ClientClosedCode = "client_closed_request";

    /// <summary>The client closed its connection before its request was read: there is no one to answer (nginx's 499).</summary>
    private static ApiException ClientGone(string detail) =>
        new(499, $"the client went away while sending its request: {detail}", null, ClientClosedCode);

    /// <summary>The offset of the first byte that is not part of a well-formed UTF-8 character, or null.</summary>
    internal static int? FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return null;
        int offset = 0;
        while (offset < bytes.Length)
        {
            var status = System.Text.Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed);
            if (status != System.Buffers.OperationStatus.Done) return offset;
            offset += consumed;
        }
        return null;
    }

    private void CheckModel(JsonFields f)
    {
        if (f.String("model") is { } model && model != modelId)
            throw new ApiException(404, $"the model '{model}' does not exist; this server serves '{modelId}' (see GET /v1/models)", "model", "model_not_found");
    }

    internal static async Task WriteAsync(HttpContext ctx, int status, object body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        await ctx.Response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(body, body.GetType(), Json), ctx.RequestAborted);
    }
}

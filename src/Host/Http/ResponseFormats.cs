using ActorRing.Host.Generation;
using ActorRing.Templating;

namespace ActorRing.Host.Http;

/// <summary>One finished choice of a non-streamed answer.</summary>
internal sealed record ChoiceResult(string Text, IReadOnlyList<TokenLogprob>? Logprobs, string FinishReason);

/// <summary>
/// Chat completions: the assistant's message, or chunks whose first delta carries the role.
/// <list type="bullet">
/// <item>With a prompt whose template teaches a think block (<paramref name="thinkingPrompt"/>), the model's thinking
/// goes to <c>reasoning_content</c> and the rest to <c>content</c> (<see cref="ThinkSplitter"/>).</item>
/// <item>With tools (<paramref name="tools"/>), the calls in the answer become <c>tool_calls</c>: streamed, content
/// that is or may become a call is held back, and the calls are sent whole, each in one delta, when the choice ends
/// (a client joins deltas, so one whole delta reads the same as many pieces).</item>
/// </list>
/// </summary>
internal sealed class ChatFormat(OpenAiApi api, string id, long created, string model, ToolUse? tools = null, string? thinkingPrompt = null)
    : OpenAiApi.ResponseFormat(api)
{
    /// <summary>One streamed choice: its splitter, and with tools its answer text so far, how much of that was sent,
    /// and the id of the call whose arguments are being streamed.</summary>
    private sealed class Streamed(ThinkSplitter? think)
    {
        public readonly ThinkSplitter? Think = think;
        public readonly System.Text.StringBuilder Content = new();
        public int Sent;
        public string? CallId;
    }

    private readonly Dictionary<int, Streamed> _streamed = [];

    private Streamed State(int index)
    {
        if (!_streamed.TryGetValue(index, out var state))
            _streamed[index] = state = new Streamed(thinkingPrompt is null ? null : ThinkSplitter.ForPrompt(thinkingPrompt));
        return state;
    }

    public override object? StreamStart(int index) => Chunk(index, new ChunkDelta("assistant", ""), null, null);

    public override object? StreamText(int index, string text, IReadOnlyList<TokenLogprob> logprobs)
    {
        if (tools is null && thinkingPrompt is null) return Chunk(index, new ChunkDelta(null, text), Logprobs(logprobs), null);
        var state = State(index);
        var (reasoning, content) = state.Think?.Push(text) ?? ("", text);
        return Send(index, state, reasoning, content, logprobs);
    }

    /// <summary>The chunk of what is known now: reasoning as it comes, answer text up to where a call may begin
    /// (only the unsent text is looked at, so a long answer costs no more per token than a short one).</summary>
    private ChatChunkBody? Send(int index, Streamed state, string reasoning, string content, IReadOnlyList<TokenLogprob> logprobs)
    {
        if (tools is { StreamsArguments: true }) return SendArguments(index, state, reasoning, content, logprobs);
        string? answer = content.Length > 0 ? content : null;
        if (tools is not null)
        {
            state.Content.Append(content);
            string unsent = state.Content.ToString(state.Sent, state.Content.Length - state.Sent);
            int hold = tools.HoldFrom(unsent, atStart: state.Sent == 0);
            answer = hold > 0 ? unsent[..hold] : null;
            state.Sent += hold;
        }
        if (reasoning.Length == 0 && answer is null) return null;
        return Chunk(index, new ChunkDelta(null, answer, ReasoningContent: reasoning.Length == 0 ? null : reasoning), Logprobs(logprobs), null);
    }

    /// <summary>A forced call's arguments as they are written: the first piece opens the call with its id and name.</summary>
    private ChatChunkBody? SendArguments(int index, Streamed state, string reasoning, string content, IReadOnlyList<TokenLogprob> logprobs)
    {
        ChunkToolCall[]? call = null;
        if (state.CallId is null) content = content.TrimStart(); // the whitespace JSON allows before the object
        if (content.Length > 0)
        {
            bool first = state.CallId is null;
            state.CallId ??= tools!.NewCallId();
            call = [new ChunkToolCall(0, first ? state.CallId : null, new ChunkFunction(first ? tools!.OnlyFunction : null, content))];
            state.Content.Append(content);
            state.Sent = state.Content.Length;
        }
        if (reasoning.Length == 0 && call is null) return null;
        return Chunk(index, new ChunkDelta(null, null, call, reasoning.Length == 0 ? null : reasoning), Logprobs(logprobs), null);
    }

    public override IEnumerable<object> StreamFinish(int index, string reason, IReadOnlyList<TokenLogprob> logprobs)
    {
        if (tools is not null || thinkingPrompt is not null)
        {
            var state = State(index);
            var (reasoning, content) = state.Think?.Finish() ?? ("", "");
            if (tools is { StreamsArguments: true })
            {
                // The arguments went out as they came; a cut-off call ends cut off, as OpenAI's does.
                if (SendArguments(index, state, reasoning, content, logprobs) is { } last) yield return last;
                bool complete = tools.Read(state.Content.ToString()).Calls.Count > 0;
                yield return Chunk(index, new ChunkDelta(null, null), null, complete ? tools.FinishReason(reason) : reason);
                yield break;
            }
            if (reasoning.Length > 0)
            {
                yield return Chunk(index, new ChunkDelta(null, null, ReasoningContent: reasoning), Logprobs(logprobs), null);
                logprobs = [];
            }
            state.Content.Append(content);
            string whole = state.Content.ToString();
            if (tools?.Read(whole) is { Calls.Count: > 0 } answer)
            {
                var calls = answer.Calls.Select((c, i) => new ChunkToolCall(i, c.Id, new ChunkFunction(c.Name, c.Arguments))).ToArray();
                yield return Chunk(index, new ChunkDelta(null, null, calls), Logprobs(logprobs), null);
                yield return Chunk(index, new ChunkDelta(null, null), null, tools.FinishReason(reason));
                yield break;
            }
            if (state.Sent < whole.Length)
            {
                yield return Chunk(index, new ChunkDelta(null, whole[state.Sent..]), Logprobs(logprobs), null);
                logprobs = [];
            }
        }
        yield return Chunk(index, new ChunkDelta(null, null), logprobs.Count > 0 ? Logprobs(logprobs) : null, reason);
    }

    public override object StreamUsage(UsageBody usage) => new ChatChunkBody(id, created, model, [], usage);

    public override object Whole(IReadOnlyList<ChoiceResult> choices, UsageBody usage) =>
        new ChatCompletionBody(id, created, model,
            [.. choices.Select((c, i) => Choice(i, c))],
            usage);

    private ChatChoice Choice(int index, ChoiceResult c)
    {
        var logprobs = c.Logprobs is null ? null : Logprobs(c.Logprobs);
        string content = c.Text;
        string? reasoning = null;
        if (thinkingPrompt is not null)
        {
            var think = ThinkSplitter.ForPrompt(thinkingPrompt);
            var (r1, c1) = think.Push(c.Text);
            var (r2, c2) = think.Finish();
            reasoning = r1 + r2 is { Length: > 0 } r ? r : null;
            content = c1 + c2;
        }
        if (tools?.Read(content) is { Calls.Count: > 0 } answer)
            return new ChatChoice(index, new AssistantMessage(answer.Content, [.. answer.Calls.Select(call => new ToolCallBody(call.Id, new FunctionCallBody(call.Name, call.Arguments)))], reasoning),
                logprobs, tools.FinishReason(c.FinishReason));
        // An answer cut off while thinking has no content yet.
        return new ChatChoice(index, new AssistantMessage(content.Length == 0 && reasoning is not null ? null : content, null, reasoning), logprobs, c.FinishReason);
    }

    private ChatChunkBody Chunk(int index, ChunkDelta delta, ChatLogprobs? logprobs, string? finish) =>
        new(id, created, model, [new ChunkChoice(index, delta, logprobs, finish)], null);

    private ChatLogprobs? Logprobs(IReadOnlyList<TokenLogprob> logprobs)
    {
        if (logprobs.Count == 0) return null;
        return new ChatLogprobs([.. logprobs.Select(lp =>
        {
            var (text, bytes) = Api.TokenText(lp.TokenId);
            return new ChatTokenLogprob(text, lp.Logprob, bytes, [.. lp.Top.Select(t =>
            {
                var (tt, tb) = Api.TokenText(t.TokenId);
                return new TopLogprobBody(tt, t.Logprob, tb);
            })]);
        })]);
    }
}

/// <summary>Legacy completions: text choices, with the parallel-list log-probabilities of that API. With
/// <paramref name="echo"/> (the prompt's text) each choice starts with the prompt, streamed as its first chunk.</summary>
internal sealed class TextFormat(OpenAiApi api, string id, long created, string model, string? echo = null) : OpenAiApi.ResponseFormat(api)
{
    /// <summary>Per choice, the text offset of its next token (the legacy logprobs' text_offset).</summary>
    private readonly Dictionary<int, int> _offsets = [];

    public override object? StreamStart(int index) => echo is null ? null : Body([Choice(index, echo, null, null, usage: false)], null);

    public override object? StreamText(int index, string text, IReadOnlyList<TokenLogprob> logprobs) =>
        Body([Choice(index, text, logprobs, null, usage: false)], null);

    public override IEnumerable<object> StreamFinish(int index, string reason, IReadOnlyList<TokenLogprob> logprobs) =>
        [Body([Choice(index, "", logprobs, reason, usage: false)], null)];

    public override object StreamUsage(UsageBody usage) => new TextCompletionBody(id, created, model, [], usage);

    public override object Whole(IReadOnlyList<ChoiceResult> choices, UsageBody usage) =>
        Body([.. choices.Select((c, i) => Choice(i, echo + c.Text, c.Logprobs, c.FinishReason, usage: true))], usage);

    private TextCompletionBody Body(TextChoice[] choices, UsageBody? usage) => new(id, created, model, choices, usage);

    private TextChoice Choice(int index, string text, IReadOnlyList<TokenLogprob>? logprobs, string? finish, bool usage) =>
        new(text, index, logprobs is null || (logprobs.Count == 0 && !usage) ? null : Legacy(index, logprobs), finish);

    private LegacyLogprobs Legacy(int index, IReadOnlyList<TokenLogprob> logprobs)
    {
        int offset = _offsets.GetValueOrDefault(index);
        var tokens = new string[logprobs.Count];
        var offsets = new int[logprobs.Count];
        var top = new Dictionary<string, float>[logprobs.Count];
        for (int i = 0; i < logprobs.Count; i++)
        {
            tokens[i] = Api.TokenText(logprobs[i].TokenId).Text;
            offsets[i] = offset;
            offset += tokens[i].Length;
            top[i] = new Dictionary<string, float>(StringComparer.Ordinal);
            foreach (var (alt, lp) in logprobs[i].Top) top[i].TryAdd(Api.TokenText(alt).Text, lp);
        }
        _offsets[index] = offset;
        return new LegacyLogprobs(tokens, [.. logprobs.Select(l => l.Logprob)], top, offsets);
    }
}

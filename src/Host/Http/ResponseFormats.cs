using ActorRing.Host.Generation;
using ActorRing.Templating;

namespace ActorRing.Host.Http;

/// <summary>One finished choice of a non-streamed answer.</summary>
internal sealed record ChoiceResult(string Text, IReadOnlyList<TokenLogprob>? Logprobs, string FinishReason);

/// <summary>
/// Chat completions: the assistant's message, or chunks whose first delta carries the role. With tools
/// (<paramref name="tools"/>) an answer's calls become <c>tool_calls</c>: streamed, text that is or may become a
/// call is held back, and the calls are sent whole, each in one delta, when the choice ends (a client joins
/// deltas, so one whole delta reads the same as many pieces).
/// </summary>
internal sealed class ChatFormat(OpenAiApi api, string id, long created, string model, ToolUse? tools = null) : OpenAiApi.ResponseFormat(api)
{
    /// <summary>Per choice, with tools: the text so far and how much of it was sent.</summary>
    private readonly Dictionary<int, (System.Text.StringBuilder Text, int Sent)> _held = [];

    public override object? StreamStart(int index) => Chunk(index, new ChunkDelta("assistant", ""), null, null);

    public override object? StreamText(int index, string text, IReadOnlyList<TokenLogprob> logprobs)
    {
        if (tools is null) return Chunk(index, new ChunkDelta(null, text), Logprobs(logprobs), null);
        var (all, sent) = Held(index);
        all.Append(text);
        string whole = all.ToString();
        int hold = tools.HoldFrom(whole);
        if (hold <= sent) return null;
        _held[index] = (all, hold);
        return Chunk(index, new ChunkDelta(null, whole[sent..hold]), Logprobs(logprobs), null);
    }

    public override IEnumerable<object> StreamFinish(int index, string reason, IReadOnlyList<TokenLogprob> logprobs)
    {
        if (tools is not null)
        {
            var (all, sent) = Held(index);
            string whole = all.ToString();
            var answer = tools.Read(whole);
            if (answer.Calls.Count > 0)
            {
                var calls = answer.Calls.Select((c, i) => new ChunkToolCall(i, c.Id, new FunctionCallBody(c.Name, c.Arguments))).ToArray();
                yield return Chunk(index, new ChunkDelta(null, null, calls), Logprobs(logprobs), null);
                yield return Chunk(index, new ChunkDelta(null, null), null, tools.FinishReason(reason));
                yield break;
            }
            if (sent < whole.Length)
            {
                yield return Chunk(index, new ChunkDelta(null, whole[sent..]), Logprobs(logprobs), null);
                logprobs = [];
            }
        }
        yield return Chunk(index, new ChunkDelta(null, null), logprobs.Count > 0 ? Logprobs(logprobs) : null, reason);
    }

    private (System.Text.StringBuilder Text, int Sent) Held(int index)
    {
        if (!_held.TryGetValue(index, out var state)) _held[index] = state = (new System.Text.StringBuilder(), 0);
        return state;
    }

    public override object StreamUsage(UsageBody usage) => new ChatChunkBody(id, created, model, [], usage);

    public override object Whole(IReadOnlyList<ChoiceResult> choices, UsageBody usage) =>
        new ChatCompletionBody(id, created, model,
            [.. choices.Select((c, i) => Choice(i, c))],
            usage);

    private ChatChoice Choice(int index, ChoiceResult c)
    {
        var logprobs = c.Logprobs is null ? null : Logprobs(c.Logprobs);
        if (tools?.Read(c.Text) is { Calls.Count: > 0 } answer)
            return new ChatChoice(index, new AssistantMessage(answer.Content, [.. answer.Calls.Select(call => new ToolCallBody(call.Id, new FunctionCallBody(call.Name, call.Arguments)))]),
                logprobs, tools.FinishReason(c.FinishReason));
        return new ChatChoice(index, new AssistantMessage(c.Text), logprobs, c.FinishReason);
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

using System.Globalization;
using ActorRing.Host.Generation;

namespace ActorRing.Host.Http;

/// <summary>Chat completions: the assistant's message, or chunks whose first delta carries the role.</summary>
internal sealed class ChatFormat(OpenAiApi api, string id, long created, string model) : OpenAiApi.ResponseFormat(api)
{
    public override object? StreamStart() => Chunk(new ChunkDelta("assistant", ""), null, null);

    public override object StreamText(string text, IReadOnlyList<TokenLogprob> logprobs) =>
        Chunk(new ChunkDelta(null, text), Logprobs(logprobs), null);

    public override object StreamFinish(string reason, IReadOnlyList<TokenLogprob> logprobs) =>
        Chunk(new ChunkDelta(null, null), logprobs.Count > 0 ? Logprobs(logprobs) : null, reason);

    public override object StreamUsage(UsageBody usage) => new ChatChunkBody(id, created, model, [], usage);

    public override object Whole(string text, IReadOnlyList<TokenLogprob>? logprobs, string reason, UsageBody usage) =>
        new ChatCompletionBody(id, created, model,
            [new ChatChoice(0, new AssistantMessage(text), logprobs is null ? null : Logprobs(logprobs), reason)], usage);

    private ChatChunkBody Chunk(ChunkDelta delta, ChatLogprobs? logprobs, string? finish) =>
        new(id, created, model, [new ChunkChoice(0, delta, logprobs, finish)], null);

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

/// <summary>Legacy completions: text choices, with the parallel-list log-probabilities of that API.</summary>
internal sealed class TextFormat(OpenAiApi api, string id, long created, string model) : OpenAiApi.ResponseFormat(api)
{
    private int _offset;

    public override object? StreamStart() => null;

    public override object StreamText(string text, IReadOnlyList<TokenLogprob> logprobs) =>
        Body(text, logprobs, null, null);

    public override object StreamFinish(string reason, IReadOnlyList<TokenLogprob> logprobs) => Body("", logprobs, reason, null);

    public override object StreamUsage(UsageBody usage) => new TextCompletionBody(id, created, model, [], usage);

    public override object Whole(string text, IReadOnlyList<TokenLogprob>? logprobs, string reason, UsageBody usage) =>
        Body(text, logprobs, reason, usage);

    private TextCompletionBody Body(string text, IReadOnlyList<TokenLogprob>? logprobs, string? finish, UsageBody? usage) =>
        new(id, created, model, [new TextChoice(text, 0, logprobs is null || (logprobs.Count == 0 && usage is null) ? null : Legacy(logprobs), finish)], usage);

    private LegacyLogprobs Legacy(IReadOnlyList<TokenLogprob> logprobs)
    {
        var tokens = new string[logprobs.Count];
        var offsets = new int[logprobs.Count];
        var top = new Dictionary<string, float>[logprobs.Count];
        for (int i = 0; i < logprobs.Count; i++)
        {
            tokens[i] = Api.TokenText(logprobs[i].TokenId).Text;
            offsets[i] = _offset;
            _offset += tokens[i].Length;
            top[i] = new Dictionary<string, float>(StringComparer.Ordinal);
            foreach (var (alt, lp) in logprobs[i].Top) top[i].TryAdd(Api.TokenText(alt).Text, lp);
        }
        return new LegacyLogprobs(tokens, [.. logprobs.Select(l => l.Logprob)], top, offsets);
    }
}

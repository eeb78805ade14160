using ActorRing.Actors;
using ActorRing.Actors.Engine;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;

namespace ActorRing.Host.Engine;

/// <summary>
/// The model layer's <see cref="Sampler"/>, one per request (its seeded RNG belongs to that request), with a
/// <see cref="JsonConstraint"/> when the request asks for JSON. That needs each token's bytes, which
/// <paramref name="tokenizer"/> gives (the table is built on the first such request and shared).
/// </summary>
public sealed class SamplerPickerFactory(ITextTokenizer? tokenizer = null) : ITokenPickerFactory
{
    private readonly Lazy<VocabularyBytes> _vocabulary = new(() => new VocabularyBytes(tokenizer is null ? [] :
        [.. Enumerable.Range(0, tokenizer.VocabSize).Select(id => tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id))]));

    public static SamplingOptions ToOptions(SamplingSpec s) => new(
        Temperature: (float)s.Temperature,
        TopK: s.TopK,
        TopP: (float)s.TopP,
        RepetitionPenalty: (float)s.RepetitionPenalty,
        Seed: s.Seed,
        MaxTokens: s.MaxTokens,
        MinP: (float)s.MinP,
        PresencePenalty: (float)s.PresencePenalty,
        FrequencyPenalty: (float)s.FrequencyPenalty,
        Logprobs: s.Logprobs,
        LogitBias: s.LogitBias,
        // The spec's stop ids hold the EOS ids too (unless the request ignores EOS): min_tokens holds them all back.
        StopTokenIds: s.StopTokenIds,
        MinTokens: s.MinTokens,
        JsonObject: s.JsonObject,
        JsonSchema: s.JsonSchema,
        ThinkFirst: s.ThinkFirst);

    /// <exception cref="ArgumentException">The options name a field and value that cannot be used.</exception>
    public ITokenPicker Create(SamplingSpec sampling)
    {
        var options = ToOptions(sampling).Validate();
        ITokenConstraint? json = null;
        if (options.ConstrainsJson)
        {
            if (tokenizer is null) throw new ArgumentException($"{options.JsonFormatName} needs the model's tokenizer, and this rank has none");
            var schema = options.JsonSchema is { } text ? JsonSchema.FromText(text) : JsonSchema.AnyObject; // Validate compiled it
            json = new JsonConstraint(_vocabulary.Value, schema, sampling.StopTokenIds ?? [], options.JsonFormatName, options.ThinkFirst);
        }
        return new Picker(new Sampler(options, json), json);
    }

    private sealed class Picker(Sampler sampler, ITokenConstraint? constraint) : ITokenPicker
    {
        private int _promptLength = -1, _accepted;

        public int Pick(float[] logits, IReadOnlyList<int> history) => Sample(logits, history).TokenId;

        public SampledToken Sample(float[] logits, IReadOnlyList<int> history)
        {
            if (_promptLength < 0) _accepted = _promptLength = history.Count;
            // The constraint follows every token picked since the last call (the scheduler appends each to the history).
            for (; _accepted < history.Count; _accepted++) constraint?.Accept(history[_accepted]);
            return sampler.Sample(logits, history, _promptLength);
        }
    }
}

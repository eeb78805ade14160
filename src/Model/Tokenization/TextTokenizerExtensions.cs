namespace ActorRing.Model.Tokenization;

public static class TextTokenizerExtensions
{
    /// <summary>
    /// A decoder for the completion that follows <paramref name="promptIds"/>: the prompt is fed through and its
    /// text discarded, so the first generated token sees the right context (after BOS its leading space is
    /// dropped; after "Once upon a time" it is kept) and a character split across the prompt/completion
    /// boundary completes in the first generated chunk.
    /// </summary>
    public static IncrementalDecoder CreateIncrementalDecoder(this ITextTokenizer tokenizer, IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(promptIds);
        var decoder = tokenizer.CreateIncrementalDecoder();
        foreach (var id in promptIds)
        {
            decoder.Append(id);
        }

        return decoder;
    }

    /// <summary>
    /// Ids of <paramref name="text"/> with the tokenizer's special tokens (BOS), unless the text already starts
    /// with the BOS token's text: chat templates of models that want BOS write it themselves, and a second one
    /// would change the model's output.
    /// </summary>
    public static IReadOnlyList<int> EncodePrompt(this ITextTokenizer tokenizer, string text)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        bool templateWroteBos = tokenizer.BosId >= 0 && text.StartsWith(tokenizer.IdToToken(tokenizer.BosId), StringComparison.Ordinal);
        return tokenizer.Encode(text, !templateWroteBos);
    }
}

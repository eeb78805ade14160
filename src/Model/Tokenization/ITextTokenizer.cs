namespace ActorRing.Model.Tokenization;

/// <summary>
/// A tokenizer as the serving path needs it: text to ids for prompts, ids to text for completions
/// (whole or streamed), and the ids that start and end a sequence.
/// The implementations here keep no per-call state in the tokenizer, so one instance can serve many requests;
/// each request gets its own <see cref="IncrementalDecoder"/>.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Number of ids the tokenizer can produce (the highest id + 1, added tokens included).</summary>
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or -1 when the tokenizer has none (Qwen2 style).</summary>
    int BosId { get; }

    /// <summary>Primary end-of-sequence id, or -1 when none is known.</summary>
    int EosId { get; }

    /// <summary>
    /// Every id that ends generation (e.g. Llama 3 Instruct ends on both &lt;|end_of_text|&gt; and &lt;|eot_id|&gt;).
    /// Contains <see cref="EosId"/> when it is not -1.
    /// </summary>
    IReadOnlyCollection<int> EosIds { get; }

    /// <summary>Encodes text. With <paramref name="addBos"/> the tokenizer's own special tokens are added, as
    /// transformers' <c>add_special_tokens=True</c> and llama.cpp's <c>add_special</c> do: BOS when the tokenizer
    /// has one and its model's files ask for it (<c>add_bos_token</c>), and EOS where they ask for that.</summary>
    IReadOnlyList<int> Encode(string text, bool addBos);

    /// <summary>
    /// Decodes ids to text. Special/control tokens (BOS, EOS, added special tokens) produce no text.
    /// The result equals the concatenation of an <see cref="IncrementalDecoder"/>'s output for the same ids.
    /// </summary>
    string Decode(IReadOnlyList<int> ids);

    /// <summary>True for control tokens that <see cref="Decode"/> renders as nothing.</summary>
    bool IsSpecial(int id);

    /// <summary>The vocabulary's own spelling of a token (e.g. "▁Once", "&lt;0x0A&gt;", "Ġthe"), for diagnostics.</summary>
    string IdToToken(int id);

    /// <summary>
    /// The bytes a token adds to the decoded text in mid-sequence (the rules about a leading space at the start of
    /// the text aside): UTF-8, or a part of a character for byte tokens. Empty for special tokens.
    /// </summary>
    byte[] TokenBytes(int id);

    /// <summary>A fresh streaming decoder, positioned at the start of a sequence.</summary>
    IncrementalDecoder CreateIncrementalDecoder();
}

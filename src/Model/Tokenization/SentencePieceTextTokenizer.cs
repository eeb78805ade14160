using System.Text;
using Microsoft.ML.Tokenizers;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// A SentencePiece BPE <c>tokenizer.model</c> (Llama 1/2, Mistral, TinyLlama, stories*): encoding is done by
/// Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/>; decoding goes through a per-id byte table built from its
/// vocabulary ("▁" → space, &lt;0xNN&gt; → raw byte), so streamed and whole decodes agree byte for byte.
/// </summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly TokenByteTable _table;
    private readonly AddedTokenMatcher _controlTokens;

    private SentencePieceTextTokenizer(LlamaTokenizer tokenizer, string nameForErrors, IEnumerable<int>? extraEosIds)
    {
        _tokenizer = tokenizer;
        var vocab = tokenizer.Vocabulary;
        var size = 0;
        foreach (var (_, id) in vocab)
        {
            size = Math.Max(size, id + 1);
        }

        var spelling = new string?[size];
        foreach (var (piece, id) in vocab)
        {
            spelling[id] ??= piece;
        }

        var bytes = new byte[size][];
        var special = new bool[size];
        var isByte = new bool[size];
        var controlIds = new HashSet<int> { tokenizer.BeginningOfSentenceId, tokenizer.EndOfSentenceId };
        var splitIds = new HashSet<int> { tokenizer.BeginningOfSentenceId, tokenizer.EndOfSentenceId, tokenizer.UnknownId };
        if (tokenizer.SpecialTokens is { } specials)
        {
            foreach (var (_, id) in specials)
            {
                controlIds.Add(id);
            }
        }

        for (var id = 0; id < size; id++)
        {
            var piece = spelling[id];
            if (piece is null)
            {
                throw new TokenizerFormatException($"SentencePiece model '{nameForErrors}' has no piece for id {id} (ids must be dense 0..{size - 1})");
            }

            if (controlIds.Contains(id))
            {
                special[id] = true;
                bytes[id] = [];
            }
            else if (tokenizer.ByteFallback && Llama2cTokenizer.TryParseByteToken(piece, out var b))
            {
                isByte[id] = true;
                bytes[id] = [b];
            }
            else if (id == tokenizer.UnknownId)
            {
                // SentencePiece renders <unk> as " ⁇ " so that unknown input stays visible in the output.
                bytes[id] = Encoding.UTF8.GetBytes(" \u2047 ");
            }
            else
            {
                bytes[id] = Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' '));
            }
        }

        // transformers splits control tokens written in the text ("<s>", "</s>") out before SentencePiece sees it.
        _controlTokens = new AddedTokenMatcher([.. splitIds.Union(controlIds).Where(id => id >= 0 && id < size && spelling[id]!.Length > 0)
            .Select(id => new AddedTokenMatcher.Token(spelling[id]!, id, Special: true, LStrip: false, RStrip: false, SingleWord: false))]);
        _table = new TokenByteTable(bytes, special, isByte, spelling!, tokenizer.BeginningOfSentenceId,
            tokenizer.AddDummyPrefix ? LeadingSpace.DropAfterBos : LeadingSpace.Keep);
        EosIds = [.. new SortedSet<int>((extraEosIds ?? []).Where(id => id >= 0 && id < size).Append(tokenizer.EndOfSentenceId))];
    }

    public int VocabSize => _table.Count;

    public int BosId => _tokenizer.BeginningOfSentenceId;

    public int EosId => _tokenizer.EndOfSentenceId;

    public IReadOnlyCollection<int> EosIds { get; }

    /// <summary>Loads a SentencePiece model file; a file that is not a SentencePiece BPE model gives a <see cref="TokenizerFormatException"/>.</summary>
    /// <param name="extraEosIds">Further ids that end generation (config.json's eos_token_id).</param>
    public static SentencePieceTextTokenizer Load(string path, IEnumerable<int>? extraEosIds = null)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return FromStream(stream, path, extraEosIds);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"cannot read SentencePiece model '{path}': {e.Message}", e);
        }
    }

    public static SentencePieceTextTokenizer FromStream(Stream stream, string nameForErrors, IEnumerable<int>? extraEosIds = null)
    {
        LlamaTokenizer tokenizer;
        try
        {
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The library reports protobuf or model-type problems without naming the file.
            throw new TokenizerFormatException($"'{nameForErrors}' is not a usable SentencePiece BPE model: {e.Message}", e);
        }

        return new SentencePieceTextTokenizer(tokenizer, nameForErrors, extraEosIds);
    }

    /// <summary>Encodes text; control tokens written in it ("&lt;s&gt;", "&lt;/s&gt;", "&lt;unk&gt;") become their ids, as in transformers.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addBos)
        {
            ids.Add(BosId);
        }

        var start = 0;
        foreach (var (at, length, id) in _controlTokens.Find(text))
        {
            EncodeSegment(text[start..at], ids);
            ids.Add(id);
            start = at + length;
        }

        EncodeSegment(text[start..], ids);
        return ids;
    }

    private void EncodeSegment(string text, List<int> ids)
    {
        if (text.Length == 0)
        {
            // The library returns no ids at all for empty text; a BOS-only prompt is how unconditional generation
            // (llama2.c's default) starts, and the caller has added BOS already.
            return;
        }

        // Microsoft.ML.Tokenizers 2.0.1's SentencePiece normalizer returns an empty string for some short inputs
        // ("x", "a", " x"), which silently encodes to no ids at all. Its normalization for these models is only the
        // dummy prefix plus escaping spaces as U+2581, so we do exactly that and let the library run the BPE.
        string normalized = _tokenizer.EscapeWhiteSpaces ? text.Replace(' ', '\u2581') : text;
        if (_tokenizer.AddDummyPrefix)
        {
            normalized = _tokenizer.TreatWhitespaceAsSuffix ? normalized + "\u2581" : "\u2581" + normalized;
        }

        ids.AddRange(_tokenizer.EncodeToIds(normalized, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: true, considerNormalization: false));
    }

    public string Decode(IReadOnlyList<int> ids) => _table.Decode(ids);

    public bool IsSpecial(int id) => _table.IsSpecial(id);

    public string IdToToken(int id) => _table.Spelling(id);

    public byte[] TokenBytes(int id) => _table.BytesFor(id, previousId: -1, atTextStart: false).ToArray();

    public IncrementalDecoder CreateIncrementalDecoder() => new(_table);
}

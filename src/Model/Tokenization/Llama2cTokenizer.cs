using System.Text;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// The llama2.c tokenizer file (tokenizer.bin / tok*.bin): int32 max_token_length, then per token a float32
/// score, an int32 byte length and the bytes. Pieces use a plain space where SentencePiece uses "▁", ids 0..2
/// are &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt; and byte-fallback tokens are spelled &lt;0xNN&gt;.
/// Encoding is llama2.c's: dummy-prefix space, one piece per code point (bytes as &lt;0xNN&gt; when the code
/// point has no piece), then repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece.
/// The same algorithm runs a GGUF file's SentencePiece vocabulary, with that file's conventions
/// (<see cref="SentencePieceConventions"/>).
/// </summary>
public sealed class Llama2cTokenizer : ITextTokenizer
{
    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _mergeable;
    private readonly int[] _byteIds = new int[256];
    private readonly TokenByteTable _table;
    private readonly bool[] _notMergeable;
    private readonly int _spaceId;
    private readonly int _unkId;
    private readonly bool _addDummyPrefix;
    private readonly bool _normalizeSpaceSymbol;
    private readonly AddedTokenMatcher? _whole;
    private readonly bool _addBos;

    private Llama2cTokenizer(string[] pieces, byte[][] pieceBytes, float[] scores, SentencePieceConventions? conventions = null)
    {
        _pieces = pieces;
        _scores = scores;
        var n = pieces.Length;
        var special = new bool[n];
        var isByte = new bool[n];
        var bytes = new byte[n][];

        // llama2.c's export writes <unk>, <s>, </s> first; they are control tokens, not text. A GGUF vocabulary
        // says which tokens are control tokens.
        for (var i = 0; i < n; i++)
        {
            special[i] = conventions is { } c ? c.Control[i] : i < 3;
        }

        BosId = conventions?.BosId ?? 1;
        _unkId = conventions?.UnkId ?? 0;
        _normalizeSpaceSymbol = conventions is not null;
        EosId = conventions?.EosId ?? 2;
        _addDummyPrefix = conventions?.AddDummyPrefix ?? true;
        _addBos = conventions?.AddBos ?? true;
        var whole = new HashSet<int>(conventions?.WholeTokens ?? []);
        var rstrip = new HashSet<int>(conventions?.RStripTokens ?? []);

        Array.Fill(_byteIds, -1);
        _mergeable = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            if (special[i])
            {
                bytes[i] = [];
                continue;
            }

            if (TryParseByteToken(pieces[i], out var b))
            {
                isByte[i] = true;
                bytes[i] = [b];
                if (_byteIds[b] < 0)
                {
                    _byteIds[b] = i;
                }

                continue;
            }

            bytes[i] = pieceBytes[i];

            // Byte and control tokens are kept out of the merge table on purpose: llama2.c looks merges up in the
            // whole vocabulary, so the literal text "<0x41>" could otherwise merge into the byte token for 'A'.
            // Tokens matched whole (SentencePiece's user-defined symbols) never come out of a merge either.
            if (!whole.Contains(i))
            {
                _mergeable.TryAdd(pieces[i], i);
            }
        }

        _notMergeable = new bool[n];
        for (var i = 0; i < n; i++)
        {
            _notMergeable[i] = special[i] || isByte[i] || whole.Contains(i);
        }

        _spaceId = _mergeable.GetValueOrDefault(" ", -1);
        _whole = whole.Count == 0 ? null
            : new AddedTokenMatcher(whole.Where(i => pieces[i].Length > 0)
                .Select(i => new AddedTokenMatcher.Token(pieces[i], i, special[i], LStrip: false, RStrip: rstrip.Contains(i), SingleWord: false)).ToArray());
        bool Valid(int id) => id >= 0 && id < n;
        // The dummy prefix's space is dropped when decoding: after BOS in llama2.c's way for its own files; from the
        // first text of any decode for a GGUF vocabulary, as llama.cpp's and Hugging Face's detokenizers do.
        _table = new TokenByteTable(bytes, special, isByte, pieces, bosId: Valid(BosId) ? BosId : -1,
            !_addDummyPrefix ? LeadingSpace.Keep : conventions is null ? LeadingSpace.DropAfterBos : LeadingSpace.DropAtStart);
        EosIds = (conventions?.EosIds ?? [EosId]).Where(Valid).Distinct().ToArray();
    }

    /// <summary>
    /// How a SentencePiece vocabulary in a GGUF file differs from llama2.c's fixed conventions: its BOS and EOS
    /// ids (Gemma's are 2 and 1), further ids that end a turn, whether a space is put before the text
    /// (<c>add_space_prefix</c>; Gemma puts none), which tokens are control tokens, and which are matched whole
    /// in the text before any merge (control and user-defined tokens, as llama.cpp does for a chat prompt), and
    /// which of those swallow the whitespace after them (Phi-3's chat tokens), and whether a prompt begins with BOS
    /// (<c>add_bos_token</c>).
    /// </summary>
    internal sealed record SentencePieceConventions(int BosId, int EosId, IReadOnlyList<int> EosIds, int UnkId, bool AddDummyPrefix,
        bool[] Control, IReadOnlyList<int> WholeTokens, IReadOnlyList<int>? RStripTokens = null, bool AddBos = true);

    /// <summary>A SentencePiece vocabulary given piece by piece (spaces as ' '), with its conventions.</summary>
    internal static Llama2cTokenizer FromPieces(string[] pieces, float[] scores, SentencePieceConventions conventions) =>
        new(pieces, pieces.Select(p => Encoding.UTF8.GetBytes(p)).ToArray(), scores, conventions);

    public int VocabSize => _pieces.Length;

    public int BosId { get; }

    public int EosId { get; }

    public IReadOnlyCollection<int> EosIds { get; }

    /// <summary>Reads a llama2.c tokenizer file. The vocabulary size is not stored in the file, so it is read to the end.</summary>
    public static Llama2cTokenizer Load(string path)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"cannot read llama2.c tokenizer '{path}': {e.Message}", e);
        }

        return Parse(data, path);
    }

    internal static Llama2cTokenizer Parse(ReadOnlySpan<byte> data, string nameForErrors)
    {
        if (data.Length < 4)
        {
            throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}' is {data.Length} bytes long; it must start with an int32 max_token_length");
        }

        var maxLen = BitConverter.ToInt32(data[..4]);
        if (maxLen <= 0 || maxLen > 1 << 16)
        {
            throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}' has max_token_length {maxLen}; expected 1..65536 (is this really a tokenizer.bin?)");
        }

        var pieces = new List<string>();
        var bytes = new List<byte[]>();
        var scores = new List<float>();
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: false);
        var offset = 4;
        while (offset < data.Length)
        {
            if (data.Length - offset < 8)
            {
                throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}' is truncated in the header of token {pieces.Count} at byte {offset}");
            }

            var score = BitConverter.ToSingle(data.Slice(offset, 4));
            var len = BitConverter.ToInt32(data.Slice(offset + 4, 4));
            offset += 8;
            if (len < 0 || len > maxLen || len > data.Length - offset)
            {
                throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}': token {pieces.Count} has length {len} at byte {offset - 4} (max_token_length {maxLen}, {data.Length - offset} bytes left)");
            }

            if (!float.IsFinite(score))
            {
                throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}': token {pieces.Count} has score {score}");
            }

            var piece = data.Slice(offset, len).ToArray();
            offset += len;
            bytes.Add(piece);
            pieces.Add(utf8.GetString(piece));
            scores.Add(score);
        }

        if (pieces.Count < 3 + 256)
        {
            throw new TokenizerFormatException($"llama2.c tokenizer '{nameForErrors}' holds {pieces.Count} tokens; a llama2.c vocabulary has at least 259 (3 control + 256 byte tokens)");
        }

        return new Llama2cTokenizer(pieces.ToArray(), bytes.ToArray(), scores.ToArray());
    }

    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<int>(text.Length + 2);
        if (addBos && _addBos && BosId >= 0)
        {
            tokens.Add(BosId);
        }

        if (text.Length == 0)
        {
            return tokens;
        }

        // SentencePiece writes the space as '▁' before it merges, so a '▁' in the text is a space too (a GGUF
        // vocabulary's pieces are held with ' '); llama2.c's own files take the text as it is.
        if (_normalizeSpaceSymbol)
        {
            text = text.Replace('\u2581', ' ');
        }

        if (_whole is null)
        {
            EncodeText(text, tokens);
            return tokens;
        }

        // Tokens matched whole split the text; each piece between them is merged on its own (and, as llama.cpp
        // does, gets the dummy prefix: a piece follows either the start or a token matched whole).
        var at = 0;
        foreach (var (start, length, id) in _whole.Find(text))
        {
            if (start > at)
            {
                EncodeText(text[at..start], tokens);
            }

            tokens.Add(id);
            at = start + length;
        }

        if (at < text.Length)
        {
            EncodeText(text[at..], tokens);
        }

        return tokens;
    }

    private void EncodeText(string text, List<int> tokens)
    {
        var start = tokens.Count;

        // SentencePiece's add_dummy_prefix: the text is treated as if preceded by a space, so "Once" at the start
        // tokenizes like " Once" in the middle of a sentence.
        if (_addDummyPrefix && _spaceId >= 0)
        {
            tokens.Add(_spaceId);
        }

        Span<byte> utf8 = stackalloc byte[4];
        for (var at = 0; at < text.Length;)
        {
            // A lone surrogate is not a character: its U+FFFD goes in as bytes, never as a "�" piece (as Hugging
            // Face's tokenizers do).
            var valid = System.Buffers.OperationStatus.Done == Rune.DecodeFromUtf16(text.AsSpan(at), out var rune, out var used);
            at += used;
            if (valid && _mergeable.TryGetValue(rune.ToString(), out var id))
            {
                tokens.Add(id);
                continue;
            }

            var n = rune.EncodeToUtf8(utf8);
            for (var i = 0; i < n; i++)
            {
                var byteId = _byteIds[utf8[i]];
                tokens.Add(byteId >= 0 ? byteId : _unkId);
            }
        }

        Merge(tokens, start);
    }

    // Greedy merge by score, as llama2.c does: each round merges the single best adjacent pair (first one on ties).
    // Scores of all pairs are cached so that a round only recomputes the two pairs next to the merge.
    private void Merge(List<int> tokens, int start)
    {
        var seq = tokens.GetRange(start, tokens.Count - start);
        var pairId = new List<int>(seq.Count);
        for (var i = 0; i + 1 < seq.Count; i++)
        {
            pairId.Add(Lookup(seq[i], seq[i + 1]));
        }

        while (true)
        {
            var best = -1;
            var bestScore = float.NegativeInfinity;
            for (var i = 0; i < pairId.Count; i++)
            {
                var id = pairId[i];
                if (id >= 0 && (best < 0 || _scores[id] > bestScore))
                {
                    best = i;
                    bestScore = _scores[id];
                }
            }

            if (best < 0)
            {
                break;
            }

            seq[best] = pairId[best];
            seq.RemoveAt(best + 1);
            pairId.RemoveAt(best);
            if (best > 0)
            {
                pairId[best - 1] = Lookup(seq[best - 1], seq[best]);
            }

            if (best < pairId.Count)
            {
                pairId[best] = Lookup(seq[best], seq[best + 1]);
            }
        }

        tokens.RemoveRange(start, tokens.Count - start);
        tokens.AddRange(seq);
    }

    private int Lookup(int left, int right)
    {
        if (_notMergeable[left] || _notMergeable[right])
        {
            return -1;
        }

        return _mergeable.GetValueOrDefault(_pieces[left] + _pieces[right], -1);
    }

    public string Decode(IReadOnlyList<int> ids) => _table.Decode(ids);

    public bool IsSpecial(int id) => _table.IsSpecial(id);

    public string IdToToken(int id) => _table.Spelling(id);

    public byte[] TokenBytes(int id) => _table.BytesFor(id, previousId: -1, atTextStart: false).ToArray();

    public IncrementalDecoder CreateIncrementalDecoder() => new(_table);

    internal static bool TryParseByteToken(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }
}

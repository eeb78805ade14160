using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// Hugging Face <c>tokenizer.json</c> with a byte-level BPE model (GPT-2, Llama 3, Qwen2): added tokens are cut out
/// first, the rest is normalized (NFC or none), split by the pre-tokenizer regex, each piece's UTF-8 bytes are
/// mapped to GPT-2's printable byte alphabet, and BPE merges are applied by rank.
/// </summary>
public sealed class ByteLevelBpeTokenizer : ITextTokenizer
{
    // GPT-2's pre-tokenizer, used by a ByteLevel pre-tokenizer with use_regex=true.
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    private readonly string _name;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<(string, string), int> _mergeRanks;
    private readonly bool _ignoreMerges;
    private readonly int _unkId;
    private readonly List<Regex> _splits;
    private readonly bool _addPrefixSpace;
    private readonly bool _nfc;
    private readonly Dictionary<char, List<(string Content, int Id)>> _addedByFirstChar = new();
    private readonly TokenByteTable _table;
    private readonly int[] _eosIds;

    private ByteLevelBpeTokenizer(string name, JsonElement root, JsonElement? tokenizerConfig, IEnumerable<int>? extraEosIds)
    {
        _name = name;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
        {
            throw Error("has no \"model\" object");
        }

        var type = model.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
        if (type != "BPE")
        {
            throw Error($"has model.type \"{type}\"; only \"BPE\" is supported");
        }

        if (!IsByteLevel(root))
        {
            throw Error("is a BPE tokenizer without a ByteLevel pre-tokenizer or decoder (a SentencePiece model converted to JSON); load the directory's tokenizer.model instead");
        }

        _vocab = ReadVocab(model);
        _mergeRanks = ReadMerges(model);
        _ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        _unkId = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String
            ? _vocab.GetValueOrDefault(unk.GetString()!, -1) : -1;
        _nfc = ReadNormalizer(root);
        (_splits, _addPrefixSpace) = ReadPreTokenizer(root);

        // Added tokens may reuse model ids or extend past them.
        var added = new List<(string Content, int Id, bool Special)>();
        if (root.TryGetProperty("added_tokens", out var addedJson) && addedJson.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in addedJson.EnumerateArray())
            {
                var content = a.TryGetProperty("content", out var c) ? c.GetString() : null;
                if (string.IsNullOrEmpty(content) || !a.TryGetProperty("id", out var idJson) || !idJson.TryGetInt32(out var id) || id < 0)
                {
                    throw Error($"has an added_tokens entry without a non-empty content and a non-negative id: {a.GetRawText()}");
                }

                var special = a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                added.Add((content, id, special));
                if (!_addedByFirstChar.TryGetValue(content[0], out var list))
                {
                    _addedByFirstChar[content[0]] = list = [];
                }

                list.Add((content, id));
            }
        }

        // Longest first, so "<|end|>" never shadows "<|end_of_text|>" at the same position.
        foreach (var list in _addedByFirstChar.Values)
        {
            list.Sort((a, b) => b.Content.Length.CompareTo(a.Content.Length));
        }

        var size = 0;
        foreach (var id in _vocab.Values)
        {
            size = Math.Max(size, id + 1);
        }

        foreach (var a in added)
        {
            size = Math.Max(size, a.Id + 1);
        }

        var bytes = new byte[size][];
        var spelling = new string[size];
        var specialFlags = new bool[size];
        var isByte = new bool[size];
        for (var i = 0; i < size; i++)
        {
            // Ids with no token at all (gaps) render as nothing rather than failing a whole decode.
            bytes[i] = [];
            spelling[i] = "";
            specialFlags[i] = true;
        }

        foreach (var (token, id) in _vocab)
        {
            bytes[id] = UnmapBytes(token);
            spelling[id] = token;
            specialFlags[id] = false;
        }

        foreach (var a in added)
        {
            // Added tokens are stored as plain text, not in the byte alphabet.
            bytes[a.Id] = a.Special ? [] : Encoding.UTF8.GetBytes(a.Content);
            spelling[a.Id] = a.Content;
            specialFlags[a.Id] = a.Special;
        }

        BosId = FindBos(root, tokenizerConfig);
        var eosId = FindTokenId(tokenizerConfig, "eos_token");
        if (eosId < 0)
        {
            // Without tokenizer_config.json, fall back to the end-of-text spellings of the families we serve.
            foreach (var candidate in new[] { "<|end_of_text|>", "<|endoftext|>", "</s>" })
            {
                if (TryAddedOrVocab(candidate, out eosId))
                {
                    break;
                }

                eosId = -1;
            }
        }

        EosId = eosId;
        var eos = new SortedSet<int>();
        if (EosId >= 0)
        {
            eos.Add(EosId);
        }

        foreach (var id in extraEosIds ?? [])
        {
            if (id >= 0 && id < size)
            {
                eos.Add(id);
            }
        }

        _eosIds = [.. eos];
        _table = new TokenByteTable(bytes, specialFlags, isByte, spelling, BosId, stripSpaceAfterBos: false);
    }

    public int VocabSize => _table.Count;

    public int BosId { get; }

    public int EosId { get; }

    public IReadOnlyCollection<int> EosIds => _eosIds;

    /// <summary>False when the runtime cannot normalize Unicode (InvariantGlobalization), so an NFC normalizer is a no-op.</summary>
    public static bool NfcSupported { get; } = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9";

    /// <param name="tokenizerJson">Contents of tokenizer.json.</param>
    /// <param name="nameForErrors">The file name, used in every error message.</param>
    /// <param name="tokenizerConfigJson">Optional tokenizer_config.json contents (bos_token / eos_token).</param>
    /// <param name="extraEosIds">Further ids that end generation (generation_config.json eos_token_id).</param>
    public static ByteLevelBpeTokenizer FromJson(string tokenizerJson, string nameForErrors, string? tokenizerConfigJson = null,
        IEnumerable<int>? extraEosIds = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        try
        {
            using var doc = JsonDocument.Parse(tokenizerJson);
            using var config = tokenizerConfigJson is null ? null : JsonDocument.Parse(tokenizerConfigJson);
            return new ByteLevelBpeTokenizer(nameForErrors, doc.RootElement, config?.RootElement, extraEosIds);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"tokenizer file '{nameForErrors}' is not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException)
        {
            // JsonElement accessors throw this when a field has the wrong JSON type.
            throw new TokenizerFormatException($"tokenizer file '{nameForErrors}' has a field of the wrong type: {e.Message}", e);
        }
    }

    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addBos && BosId >= 0)
        {
            ids.Add(BosId);
        }

        var segmentStart = 0;
        var i = 0;
        while (i < text.Length)
        {
            if (_addedByFirstChar.TryGetValue(text[i], out var candidates))
            {
                var matched = false;
                foreach (var (content, id) in candidates)
                {
                    if (string.CompareOrdinal(text, i, content, 0, content.Length) == 0)
                    {
                        EncodeSegment(text.AsSpan(segmentStart, i - segmentStart), ids);
                        ids.Add(id);
                        i += content.Length;
                        segmentStart = i;
                        matched = true;
                        break;
                    }
                }

                if (matched)
                {
                    continue;
                }
            }

            i++;
        }

        EncodeSegment(text.AsSpan(segmentStart), ids);
        return ids;
    }

    public string Decode(IReadOnlyList<int> ids) => _table.Decode(ids);

    public bool IsSpecial(int id) => _table.IsSpecial(id);

    public string IdToToken(int id) => _table.Spelling(id);

    public IncrementalDecoder CreateIncrementalDecoder() => new(_table);

    private void EncodeSegment(ReadOnlySpan<char> segment, List<int> ids)
    {
        if (segment.IsEmpty)
        {
            return;
        }

        var text = segment.ToString();
        // Under InvariantGlobalization (set for the whole solution) .NET has no Unicode tables and Normalize
        // returns its input unchanged, so only text that is already NFC, which is almost all text, matches
        // Hugging Face exactly. With ICU available this composes as the tokenizer expects.
        if (_nfc)
        {
            text = text.Normalize(NormalizationForm.FormC);
        }

        if (_addPrefixSpace && text[0] != ' ')
        {
            text = " " + text;
        }

        var pieces = new List<string> { text };
        foreach (var regex in _splits)
        {
            var next = new List<string>();
            foreach (var p in pieces)
            {
                SplitIsolated(regex, p, next);
            }

            pieces = next;
        }

        foreach (var piece in pieces)
        {
            var utf8 = Encoding.UTF8.GetBytes(piece);
            var mapped = new char[utf8.Length];
            for (var k = 0; k < utf8.Length; k++)
            {
                mapped[k] = ByteToChar[utf8[k]];
            }

            Bpe(new string(mapped), ids);
        }
    }

    // "Isolated" split: every match is its own piece and so is every gap between matches.
    private static void SplitIsolated(Regex regex, string text, List<string> output)
    {
        var last = 0;
        for (var m = regex.Match(text); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0)
            {
                continue;
            }

            if (m.Index > last)
            {
                output.Add(text[last..m.Index]);
            }

            output.Add(m.Value);
            last = m.Index + m.Length;
        }

        if (last < text.Length)
        {
            output.Add(text[last..]);
        }
    }

    private void Bpe(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole))
        {
            ids.Add(whole);
            return;
        }

        var symbols = new List<string>(word.Length);
        foreach (var c in word)
        {
            symbols.Add(c.ToString());
        }

        // Each round merges every occurrence (left to right) of the lowest-ranked adjacent pair.
        while (symbols.Count > 1)
        {
            var bestRank = int.MaxValue;
            (string, string) bestPair = default;
            for (var k = 0; k + 1 < symbols.Count; k++)
            {
                if (_mergeRanks.TryGetValue((symbols[k], symbols[k + 1]), out var rank) && rank < bestRank)
                {
                    bestRank = rank;
                    bestPair = (symbols[k], symbols[k + 1]);
                }
            }

            if (bestRank == int.MaxValue)
            {
                break;
            }

            var merged = new List<string>(symbols.Count);
            for (var k = 0; k < symbols.Count; k++)
            {
                if (k + 1 < symbols.Count && symbols[k] == bestPair.Item1 && symbols[k + 1] == bestPair.Item2)
                {
                    merged.Add(bestPair.Item1 + bestPair.Item2);
                    k++;
                }
                else
                {
                    merged.Add(symbols[k]);
                }
            }

            symbols = merged;
        }

        foreach (var s in symbols)
        {
            if (_vocab.TryGetValue(s, out var id))
            {
                ids.Add(id);
            }
            else if (_unkId >= 0)
            {
                ids.Add(_unkId);
            }
            else
            {
                throw new TokenizerFormatException($"tokenizer file '{_name}' has no vocabulary entry for the byte-level symbol \"{s}\" and no unk_token; a byte-level vocabulary must contain all 256 byte symbols");
            }
        }
    }

    private static bool IsByteLevel(JsonElement root)
    {
        static bool Has(JsonElement e, string type)
        {
            if (e.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            if (e.TryGetProperty("type", out var t) && t.GetString() == type)
            {
                return true;
            }

            foreach (var listName in new[] { "pretokenizers", "decoders" })
            {
                if (e.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array
                    && list.EnumerateArray().Any(x => Has(x, type)))
                {
                    return true;
                }
            }

            return false;
        }

        return (root.TryGetProperty("pre_tokenizer", out var pre) && Has(pre, "ByteLevel"))
            || (root.TryGetProperty("decoder", out var dec) && Has(dec, "ByteLevel"));
    }

    private Dictionary<string, int> ReadVocab(JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out var vocabJson) || vocabJson.ValueKind != JsonValueKind.Object)
        {
            throw Error("has no model.vocab object");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabJson.EnumerateObject())
        {
            if (!p.Value.TryGetInt32(out var id) || id < 0)
            {
                throw Error($"has model.vocab entry \"{p.Name}\" with id {p.Value.GetRawText()}; ids must be non-negative integers");
            }

            vocab[p.Name] = id;
        }

        return vocab;
    }

    private Dictionary<(string, string), int> ReadMerges(JsonElement model)
    {
        var ranks = new Dictionary<(string, string), int>();
        if (!model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array)
        {
            throw Error("has no model.merges array");
        }

        var rank = 0;
        foreach (var m in merges.EnumerateArray())
        {
            string? a = null, b = null;

            // Older files write "a b"; newer ones write ["a", "b"] so that symbols may contain spaces.
            if (m.ValueKind == JsonValueKind.String)
            {
                var s = m.GetString()!;
                var space = s.IndexOf(' ', 1);
                if (space > 0)
                {
                    a = s[..space];
                    b = s[(space + 1)..];
                }
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
            {
                a = m[0].GetString();
                b = m[1].GetString();
            }

            if (string.IsNullOrEmpty(a) || string.IsNullOrEmpty(b))
            {
                throw Error($"has malformed merge #{rank}: {m.GetRawText()} (expected \"a b\" or [\"a\", \"b\"])");
            }

            ranks.TryAdd((a, b), rank);
            rank++;
        }

        return ranks;
    }

    private bool ReadNormalizer(JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null)
        {
            return false;
        }

        var nfc = false;
        void Visit(JsonElement e)
        {
            var type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
            switch (type)
            {
                case "NFC":
                    nfc = true;
                    break;
                case "Sequence":
                    foreach (var x in e.GetProperty("normalizers").EnumerateArray())
                    {
                        Visit(x);
                    }

                    break;
                default:
                    throw Error($"uses normalizer \"{type}\"; only NFC (or none) is supported for byte-level BPE");
            }
        }

        Visit(n);
        return nfc;
    }

    private (List<Regex>, bool) ReadPreTokenizer(JsonElement root)
    {
        var splits = new List<Regex>();
        var addPrefixSpace = false;
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind == JsonValueKind.Null)
        {
            return (splits, addPrefixSpace);
        }

        void Visit(JsonElement e)
        {
            var type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
            switch (type)
            {
                case "Sequence":
                    foreach (var x in e.GetProperty("pretokenizers").EnumerateArray())
                    {
                        Visit(x);
                    }

                    break;
                case "ByteLevel":
                    addPrefixSpace |= e.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True;
                    var useRegex = !e.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False;
                    if (useRegex)
                    {
                        splits.Add(MakeRegex(Gpt2Pattern));
                    }

                    break;
                case "Split":
                    var behavior = e.TryGetProperty("behavior", out var bh) ? bh.GetString() : "Isolated";
                    var invert = e.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True;
                    if (behavior != "Isolated" || invert)
                    {
                        throw Error($"uses a Split pre-tokenizer with behavior \"{behavior}\"{(invert ? " and invert" : "")}; only Isolated without invert is supported");
                    }

                    var pattern = e.GetProperty("pattern");
                    if (pattern.TryGetProperty("Regex", out var rx))
                    {
                        splits.Add(MakeRegex(rx.GetString()!));
                    }
                    else if (pattern.TryGetProperty("String", out var str))
                    {
                        splits.Add(MakeRegex(Regex.Escape(str.GetString()!)));
                    }
                    else
                    {
                        throw Error($"has a Split pre-tokenizer without a Regex or String pattern: {pattern.GetRawText()}");
                    }

                    break;
                default:
                    throw Error($"uses pre-tokenizer \"{type}\"; supported are ByteLevel, Split (Isolated) and Sequence");
            }
        }

        Visit(pre);
        return (splits, addPrefixSpace);
    }

    private Regex MakeRegex(string pattern)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw Error($"has a pre-tokenizer regex that .NET cannot compile ({e.Message}): {pattern}");
        }
    }

    private int FindBos(JsonElement root, JsonElement? tokenizerConfig)
    {
        var fromConfig = FindTokenId(tokenizerConfig, "bos_token");
        if (fromConfig >= 0)
        {
            return fromConfig;
        }

        // Llama 3 declares its BOS only in the post-processor template: single = [<|begin_of_text|>, $A].
        if (root.TryGetProperty("post_processor", out var post) && post.ValueKind == JsonValueKind.Object)
        {
            var templates = new List<JsonElement>();
            if (post.TryGetProperty("processors", out var procs) && procs.ValueKind == JsonValueKind.Array)
            {
                templates.AddRange(procs.EnumerateArray());
            }
            else
            {
                templates.Add(post);
            }

            foreach (var p in templates)
            {
                if (p.TryGetProperty("type", out var ty) && ty.GetString() == "TemplateProcessing"
                    && p.TryGetProperty("single", out var single) && single.ValueKind == JsonValueKind.Array
                    && single.GetArrayLength() > 0 && single[0].TryGetProperty("SpecialToken", out var st)
                    && TryAddedOrVocab(st.GetProperty("id").GetString()!, out var id))
                {
                    return id;
                }
            }
        }

        return -1;
    }

    private int FindTokenId(JsonElement? config, string field)
    {
        if (config is not { } c || !c.TryGetProperty(field, out var v))
        {
            return -1;
        }

        var content = v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var ct) => ct.GetString(),
            _ => null,
        };
        if (content is null)
        {
            return -1;
        }

        return TryAddedOrVocab(content, out var id)
            ? id
            : throw Error($"names {field} \"{content}\" in tokenizer_config.json, but no such token exists");
    }

    private bool TryAddedOrVocab(string content, out int id)
    {
        if (content.Length > 0 && _addedByFirstChar.TryGetValue(content[0], out var list))
        {
            foreach (var (c, i) in list)
            {
                if (c == content)
                {
                    id = i;
                    return true;
                }
            }
        }

        return _vocab.TryGetValue(content, out id);
    }

    private static byte[] UnmapBytes(string token)
    {
        var result = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out result[i]))
            {
                // Not in the byte alphabet: the token is stored as plain text.
                return Encoding.UTF8.GetBytes(token);
            }
        }

        return result;
    }

    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted to
    // U+0100.. so that every byte has a visible, non-whitespace character and BPE never sees raw spaces.
    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)next++;
        }

        return map;
    }

    private static Dictionary<char, byte> BuildCharToByte()
    {
        var inverse = new Dictionary<char, byte>(256);
        for (var b = 0; b < 256; b++)
        {
            inverse[ByteToChar[b]] = (byte)b;
        }

        return inverse;
    }

    private TokenizerFormatException Error(string what) => new($"tokenizer file '{_name}' {what}");

    /// <summary>
    /// True when the JSON describes a byte-level BPE; false for other tokenizer.json kinds (e.g. Llama 2's
    /// SentencePiece-converted file), so the loader can prefer tokenizer.model for those.
    /// </summary>
    internal static bool IsByteLevelJson(string tokenizerJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(tokenizerJson);
            return doc.RootElement.ValueKind == JsonValueKind.Object && IsByteLevel(doc.RootElement);
        }
        catch (JsonException)
        {
            // Malformed JSON is reported with the file name by FromJson.
            return true;
        }
    }
}

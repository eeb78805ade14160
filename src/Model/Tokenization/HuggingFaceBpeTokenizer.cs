using System.Text;
using System.Text.Json;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model, run through the same pipeline as the Rust
/// <c>tokenizers</c> crate: added tokens are cut out of the raw text first (so "&lt;|eot_id|&gt;" written in a
/// prompt is one id), each remaining segment is normalized (NFC, Prepend "▁", Replace " " → "▁"), split by the
/// pre-tokenizers (Split regexes, Metaspace, ByteLevel), mapped to GPT-2's byte alphabet when the tokenizer is
/// byte-level, and merged by <see cref="BpeMerger"/>. Both kinds that models ship are covered:
/// byte-level BPE (GPT-2, Llama 3, Qwen2/3, DeepSeek V3) and SentencePiece-style BPE with byte_fallback
/// (Llama 2, Mistral, Gemma). Decoding follows the file's decoder (ByteLevel, or Replace/ByteFallback/Fuse/Strip).
/// </summary>
public sealed class HuggingFaceBpeTokenizer : ITextTokenizer
{
    // GPT-2's pre-tokenizer, used by a ByteLevel pre-tokenizer with use_regex=true.
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    private readonly string _name;
    private readonly Dictionary<string, int> _vocab;
    private readonly BpeMerger _model;
    private readonly List<Func<string, string>> _normalizers = [];
    private readonly List<PreTokenizerStep> _preTokenizers = [];
    private readonly bool _byteLevel;
    private readonly AddedTokenMatcher _added;
    private readonly TokenByteTable _table;
    private readonly int[] _eosIds;
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;

    private HuggingFaceBpeTokenizer(string name, JsonElement root, JsonElement? tokenizerConfig, IEnumerable<int>? extraEosIds)
    {
        _name = name;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
        {
            throw Error("has no \"model\" object");
        }

        var type = model.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
        if (type != "BPE")
        {
            throw Error($"has model.type \"{type}\"; only \"BPE\" is supported (Unigram and WordPiece tokenizers are not)");
        }

        foreach (var field in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (model.TryGetProperty(field, out var affix) && affix.ValueKind == JsonValueKind.String && affix.GetString()!.Length > 0)
            {
                throw Error($"has model.{field} \"{affix.GetString()}\"; only BPE without subword affixes is supported");
            }
        }

        if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
        {
            throw Error($"has model.dropout {dropout.GetRawText()}; BPE dropout is for training, set it to null");
        }

        _vocab = ReadVocab(model);
        var merges = ReadMerges(model);
        var ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        var byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
        var fuseUnk = model.TryGetProperty("fuse_unk", out var fu) && fu.ValueKind == JsonValueKind.True;
        var unkId = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String
            ? _vocab.GetValueOrDefault(unk.GetString()!, -1) : -1;
        int[]? byteIds = null;
        if (byteFallback)
        {
            byteIds = new int[256];
            for (var b = 0; b < 256; b++)
            {
                byteIds[b] = _vocab.GetValueOrDefault($"<0x{b:X2}>", -1);
            }
        }

        _byteLevel = HasComponent(root, "pre_tokenizer", "ByteLevel");
        ReadNormalizer(root);
        ReadPreTokenizer(root);
        _model = new BpeMerger(_vocab, merges, ignoreMerges, unkId, fuseUnk, byteIds);
        _added = new AddedTokenMatcher(ReadAddedTokens(root));

        var size = _vocab.Values.DefaultIfEmpty(-1).Max() + 1;
        foreach (var a in _added.Tokens)
        {
            size = Math.Max(size, a.Id + 1);
        }

        var decoder = new DecoderChain(root, Error);
        var bytes = new byte[size][];
        var spelling = new string[size];
        var special = new bool[size];
        var isByte = new bool[size];
        for (var i = 0; i < size; i++)
        {
            // Ids with no token at all (gaps) render as nothing rather than failing a whole decode.
            bytes[i] = [];
            spelling[i] = "";
            special[i] = true;
        }

        foreach (var (token, id) in _vocab)
        {
            spelling[id] = token;
            special[id] = false;
            bytes[id] = decoder.Bytes(token, out isByte[id]);
        }

        foreach (var a in _added.Tokens)
        {
            spelling[a.Id] = a.Content;
            special[a.Id] = a.Special;
            bytes[a.Id] = a.Special ? [] : decoder.Bytes(a.Content, out isByte[a.Id]);
        }

        BosId = FindTokenId(tokenizerConfig, "bos_token");
        var eosId = FindTokenId(tokenizerConfig, "eos_token");
        (var prefix, var suffix) = ReadPostProcessor(root);
        if (BosId < 0 && prefix.Count > 0)
        {
            // Llama 3 declares its BOS only in the post-processor template: single = [<|begin_of_text|>, $A].
            BosId = prefix[0];
        }

        if (eosId < 0)
        {
            // Without tokenizer_config.json, fall back to the end-of-text spellings of the families we serve.
            foreach (var candidate in new[] { "<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>" })
            {
                if (TryAddedOrVocab(candidate, out eosId))
                {
                    break;
                }

                eosId = -1;
            }
        }

        EosId = eosId;

        // transformers' Llama and Gemma tokenizers rebuild the post-processor from add_bos_token/add_eos_token
        // when the config sets them (DeepSeek V3's file has a bare ByteLevel post-processor but add_bos_token: true).
        if (ReadBool(tokenizerConfig, "add_bos_token") is { } addBos)
        {
            prefix = addBos && BosId >= 0 ? [BosId] : [];
        }

        if (ReadBool(tokenizerConfig, "add_eos_token") is { } addEos)
        {
            suffix = addEos && EosId >= 0 ? [EosId] : [];
        }

        _prefixIds = [.. prefix];
        _suffixIds = [.. suffix];

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
        _table = new TokenByteTable(bytes, special, isByte, spelling, BosId,
            decoder.StripsLeadingSpace ? LeadingSpace.DropAtStart : LeadingSpace.Keep);
    }

    public int VocabSize => _table.Count;

    public int BosId { get; }

    public int EosId { get; }

    public IReadOnlyCollection<int> EosIds => _eosIds;

    /// <summary>What <see cref="Encode"/> puts before the text when asked for special tokens (usually BOS, or nothing).</summary>
    public IReadOnlyList<int> PrefixIds => _prefixIds;

    /// <summary>What <see cref="Encode"/> puts after the text when asked for special tokens (EOS for add_eos_token models).</summary>
    public IReadOnlyList<int> SuffixIds => _suffixIds;

    /// <summary>True for byte-level BPE (GPT-2 alphabet), false for SentencePiece-style BPE.</summary>
    public bool IsByteLevel => _byteLevel;

    /// <summary>False when the runtime cannot normalize Unicode (InvariantGlobalization), so an NFC normalizer is a no-op.</summary>
    public static bool NfcSupported { get; } = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9";

    /// <param name="tokenizerJson">Contents of tokenizer.json.</param>
    /// <param name="nameForErrors">The file name, used in every error message.</param>
    /// <param name="tokenizerConfigJson">Optional tokenizer_config.json contents (bos_token, eos_token, add_bos_token, add_eos_token).</param>
    /// <param name="extraEosIds">Further ids that end generation (config.json's eos_token_id).</param>
    public static HuggingFaceBpeTokenizer FromJson(string tokenizerJson, string nameForErrors, string? tokenizerConfigJson = null,
        IEnumerable<int>? extraEosIds = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(tokenizerJson);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"tokenizer file '{nameForErrors}' is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            return FromDocument(doc.RootElement, nameForErrors, tokenizerConfigJson, extraEosIds);
        }
    }

    internal static HuggingFaceBpeTokenizer FromDocument(JsonElement root, string nameForErrors, string? tokenizerConfigJson,
        IEnumerable<int>? extraEosIds)
    {
        JsonDocument? config = null;
        try
        {
            config = tokenizerConfigJson is null ? null : JsonDocument.Parse(tokenizerConfigJson);
            return new HuggingFaceBpeTokenizer(nameForErrors, root, config?.RootElement, extraEosIds);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"tokenizer_config.json next to '{nameForErrors}' is not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            // JsonElement accessors throw these when a field has the wrong JSON type.
            throw new TokenizerFormatException($"tokenizer file '{nameForErrors}' has a field of the wrong type: {e.Message}", e);
        }
        finally
        {
            config?.Dispose();
        }
    }

    /// <summary>
    /// Encodes text. With <paramref name="addBos"/> the special tokens of the post-processor are added, as
    /// transformers' <c>add_special_tokens=True</c> does: BOS for Llama, Mistral, Gemma; nothing for Qwen; EOS
    /// too when tokenizer_config.json sets add_eos_token.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addBos)
        {
            ids.AddRange(_prefixIds);
        }

        var segmentStart = 0;
        foreach (var match in _added.Find(text))
        {
            EncodeSegment(text, segmentStart, match.Start - segmentStart, ids);
            ids.Add(match.Id);
            segmentStart = match.Start + match.Length;
        }

        EncodeSegment(text, segmentStart, text.Length - segmentStart, ids);
        if (addBos)
        {
            ids.AddRange(_suffixIds);
        }

        return ids;
    }

    public string Decode(IReadOnlyList<int> ids) => _table.Decode(ids);

    public bool IsSpecial(int id) => _table.IsSpecial(id);

    public string IdToToken(int id) => _table.Spelling(id);

    public byte[] TokenBytes(int id) => _table.BytesFor(id, previousId: -1, atTextStart: false).ToArray();

    public IncrementalDecoder CreateIncrementalDecoder() => new(_table);

    private void EncodeSegment(string source, int start, int length, List<int> ids)
    {
        if (length <= 0)
        {
            return;
        }

        var text = source.Substring(start, length);
        foreach (var normalize in _normalizers)
        {
            text = normalize(text);
        }

        if (text.Length == 0)
        {
            return;
        }

        var pieces = new List<TextPiece> { new(text, start == 0) };
        var next = new List<TextPiece>();
        foreach (var step in _preTokenizers)
        {
            next.Clear();
            foreach (var p in pieces)
            {
                step.Apply(p, next);
            }

            (pieces, next) = (next, pieces);
        }

        foreach (var piece in pieces)
        {
            if (!_byteLevel)
            {
                _model.Encode(piece.Text, ids, _name);
                continue;
            }

            EncodeByteLevel(piece.Text, ids);
        }
    }

    private void EncodeByteLevel(string piece, List<int> ids)
    {
        // Lone surrogates become U+FFFD's three bytes, as in every UTF-8 encoder a reference implementation uses.
        var max = Encoding.UTF8.GetMaxByteCount(piece.Length);
        Span<byte> utf8 = max <= 1024 ? stackalloc byte[max] : new byte[max];
        var count = Encoding.UTF8.GetBytes(piece, utf8);
        Span<char> mapped = count <= 1024 ? stackalloc char[count] : new char[count];
        for (var k = 0; k < count; k++)
        {
            mapped[k] = ByteToChar[utf8[k]];
        }

        _model.Encode(mapped, ids, _name);
    }

    /// <summary>Unicode normalization that leaves lone surrogates in place (.NET refuses them; JavaScript and the
    /// byte-level encoders here turn them into U+FFFD later).</summary>
    private static string Normalize(string text, NormalizationForm form)
    {
        var lone = -1;
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                lone = i;
                break;
            }
        }

        if (lone < 0)
        {
            // Below U+0300 every character is stable under all four forms except the compatibility ones (NFKC/NFKD
            // rewrite ª, ², ½ …), and nothing there combines; most prompts end here without calling ICU.
            var limit = form is NormalizationForm.FormC or NormalizationForm.FormD ? '\u0300' : '\u00A0';
            return text.AsSpan().ContainsAnyExceptInRange('\0', (char)(limit - 1)) ? text.Normalize(form) : text;
        }

        return Normalize(text[..lone], form) + text[lone] + Normalize(text[(lone + 1)..], form);
    }

    private static bool HasComponent(JsonElement root, string property, string type)
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

            foreach (var listName in new[] { "pretokenizers", "decoders", "normalizers", "processors" })
            {
                if (e.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array
                    && list.EnumerateArray().Any(x => Has(x, type)))
                {
                    return true;
                }
            }

            return false;
        }

        return root.TryGetProperty(property, out var p) && Has(p, type);
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

    private List<(string, string)> ReadMerges(JsonElement model)
    {
        if (!model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array)
        {
            throw Error("has no model.merges array");
        }

        var result = new List<(string, string)>(merges.GetArrayLength());
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
                throw Error($"has malformed merge #{result.Count}: {m.GetRawText()} (expected \"a b\" or [\"a\", \"b\"])");
            }

            result.Add((a, b));
        }

        return result;
    }

    private List<AddedTokenMatcher.Token> ReadAddedTokens(JsonElement root)
    {
        var added = new List<AddedTokenMatcher.Token>();
        if (!root.TryGetProperty("added_tokens", out var addedJson) || addedJson.ValueKind != JsonValueKind.Array)
        {
            return added;
        }

        static bool Flag(JsonElement a, string name) => a.TryGetProperty(name, out var f) && f.ValueKind == JsonValueKind.True;
        foreach (var a in addedJson.EnumerateArray())
        {
            var content = a.TryGetProperty("content", out var c) ? c.GetString() : null;
            if (string.IsNullOrEmpty(content) || !a.TryGetProperty("id", out var idJson) || !idJson.TryGetInt32(out var id) || id < 0)
            {
                throw Error($"has an added_tokens entry without a non-empty content and a non-negative id: {a.GetRawText()}");
            }

            // "normalized" tokens are matched on the raw text too: in the files served here they are either
            // special or their content is unchanged by the normalizer (DeepSeek's is empty).
            added.Add(new AddedTokenMatcher.Token(content, id, Flag(a, "special"), Flag(a, "lstrip"), Flag(a, "rstrip"), Flag(a, "single_word")));
        }

        return added;
    }

    private void ReadNormalizer(JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        void Visit(JsonElement e)
        {
            var type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
            switch (type)
            {
                // Under InvariantGlobalization .NET has no Unicode tables and Normalize returns its input, so only
                // text already in the form matches Hugging Face; with ICU (the default on Linux) it is exact.
                case "NFC":
                    _normalizers.Add(s => Normalize(s, NormalizationForm.FormC));
                    break;
                case "NFKC":
                    _normalizers.Add(s => Normalize(s, NormalizationForm.FormKC));
                    break;
                case "NFD":
                    _normalizers.Add(s => Normalize(s, NormalizationForm.FormD));
                    break;
                case "NFKD":
                    _normalizers.Add(s => Normalize(s, NormalizationForm.FormKD));
                    break;
                case "Prepend":
                    var prepend = e.GetProperty("prepend").GetString()!;
                    _normalizers.Add(s => s.Length == 0 ? s : prepend + s);
                    break;
                case "Replace":
                    var content = e.GetProperty("content").GetString()!;
                    var pattern = e.GetProperty("pattern");
                    if (pattern.TryGetProperty("String", out var str))
                    {
                        var from = str.GetString()!;
                        _normalizers.Add(s => s.Replace(from, content, StringComparison.Ordinal));
                    }
                    else if (pattern.TryGetProperty("Regex", out var rx))
                    {
                        var regex = new System.Text.RegularExpressions.Regex(rx.GetString()!, System.Text.RegularExpressions.RegexOptions.CultureInvariant);
                        _normalizers.Add(s => regex.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal)));
                    }
                    else
                    {
                        throw Error($"has a Replace normalizer without a String or Regex pattern: {pattern.GetRawText()}");
                    }

                    break;
                case "Sequence":
                    foreach (var x in e.GetProperty("normalizers").EnumerateArray())
                    {
                        Visit(x);
                    }

                    break;
                default:
                    throw Error($"uses normalizer \"{type}\"; supported are NFC, NFKC, NFD, NFKD, Prepend, Replace and Sequence");
            }
        }

        Visit(n);
    }

    private void ReadPreTokenizer(JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind == JsonValueKind.Null)
        {
            return;
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
                    if (e.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                    {
                        _preTokenizers.Add(new PreTokenizerStep.PrefixSpace());
                    }

                    if (!e.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False)
                    {
                        _preTokenizers.Add(new PreTokenizerStep.Split(PreTokenizerStep.Compile(Gpt2Pattern, Error), PreTokenizerStep.Behavior.Isolated, invert: false));
                    }

                    break;
                case "Split":
                    var behaviorName = e.TryGetProperty("behavior", out var bh) ? bh.GetString() : "Isolated";
                    if (!Enum.TryParse<PreTokenizerStep.Behavior>(behaviorName, ignoreCase: false, out var behavior))
                    {
                        throw Error($"uses a Split pre-tokenizer with behavior \"{behaviorName}\"; supported are {string.Join(", ", Enum.GetNames<PreTokenizerStep.Behavior>())}");
                    }

                    var invert = e.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True;
                    var pattern = e.GetProperty("pattern");
                    string regex;
                    if (pattern.TryGetProperty("Regex", out var rx))
                    {
                        regex = rx.GetString()!;
                    }
                    else if (pattern.TryGetProperty("String", out var str))
                    {
                        regex = System.Text.RegularExpressions.Regex.Escape(str.GetString()!);
                    }
                    else
                    {
                        throw Error($"has a Split pre-tokenizer without a Regex or String pattern: {pattern.GetRawText()}");
                    }

                    _preTokenizers.Add(new PreTokenizerStep.Split(PreTokenizerStep.Compile(regex, Error), behavior, invert));
                    break;
                case "Metaspace":
                    var replacement = e.TryGetProperty("replacement", out var r) ? r.GetString()! : "\u2581";
                    var scheme = e.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString()
                        : e.TryGetProperty("add_prefix_space", out var legacy) && legacy.ValueKind == JsonValueKind.False ? "never" : "always";
                    if (scheme is not ("always" or "first" or "never"))
                    {
                        throw Error($"has a Metaspace pre-tokenizer with prepend_scheme \"{scheme}\"; expected always, first or never");
                    }

                    var split = !e.TryGetProperty("split", out var sp) || sp.ValueKind != JsonValueKind.False;
                    _preTokenizers.Add(new PreTokenizerStep.Metaspace(replacement, scheme == "always", scheme == "first", split));
                    break;
                default:
                    throw Error($"uses pre-tokenizer \"{type}\"; supported are ByteLevel, Split, Metaspace and Sequence");
            }
        }

        Visit(pre);
    }

    private (List<int> Prefix, List<int> Suffix) ReadPostProcessor(JsonElement root)
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        if (!root.TryGetProperty("post_processor", out var post) || post.ValueKind != JsonValueKind.Object)
        {
            return (prefix, suffix);
        }

        int Id(string token) => TryAddedOrVocab(token, out var id)
            ? id : throw Error($"has a post_processor that names the token \"{token}\", which is not in the vocabulary");

        void Visit(JsonElement p)
        {
            var type = p.TryGetProperty("type", out var ty) ? ty.GetString() : null;
            switch (type)
            {
                case "Sequence":
                    foreach (var x in p.GetProperty("processors").EnumerateArray())
                    {
                        Visit(x);
                    }

                    break;
                case "ByteLevel":
                    // Only trims offsets; adds no tokens.
                    break;
                case "TemplateProcessing":
                    var beforeText = true;
                    foreach (var piece in p.GetProperty("single").EnumerateArray())
                    {
                        if (piece.TryGetProperty("Sequence", out _))
                        {
                            beforeText = false;
                        }
                        else if (piece.TryGetProperty("SpecialToken", out var st))
                        {
                            (beforeText ? prefix : suffix).Add(Id(st.GetProperty("id").GetString()!));
                        }
                    }

                    break;
                case "RobertaProcessing" or "BertProcessing":
                    // [cls] $A [sep], each written as ["token", id].
                    prefix.Add(p.GetProperty("cls")[1].GetInt32());
                    suffix.Add(p.GetProperty("sep")[1].GetInt32());
                    break;
                default:
                    throw Error($"uses post_processor \"{type}\"; supported are TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing and Sequence");
            }
        }

        Visit(post);
        return (prefix, suffix);
    }

    private static bool? ReadBool(JsonElement? config, string field) =>
        config is { } c && c.ValueKind == JsonValueKind.Object && c.TryGetProperty(field, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.ValueKind == JsonValueKind.True
            : null;

    private int FindTokenId(JsonElement? config, string field)
    {
        if (config is not { } c || c.ValueKind != JsonValueKind.Object || !c.TryGetProperty(field, out var v))
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

    private bool TryAddedOrVocab(string content, out int id) =>
        _added.TryGetId(content, out id) || _vocab.TryGetValue(content, out id);

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
    /// True when the JSON describes a byte-level BPE; false for SentencePiece-style files (Llama 2's
    /// tokenizer.json), for which the loader prefers an original tokenizer.model when the directory has one.
    /// </summary>
    internal static bool IsByteLevelJson(JsonElement root) =>
        root.ValueKind != JsonValueKind.Object || HasComponent(root, "pre_tokenizer", "ByteLevel") || HasComponent(root, "decoder", "ByteLevel");

    /// <summary>The decoder of the file, reduced to the bytes each token contributes.</summary>
    private sealed class DecoderChain
    {
        private bool _byteLevel;
        private bool _byteFallback;
        private readonly List<(string From, string To)> _replacements = [];

        public DecoderChain(JsonElement root, Func<string, TokenizerFormatException> error)
        {
            if (!root.TryGetProperty("decoder", out var d) || d.ValueKind == JsonValueKind.Null)
            {
                return;
            }

            void Visit(JsonElement e)
            {
                var type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
                switch (type)
                {
                    case "Sequence":
                        foreach (var x in e.GetProperty("decoders").EnumerateArray())
                        {
                            Visit(x);
                        }

                        break;
                    case "ByteLevel":
                        _byteLevel = true;
                        break;
                    case "ByteFallback":
                        _byteFallback = true;
                        break;
                    case "Fuse":
                        // Tokens are concatenated anyway.
                        break;
                    case "Replace":
                        if (!e.GetProperty("pattern").TryGetProperty("String", out var from))
                        {
                            throw error($"has a Replace decoder with a regex pattern; only String patterns are supported: {e.GetRawText()}");
                        }

                        _replacements.Add((from.GetString()!, e.GetProperty("content").GetString()!));
                        break;
                    case "Strip":
                        var content = e.TryGetProperty("content", out var c) ? c.GetString() : " ";
                        var start = e.TryGetProperty("start", out var s) ? s.GetInt32() : 0;
                        var stop = e.TryGetProperty("stop", out var st) ? st.GetInt32() : 0;
                        if (content != " " || start > 1 || stop != 0)
                        {
                            throw error($"has a Strip decoder (content \"{content}\", start {start}, stop {stop}); only stripping one leading space is supported");
                        }

                        StripsLeadingSpace |= start == 1;
                        break;
                    case "Metaspace":
                        var replacement = e.TryGetProperty("replacement", out var r) ? r.GetString()! : "\u2581";
                        _replacements.Add((replacement, " "));
                        var scheme = e.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString()
                            : e.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False ? "never" : "always";
                        StripsLeadingSpace |= scheme != "never";
                        break;
                    default:
                        throw error($"uses decoder \"{type}\"; supported are ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace and Sequence");
                }
            }

            Visit(d);
        }

        /// <summary>The decoded text starts without the space SentencePiece prepended (Llama 2's Strip, Metaspace).</summary>
        public bool StripsLeadingSpace { get; private set; }

        public byte[] Bytes(string token, out bool isByteToken)
        {
            isByteToken = false;
            if (_byteLevel)
            {
                // Characters outside GPT-2's byte alphabet (in added tokens) stand for their own UTF-8, as in the Rust decoder.
                var result = new List<byte>(token.Length);
                var plain = new StringBuilder();
                foreach (var ch in token)
                {
                    if (CharToByte.TryGetValue(ch, out var b))
                    {
                        result.AddRange(Encoding.UTF8.GetBytes(plain.ToString()));
                        plain.Clear();
                        result.Add(b);
                    }
                    else
                    {
                        plain.Append(ch);
                    }
                }

                result.AddRange(Encoding.UTF8.GetBytes(plain.ToString()));
                return [.. result];
            }

            if (_byteFallback && Llama2cTokenizer.TryParseByteToken(token, out var single))
            {
                isByteToken = true;
                return [single];
            }

            foreach (var (from, to) in _replacements)
            {
                token = token.Replace(from, to, StringComparison.Ordinal);
            }

            return Encoding.UTF8.GetBytes(token);
        }
    }
}

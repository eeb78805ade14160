using System.Text;
using System.Text.Json;
using ActorRing.Model.Checkpoints.Gguf;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// The tokenizer a GGUF file carries in its metadata (<c>tokenizer.ggml.*</c>), built on the existing
/// tokenizers: a SentencePiece-style "llama" vocabulary (pieces with scores) runs as the llama.c tokenizer,
/// which implements exactly that score-driven merging; a "gpt2" byte-level BPE vocabulary (tokens and merges)
/// runs as <see cref="HuggingFaceBpeTokenizer"/>, with the pre-tokenizer llama.cpp names in
/// <c>tokenizer.ggml.pre</c>.
/// </summary>
public static class GgufTokenizer
{
    /// <summary>A GGUF file's Jinja chat template and the texts of its BOS and EOS tokens.</summary>
    public sealed record GgufChatTemplate(string Source, string? BosToken, string? EosToken);

    public static ITextTokenizer Load(string path)
    {
        using var file = Open(path);
        return FromMetadata(file.Metadata, path);
    }

    /// <summary>The chat template a GGUF file carries (<c>tokenizer.chat_template</c>, as llama.cpp's converter
    /// copies it from tokenizer_config.json), with the texts of its BOS and EOS tokens; null when it has none.</summary>
    public static GgufChatTemplate? ReadChatTemplate(string path)
    {
        using var file = Open(path);
        var m = file.Metadata;
        if (!m.TryGetValue("tokenizer.chat_template", out var t) || t is not string source || source.Length == 0) return null;
        var tokens = m.GetValueOrDefault("tokenizer.ggml.tokens") as string[] ?? [];
        string? Text(string key) => TokenId(m, key, tokens.Length) is int id ? tokens[id] : null;
        return new GgufChatTemplate(source, Text("tokenizer.ggml.bos_token_id"), Text("tokenizer.ggml.eos_token_id"));
    }

    /// <summary>The token id stored under <paramref name="key"/> (any GGUF integer type), or null when it is absent or
    /// not one of the <paramref name="vocabulary"/>'s ids.</summary>
    private static int? TokenId(IReadOnlyDictionary<string, object> m, string key, int vocabulary) =>
        m.TryGetValue(key, out var v) && Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture) is var id && id >= 0 && id < vocabulary
            ? (int)id : null;

    private static GgufFile Open(string path)
    {
        try
        {
            return new GgufFile(path);
        }
        catch (ModelLoadException e)
        {
            throw new TokenizerFormatException(e.Message, e);
        }
    }

    internal static ITextTokenizer FromMetadata(IReadOnlyDictionary<string, object> m, string name)
    {
        T Get<T>(string key) where T : class => m.TryGetValue(key, out var v) && v is T t ? t
            : throw new TokenizerFormatException($"GGUF '{name}': metadata {key} is missing or has the wrong type; the file carries no usable tokenizer");
        string model = Get<string>("tokenizer.ggml.model");
        var tokens = Get<string[]>("tokenizer.ggml.tokens");
        return model switch
        {
            "llama" => Llama(m, tokens, Get<float[]>("tokenizer.ggml.scores"), name),
            "gpt2" => Gpt2(m, tokens, Get<string[]>("tokenizer.ggml.merges"), name),
            _ => throw new TokenizerFormatException($"GGUF '{name}': tokenizer.ggml.model is '{model}'; supported are 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)"),
        };
    }

    /// <summary>
    /// A SentencePiece vocabulary (pieces with scores, '▁' for the space) on the llama.c tokenizer's score-driven
    /// merges, with the file's conventions: BOS/EOS/UNK ids, <c>add_space_prefix</c> (default true; Gemma's
    /// converter writes false), and token types (2 unknown, 3 control and 4 user-defined are matched whole in the
    /// text, as llama.cpp does for a chat prompt; unknown, control and 5 unused render as nothing). Without token types, ids 0-2
    /// are the control tokens, as in llama2.c.
    /// </summary>
    private static ITextTokenizer Llama(IReadOnlyDictionary<string, object> m, string[] tokens, float[] scores, string name)
    {
        if (scores.Length != tokens.Length)
            throw new TokenizerFormatException($"GGUF '{name}': {tokens.Length} tokens but {scores.Length} scores");
        var pieces = tokens.Select(t => t.Replace('\u2581', ' ')).ToArray();
        var types = m.GetValueOrDefault("tokenizer.ggml.token_type") as int[];
        if (types is not null && types.Length != tokens.Length)
            throw new TokenizerFormatException($"GGUF '{name}': {tokens.Length} tokens but {types.Length} token types");
        var control = types is null ? Enumerable.Range(0, tokens.Length).Select(i => i < 3).ToArray() : types.Select(t => t is 2 or 3 or 5).ToArray();
        int[] whole = types is null ? [] : Enumerable.Range(0, tokens.Length).Where(i => types[i] is 2 or 3 or 4).ToArray();
        int Id(string key, int fallback) => TokenId(m, key, tokens.Length) ?? fallback;
        int bos = Id("tokenizer.ggml.bos_token_id", 1), eos = Id("tokenizer.ggml.eos_token_id", 2);
        bool prefix = m.GetValueOrDefault("tokenizer.ggml.add_space_prefix") is not false;
        // Phi-3's chat tokens (<|user|>, <|end|>, ...) strip the whitespace after them, as its tokenizer.json says and
        // llama.cpp hard-codes for Phi-3; <unk>, <s> and <|endoftext|> do not.
        int[] rstrip = m.GetValueOrDefault("general.architecture") is "phi3"
            ? whole.Where(i => tokens[i] is not ("<unk>" or "<s>" or "<|endoftext|>")).ToArray() : [];
        return Llama2cTokenizer.FromPieces(pieces, scores,
            new Llama2cTokenizer.SentencePieceConventions(bos, eos, EndOfTurnIds(m, tokens, eos), Id("tokenizer.ggml.unknown_token_id", 0), prefix, control, whole, rstrip,
                AddBos: m.GetValueOrDefault("tokenizer.ggml.add_bos_token") is not false));
    }

    /// <summary>
    /// Ids that end generation: EOS, the file's <c>eot_token_id</c>/<c>eom_token_id</c>, and, as llama.cpp does for
    /// files written before those keys existed, the chat templates' end-of-turn tokens by their text
    /// (Gemma's &lt;end_of_turn&gt;, ChatML's &lt;|im_end|&gt;, Llama 3's &lt;|eot_id|&gt;, Phi's &lt;|end|&gt;).
    /// </summary>
    private static int[] EndOfTurnIds(IReadOnlyDictionary<string, object> m, string[] tokens, int eos)
    {
        var ids = new List<int> { eos };
        foreach (var key in new[] { "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id" })
            if (TokenId(m, key, tokens.Length) is int id) ids.Add(id);
        string[] endOfTurn = ["<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"];
        for (int i = 0; i < tokens.Length; i++)
            if (Array.IndexOf(endOfTurn, tokens[i]) >= 0) ids.Add(i);
        return [.. ids.Distinct()];
    }

    /// <summary>Pre-tokenizer regexes of the <c>tokenizer.ggml.pre</c> names llama.cpp gives Llama 3, Qwen2 and GPT-4o.</summary>
    private static string? PreTokenizerRegex(string pre) => pre switch
    {
        "llama-bpe" or "llama3" => @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen2" => @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        // GPT-4o's o200k (Phi-4-mini's vocabulary): cased words keep their trailing contraction, and '/' joins a
        // punctuation run's line breaks.
        "gpt-4o" => @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "gpt-2" or "default" => null,
        _ => throw new TokenizerFormatException($"tokenizer.ggml.pre '{pre}' is not one this server knows (llama-bpe, qwen2, gpt-4o, gpt-2, default)"),
    };

    /// <summary>The vocabulary written as the tokenizer.json that <see cref="HuggingFaceBpeTokenizer"/> reads.</summary>
    private static ITextTokenizer Gpt2(IReadOnlyDictionary<string, object> m, string[] tokens, string[] merges, string name)
    {
        string pre = m.TryGetValue("tokenizer.ggml.pre", out var p) && p is string s ? s : "default";
        string? regex = PreTokenizerRegex(pre);
        var types = m.TryGetValue("tokenizer.ggml.token_type", out var tt) && tt is int[] ints ? ints : [];
        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            // Llama 3's tokenizer.json takes a word that is in the vocabulary whole, before any merge; llama.cpp
            // does the same for this pre-tokenizer. Without it a few words split differently (e.g. "Việt").
            w.WriteBoolean("ignore_merges", pre is "llama-bpe" or "llama3");
            w.WriteStartObject("vocab");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
                if (seen.Add(tokens[i])) w.WriteNumber(tokens[i], i);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var merge in merges) w.WriteStringValue(merge);
            w.WriteEndArray();
            w.WriteEndObject();
            // Token types 3 (control) and 4 (user-defined) are matched whole before BPE, as llama.cpp does.
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < Math.Min(types.Length, tokens.Length); i++)
            {
                if (types[i] is not (3 or 4)) continue;
                w.WriteStartObject();
                w.WriteNumber("id", i);
                w.WriteString("content", tokens[i]);
                w.WriteBoolean("special", types[i] == 3);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            // Qwen2's tokenizer.json normalizes to NFC before splitting, which a GGUF file does not record (llama.cpp
            // skips it and so splits "e" + U+0301 where Hugging Face has one token); we follow the model's own tokenizer.
            if (pre == "qwen2")
            {
                w.WriteStartObject("normalizer");
                w.WriteString("type", "NFC");
                w.WriteEndObject();
            }
            w.WriteStartObject("pre_tokenizer");
            if (regex is null)
            {
                w.WriteString("type", "ByteLevel");
                w.WriteBoolean("add_prefix_space", false);
                w.WriteBoolean("use_regex", true);
            }
            else
            {
                w.WriteString("type", "Sequence");
                w.WriteStartArray("pretokenizers");
                w.WriteStartObject();
                w.WriteString("type", "Split");
                w.WriteStartObject("pattern");
                w.WriteString("Regex", regex);
                w.WriteEndObject();
                w.WriteString("behavior", "Isolated");
                w.WriteBoolean("invert", false);
                w.WriteEndObject();
                w.WriteStartObject();
                w.WriteString("type", "ByteLevel");
                w.WriteBoolean("add_prefix_space", false);
                w.WriteBoolean("use_regex", false);
                w.WriteEndObject();
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            w.WriteString("type", "ByteLevel");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        // tokenizer_config.json's keys. A prompt begins with BOS when the file says so; without the key, llama.cpp
        // adds it for Llama 3's pre-tokenizer only (a gpt2-type vocabulary's default is none: Qwen2's prompts have no BOS).
        var config = new Dictionary<string, object>
        {
            ["add_bos_token"] = m.GetValueOrDefault("tokenizer.ggml.add_bos_token") as bool? ?? pre is "llama-bpe" or "llama3",
        };
        if (m.GetValueOrDefault("tokenizer.ggml.add_eos_token") is bool addEos) config["add_eos_token"] = addEos;
        if (TokenId(m, "tokenizer.ggml.bos_token_id", tokens.Length) is int b)
            config["bos_token"] = tokens[b];
        if (TokenId(m, "tokenizer.ggml.eos_token_id", tokens.Length) is int e)
            config["eos_token"] = tokens[e];
        return HuggingFaceBpeTokenizer.FromJson(Encoding.UTF8.GetString(json.ToArray()), name, JsonSerializer.Serialize(config));
    }
}

using System.Text.Json.Nodes;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

/// <summary>
/// A small but complete Llama 3 style tokenizer.json, written by the test: 256 byte symbols (id = byte value),
/// a handful of merges, Llama 3's pre-tokenizer regex and three special added tokens.
/// </summary>
public sealed class TokenizerJsonTests
{
    private const string Llama3Regex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const int Bot = 265, Eot = 266, EotId = 267, Hi = 268;

    // GPT-2's byte → printable character table, written out independently of the tokenizer under test.
    private static string Sym(int b)
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1)).Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1)).ToList();
        if (printable.Contains(b))
        {
            return ((char)b).ToString();
        }

        var shifted = Enumerable.Range(0, 256).Where(x => !printable.Contains(x)).ToList();
        return ((char)(256 + shifted.IndexOf(b))).ToString();
    }

    private static string BuildJson(bool arrayMerges = false, bool ignoreMerges = false, bool withTemplate = true, string modelType = "BPE")
    {
        var vocab = new JsonObject();
        for (var b = 0; b < 256; b++)
        {
            vocab[Sym(b)] = b;
        }

        // Ġ is the byte-level symbol for a space.
        string[][] merges =
        [
            ["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], ["Ġ", "w"], ["o", "r"], ["Ġw", "or"], ["l", "d"], ["Ġwor", "ld"],
        ];
        var id = 256;
        foreach (var m in merges)
        {
            vocab[m[0] + m[1]] = id++;
        }

        // Reachable only as a whole word: there are no merges that build "Ġhi".
        vocab["Ġhi"] = Hi;

        var model = new JsonObject
        {
            ["type"] = modelType,
            ["vocab"] = vocab,
            ["merges"] = arrayMerges
                ? new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m[0], m[1])).ToArray())
                : new JsonArray(merges.Select(m => (JsonNode)JsonValue.Create(m[0] + " " + m[1])!).ToArray()),
            ["ignore_merges"] = ignoreMerges,
        };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = Bot, ["content"] = "<|begin_of_text|>", ["special"] = true },
                new JsonObject { ["id"] = Eot, ["content"] = "<|end_of_text|>", ["special"] = true },
                new JsonObject { ["id"] = EotId, ["content"] = "<|eot_id|>", ["special"] = true }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Llama3Regex }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = withTemplate
                ? new JsonObject
                {
                    ["type"] = "Sequence",
                    ["processors"] = new JsonArray(
                        new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                        new JsonObject
                        {
                            ["type"] = "TemplateProcessing",
                            ["single"] = new JsonArray(
                                new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                                new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                        }),
                }
                : null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = model,
        };
        return root.ToJsonString();
    }

    private static HuggingFaceBpeTokenizer Create(bool arrayMerges = false, bool ignoreMerges = false, bool withTemplate = true, string? config = null) =>
        HuggingFaceBpeTokenizer.FromJson(BuildJson(arrayMerges, ignoreMerges, withTemplate), "test/tokenizer.json", config);

    [Fact]
    public void Merges_and_bos_give_exact_ids()
    {
        var tok = Create();

        // "hello" → he+ll → hell+o → hello (259); " world" → Ġw, or, Ġwor, ld → Ġworld (264).
        Assert.Equal([Bot, 259, 264], tok.Encode("hello world", addBos: true));
        Assert.Equal([259, 264], tok.Encode("hello world", addBos: false));
        Assert.Equal(Bot, tok.BosId);
        Assert.Equal(Eot, tok.EosId);
        Assert.Equal(269, tok.VocabSize);
        Assert.Equal("hello world", tok.Decode([Bot, 259, 264]));
    }

    [Fact]
    public void Both_merge_spellings_are_read()
    {
        Assert.Equal(Create().Encode("hello world!", true), Create(arrayMerges: true).Encode("hello world!", true));
    }

    [Fact]
    public void Non_ascii_text_encodes_to_bytes_and_round_trips()
    {
        var tok = Create();
        const string text = "héllo 世界 🙂";
        var ids = tok.Encode(text, addBos: false);

        // Pieces by the Llama 3 regex: "héllo" | " 世界" | " 🙂"; only "l l" merges among them.
        int[] expected =
        [
            104, 0xC3, 0xA9, 257, 111,
            32, 0xE4, 0xB8, 0x96, 0xE7, 0x95, 0x8C,
            32, 0xF0, 0x9F, 0x99, 0x82,
        ];
        Assert.Equal(expected, ids);
        Assert.Equal(text, tok.Decode(ids));

        // Streaming: no chunk may carry a broken character, and the chunks add up to the text.
        var decoder = tok.CreateIncrementalDecoder();
        var chunks = ids.Select(decoder.Append).ToList();
        Assert.DoesNotContain(chunks, c => c.Contains('\uFFFD'));
        Assert.Equal(text, string.Concat(chunks) + decoder.Flush());
        Assert.Equal(["", "", "", "🙂"], chunks.TakeLast(4));
        Assert.Equal(["", "", "世", "", "", "界"], chunks.Skip(6).Take(6));
    }

    [Fact]
    public void Special_tokens_in_text_are_matched_and_not_decoded()
    {
        var tok = Create();
        Assert.Equal([Bot, 259, EotId, 264], tok.Encode("<|begin_of_text|>hello<|eot_id|> world", addBos: false));
        Assert.True(tok.IsSpecial(EotId));
        Assert.False(tok.IsSpecial(259));
        Assert.Equal("hello world", tok.Decode([Bot, 259, EotId, 264, Eot]));
        Assert.Equal("<|eot_id|>", tok.IdToToken(EotId));
        Assert.Equal("Ġworld", tok.IdToToken(264));

        // A partial special-token spelling is ordinary text: "<|" is one regex piece, "begin" another.
        Assert.Equal([60, 124, 98, 101, 103, 105, 110], tok.Encode("<|begin", false));
        Assert.DoesNotContain(Bot, tok.Encode("<|begin_of_text", false));
    }

    [Fact]
    public void Ignore_merges_takes_whole_words_from_the_vocabulary()
    {
        Assert.Equal([Hi], Create(ignoreMerges: true).Encode(" hi", false));
        Assert.Equal([32, 104, 105], Create(ignoreMerges: false).Encode(" hi", false));
    }

    [Fact]
    public void Without_a_template_there_is_no_bos_and_config_chooses_eos()
    {
        // Qwen2 style: no BOS at all; tokenizer_config.json names the end-of-turn token.
        var tok = Create(withTemplate: false, config: """{"bos_token": null, "eos_token": {"content": "<|eot_id|>"}}""");
        Assert.Equal(-1, tok.BosId);
        Assert.Equal(EotId, tok.EosId);
        Assert.Equal([259], tok.Encode("hello", addBos: true));
    }

    [Fact]
    public void Loader_reads_tokenizer_json_with_config_and_generation_eos_ids()
    {
        using var dir = new TokenizerTempDir();
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), BuildJson());
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), """{"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}""");
        File.WriteAllText(Path.Combine(dir.Path, "generation_config.json"), """{"eos_token_id": [266, 267]}""");
        var tok = TokenizerLoader.Load(dir.Path);
        Assert.IsType<HuggingFaceBpeTokenizer>(tok);
        Assert.Equal(Eot, tok.EosId);
        Assert.Equal([Eot, EotId], tok.EosIds.OrderBy(x => x));
        Assert.Equal([Bot, 259], tok.Encode("hello", true));
    }

    [Fact]
    public void Sentencepiece_style_tokenizer_json_loads_alone_and_defers_to_tokenizer_model()
    {
        using var dir = new TokenizerTempDir();
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), SentencePieceJson.FromModel(TokenizerTestFiles.SentencePieceModel));
        var json = Assert.IsType<HuggingFaceBpeTokenizer>(TokenizerLoader.Load(dir.Path));
        Assert.False(json.IsByteLevel);

        File.Copy(TokenizerTestFiles.SentencePieceModel, Path.Combine(dir.Path, "tokenizer.model"));
        var model = Assert.IsType<SentencePieceTextTokenizer>(TokenizerLoader.Load(dir.Path));

        // Hugging Face converts a SentencePiece BPE model to exactly this JSON; both must give the same ids.
        Assert.Equal([1, 403, 407, 261, 378], json.Encode("Once upon a time", addBos: true));
        var differing = TokenizerParityTests.Corpus.Where(t => !json.Encode(t, true).SequenceEqual(model.Encode(t, true))).ToList();
        Assert.True(differing.Count == 0, $"{differing.Count} corpus strings differ, e.g. {string.Join(" | ", differing.Take(5).Select(t => System.Text.Json.JsonSerializer.Serialize(t)))}");
        Assert.Equal(model.Decode(json.Encode("Once upon a time", true)), json.Decode(json.Encode("Once upon a time", true)));
    }

    [Fact]
    public void Malformed_files_give_errors_naming_the_file()
    {
        var bad = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson("{ not json", "dir/tokenizer.json"));
        Assert.Contains("dir/tokenizer.json", bad.Message);

        var wordPiece = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(BuildJson(modelType: "WordPiece"), "dir/tokenizer.json"));
        Assert.Contains("dir/tokenizer.json", wordPiece.Message);
        Assert.Contains("WordPiece", wordPiece.Message);

        var badMerge = JsonNode.Parse(BuildJson())!.AsObject();
        badMerge["model"]!["merges"]!.AsArray().Add("nospace");
        var ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(badMerge.ToJsonString(), "dir/tokenizer.json"));
        Assert.Contains("merge #9", ex.Message);

        var noVocab = JsonNode.Parse(BuildJson())!.AsObject();
        noVocab["model"]!.AsObject().Remove("vocab");
        ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(noVocab.ToJsonString(), "dir/tokenizer.json"));
        Assert.Contains("model.vocab", ex.Message);

        var unknownEos = """{"eos_token": "<|nope|>"}""";
        ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(BuildJson(), "dir/tokenizer.json", unknownEos));
        Assert.Contains("<|nope|>", ex.Message);
    }

    [Fact]
    public void Nfc_normalizer_composes_before_encoding()
    {
        // Qwen2 declares an NFC normalizer: "e" + combining acute must encode like the precomposed "é".
        var json = JsonNode.Parse(BuildJson())!.AsObject();
        json["normalizer"] = new JsonObject { ["type"] = "NFC" };
        var nfc = HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "nfc/tokenizer.json");
        Assert.Equal([104, 0xC3, 0xA9], nfc.Encode("h\u00E9", false));
        if (HuggingFaceBpeTokenizer.NfcSupported)
        {
            Assert.Equal([104, 0xC3, 0xA9], nfc.Encode("he\u0301", false));
        }
        else
        {
            // Invariant globalization (this solution's setting): no composition, but nothing is lost either.
            Assert.Equal([256, 0xCC, 0x81], nfc.Encode("he\u0301", false));
        }

        // Without it the combining mark stays separate bytes (CC 81), and "he" merges.
        Assert.Equal([256, 0xCC, 0x81], Create().Encode("he\u0301", false));

        json["normalizer"] = new JsonObject { ["type"] = "Lowercase" };
        var ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "lc/tokenizer.json"));
        Assert.Contains("Lowercase", ex.Message);
    }

    [Fact]
    public void Gpt2_style_byte_level_pre_tokenizer_uses_its_own_regex()
    {
        // Add the merge "Ġ 1". GPT-2's regex keeps the space with the digits (" 1234" is one piece), so the merge
        // applies; Llama 3's regex makes " " its own piece and splits digits in threes ("123", "4"), so it cannot.
        JsonObject WithSpaceDigitMerge(JsonObject json)
        {
            json["model"]!["vocab"]!["Ġ1"] = 269;
            json["model"]!["merges"]!.AsArray().Add("Ġ 1");
            return json;
        }

        var llama3 = HuggingFaceBpeTokenizer.FromJson(WithSpaceDigitMerge(JsonNode.Parse(BuildJson())!.AsObject()).ToJsonString(), "l3/tokenizer.json");
        var gpt2Json = WithSpaceDigitMerge(JsonNode.Parse(BuildJson())!.AsObject());
        gpt2Json["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = true };
        var gpt2 = HuggingFaceBpeTokenizer.FromJson(gpt2Json.ToJsonString(), "gpt2/tokenizer.json");

        Assert.Equal([259, 269, 50, 51, 52], gpt2.Encode("hello 1234", false));
        Assert.Equal([259, 32, 49, 50, 51, 52], llama3.Encode("hello 1234", false));
        Assert.Equal("hello 1234", gpt2.Decode(gpt2.Encode("hello 1234", false)));
    }

    [Fact]
    public void Gpt2_symbol_table_in_test_matches_known_spellings()
    {
        // Guards the test's own table: space is Ġ (U+0120), newline is Ċ (U+010A), as in every GPT-2 vocabulary.
        Assert.Equal("Ġ", Sym(' '));
        Assert.Equal("Ċ", Sym('\n'));
        Assert.Equal("\n", Create().Decode([10]));
        Assert.Equal([10], Create().Encode("\n", false));
    }
}

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
    public void Loader_reads_tokenizer_json_with_its_config_and_the_model_configs_eos_ids()
    {
        using var dir = new TokenizerTempDir();
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), BuildJson());
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), """{"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}""");
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), """{"eos_token_id": [266, 267]}""");
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

        // And the same text back after BOS. (Not for <unk>: the .model renders it as SentencePiece does, " ⁇ ", where
        // the JSON marks it special.) Without BOS they differ on purpose: the .model keeps llama2.c's rule (drop the
        // dummy space only right after BOS), the JSON its own Strip decoder (drop it at the start of the text).
        // Nor for a "<s>" inside the text, after which llama2.c's rule drops a space again.
        var decodedDiffer = TokenizerParityTests.Corpus.Where(t => !model.Encode(t, false).Contains(0) && !t.Contains("<s>"))
            .Where(t => model.Decode(model.Encode(t, true)) != json.Decode(json.Encode(t, true))).ToList();
        Assert.True(decodedDiffer.Count == 0, $"{decodedDiffer.Count} decodes differ, e.g. {string.Join(" | ", decodedDiffer.Take(5).Select(t => System.Text.Json.JsonSerializer.Serialize(t)))}");
        Assert.Equal(" Once", model.Decode([403]));
        Assert.Equal("Once", json.Decode([403]));
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

    // A SentencePiece-style file written by the test: "▁" words, three merges, byte fallback for everything else.
    private static JsonObject SentencePieceStyle(JsonNode? normalizer, JsonNode? preTokenizer, JsonNode? decoder)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (var b = 0; b < 256; b++)
        {
            vocab[$"<0x{b:X2}>"] = 3 + b;
        }

        string[] pieces = ["\u2581", "h", "i", "\u2581h", "\u2581hi", "!"];
        for (var k = 0; k < pieces.Length; k++)
        {
            vocab[pieces[k]] = 259 + k;
        }

        return new JsonObject
        {
            ["added_tokens"] = new JsonArray(
                new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["special"] = true },
                new JsonObject { ["id"] = 1, ["content"] = "<s>", ["special"] = true },
                new JsonObject { ["id"] = 2, ["content"] = "</s>", ["special"] = true }),
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
            },
            ["decoder"] = decoder,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["unk_token"] = "<unk>",
                ["byte_fallback"] = true,
                ["fuse_unk"] = true,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray("\u2581 h", "\u2581h i"),
            },
        };
    }

    private static JsonObject ReplaceNode(string from, string to) => new() { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = from }, ["content"] = to };

    private static JsonObject Llama2Decoder() => new()
    {
        ["type"] = "Sequence",
        ["decoders"] = new JsonArray(ReplaceNode("\u2581", " "), new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" },
            new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
    };

    private const int Space = 259, H = 260, I = 261, SpaceH = 262, SpaceHi = 263, Bang = 264;

    private static int Byte(int b) => 3 + b;

    [Fact]
    public void Metaspace_and_prepend_normalizer_give_the_same_sentencepiece_ids()
    {
        var prepend = HuggingFaceBpeTokenizer.FromJson(SentencePieceStyle(
            new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" }, ReplaceNode(" ", "\u2581")) },
            null, Llama2Decoder()).ToJsonString(), "prepend/tokenizer.json");
        var metaspace = HuggingFaceBpeTokenizer.FromJson(SentencePieceStyle(null,
            new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "first", ["split"] = false },
            new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "first", ["split"] = false }),
            }).ToJsonString(), "metaspace/tokenizer.json");

        // "hi hi!" → ▁hi ▁hi ! ; "é" has no piece and falls back to its UTF-8 bytes C3 A9.
        Assert.Equal([1, SpaceHi, SpaceHi, Bang], prepend.Encode("hi hi!", addBos: true));
        Assert.Equal([SpaceHi, Byte(0xC3), Byte(0xA9)], prepend.Encode("hié", addBos: false));
        foreach (var text in new[] { "hi hi!", "hié", "h i", "hi  ", "" })
        {
            Assert.Equal(prepend.Encode(text, true), metaspace.Encode(text, true));
            Assert.Equal(text, prepend.Decode(prepend.Encode(text, true)));
            Assert.Equal(text, metaspace.Decode(metaspace.Encode(text, true)));
        }

        // Text that starts with a space: Prepend always adds "▁", Metaspace only when the text does not start with one.
        Assert.Equal([Space, Space, SpaceHi], prepend.Encode("  hi", false));
        Assert.Equal([Space, SpaceHi], metaspace.Encode("  hi", false));

        // The Prepend normalizer runs on each segment between special tokens; Metaspace "first" only at the start.
        Assert.Equal([SpaceHi, 2, SpaceHi], prepend.Encode("hi</s>hi", false));
        Assert.Equal([SpaceHi, 2, H, I], metaspace.Encode("hi</s>hi", false));
        Assert.False(prepend.IsByteLevel);
    }

    [Fact]
    public void Byte_fallback_streams_whole_characters_only()
    {
        var tok = HuggingFaceBpeTokenizer.FromJson(SentencePieceStyle(
            new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" }, ReplaceNode(" ", "\u2581")) },
            null, Llama2Decoder()).ToJsonString(), "bf/tokenizer.json");
        var ids = tok.Encode("hi 🙂!", addBos: true);
        Assert.Equal([1, SpaceHi, Space, Byte(0xF0), Byte(0x9F), Byte(0x99), Byte(0x82), Bang], ids);
        var decoder = tok.CreateIncrementalDecoder();
        var chunks = ids.Select(decoder.Append).ToList();
        Assert.Equal(["", "hi", " ", "", "", "", "🙂", "!"], chunks);
        Assert.Equal("hi 🙂!", string.Concat(chunks) + decoder.Flush());
    }

    [Fact]
    public void Add_bos_and_add_eos_in_tokenizer_config_override_the_template()
    {
        var json = SentencePieceStyle(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" }, null, Llama2Decoder()).ToJsonString();
        var both = HuggingFaceBpeTokenizer.FromJson(json, "t/tokenizer.json", """{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true, "add_eos_token": true}""");
        Assert.Equal([1, SpaceHi, 2], both.Encode("hi", addBos: true));
        Assert.Equal([SpaceHi], both.Encode("hi", addBos: false));
        var none = HuggingFaceBpeTokenizer.FromJson(json, "t/tokenizer.json", """{"bos_token": "<s>", "add_bos_token": false}""");
        Assert.Equal([SpaceHi], none.Encode("hi", addBos: true));
        Assert.Equal(1, none.BosId);
    }

    [Fact]
    public void Added_tokens_with_lstrip_and_rstrip_swallow_the_spaces_beside_them()
    {
        var json = JsonNode.Parse(BuildJson())!.AsObject();
        json["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 269, ["content"] = "<mask>", ["special"] = true, ["lstrip"] = true, ["rstrip"] = true });
        var tok = HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "strip/tokenizer.json");
        Assert.Equal([259, 269, 259], tok.Encode("hello  <mask>  hello", addBos: false));
        Assert.Equal([259, 32, 269], tok.Encode("hello <|eot_id|>", false).Take(2).Append(tok.Encode("<mask>", false)[0]));
    }

    [Fact]
    public void Pre_tokenizer_regex_sees_letters_outside_the_bmp_as_letters()
    {
        // 𝐀 (U+1D400) is a letter: Llama 3's regex keeps " 𝐀𝐀" with the letters before it as one piece… unless .NET
        // sees two surrogates, which \p{L} does not match. Add a merge that only fires inside one piece: "o" + "Ġ".
        var json = JsonNode.Parse(BuildJson())!.AsObject();
        json["model"]!["vocab"]!["a\u00F0"] = 269;
        json["model"]!["merges"]!.AsArray().Add("a \u00F0");
        var tok = HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "astral/tokenizer.json");

        // "a𝐀": one \p{L}+ piece, so "a" and the first byte of 𝐀 (F0 → ð) merge; split apart they could not.
        Assert.Equal([269, 0x9D, 0x90, 0x80], tok.Encode("a\U0001D400", false));

        // An astral symbol (🙂, So) is not a letter: "a" and "🙂" are separate pieces and nothing merges.
        Assert.Equal([97, 0xF0, 0x9F, 0x99, 0x82], tok.Encode("a🙂", false));
    }

    [Fact]
    public void Model_config_eos_ids_stop_for_json_and_sentencepiece_models()
    {
        using var dir = new TokenizerTempDir();
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), """{"eos_token_id": [2, 5]}""");
        File.Copy(TokenizerTestFiles.SentencePieceModel, Path.Combine(dir.Path, "tokenizer.model"));
        Assert.Equal([2, 5], TokenizerLoader.Load(dir.Path).EosIds.Order());
        Assert.Equal([2, 5], TokenizerLoader.ReadConfigEosIds(dir.Path));

        File.WriteAllText(Path.Combine(dir.Path, "config.json"), """{"eos_token_id": "two"}""");
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains("eos_token_id \"two\"", ex.Message);
        Assert.Contains("config.json", ex.Message);
    }

    [Fact]
    public void Unsupported_components_are_refused_by_name()
    {
        var json = JsonNode.Parse(BuildJson())!.AsObject();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" };
        var ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "w/tokenizer.json"));
        Assert.Contains("\"Whitespace\"", ex.Message);
        Assert.Contains("w/tokenizer.json", ex.Message);

        json = JsonNode.Parse(BuildJson())!.AsObject();
        json["decoder"] = new JsonObject { ["type"] = "WordPiece" };
        ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "w/tokenizer.json"));
        Assert.Contains("decoder \"WordPiece\"", ex.Message);

        json = JsonNode.Parse(BuildJson())!.AsObject();
        json["model"]!["continuing_subword_prefix"] = "##";
        ex = Assert.Throws<TokenizerFormatException>(() => HuggingFaceBpeTokenizer.FromJson(json.ToJsonString(), "w/tokenizer.json"));
        Assert.Contains("continuing_subword_prefix \"##\"", ex.Message);
    }
}

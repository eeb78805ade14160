using System.Text.Json;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

/// <summary>Locates the bundled stories260K files from the test binary's directory.</summary>
internal static class TokenizerTestFiles
{
    public static string Stories260K { get; } = FindStories();

    public static string SentencePieceModel => Path.Combine(Stories260K, "hf", "tokenizer.model");

    public static string Llama2cTokenizer => Path.Combine(Stories260K, "llama2c", "tok512.bin");

    public static string Expected(string name) => Path.Combine(Stories260K, "expected", name);

    private static string FindStories()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "models", "stories260K");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException($"models/stories260K not found above {AppContext.BaseDirectory}");
    }
}

/// <summary>The bundled SentencePiece and llama2.c tokenizers of stories260K, checked against llama2.c's published output.</summary>
public sealed class TokenizerTests
{
    public static TheoryData<string> BundledTokenizers => new() { "tokenizer.model", "tok512.bin" };

    private static ITextTokenizer Load(string which) => which switch
    {
        "tokenizer.model" => SentencePieceTextTokenizer.Load(TokenizerTestFiles.SentencePieceModel),
        "tok512.bin" => Llama2cTokenizer.Load(TokenizerTestFiles.Llama2cTokenizer),
        _ => throw new ArgumentOutOfRangeException(nameof(which)),
    };

    private static List<int> ExpectedIdsWithBos()
    {
        var ids = JsonSerializer.Deserialize<List<int>>(File.ReadAllText(TokenizerTestFiles.Expected("greedy_bos_256.ids.json")))!;
        ids.Insert(0, 1);
        return ids;
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Once_upon_a_time_encodes_to_the_published_ids(string which)
    {
        var tok = Load(which);
        Assert.Equal([1, 403, 407, 261, 378], tok.Encode("Once upon a time", addBos: true));
        Assert.Equal([403, 407, 261, 378], tok.Encode("Once upon a time", addBos: false));
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Equal([2], tok.EosIds);
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Decoding_the_greedy_ids_reproduces_llama2c_output(string which)
    {
        var tok = Load(which);
        var ids = ExpectedIdsWithBos();

        // llama2.c prints a final "\n" after the last generated token; that newline is not a token.
        var expected = File.ReadAllText(TokenizerTestFiles.Expected("greedy_bos_256.txt"));
        Assert.EndsWith("\n", expected);
        expected = expected[..^1];

        Assert.Equal(expected, tok.Decode(ids));

        // Streaming must produce the same text, token by token.
        var decoder = tok.CreateIncrementalDecoder();
        var streamed = string.Concat(ids.Select(decoder.Append)) + decoder.Flush();
        Assert.Equal(expected, streamed);
    }

    [Theory]
    [InlineData("x", new[] { 1, 410, 444 })]
    [InlineData("a", new[] { 1, 261 })]
    [InlineData(" x", new[] { 1, 410, 410, 444 })]
    [InlineData("x ", new[] { 1, 410, 444, 410 })]
    public void Short_prompts_encode_to_real_ids_with_both_tokenizers(string text, int[] expected)
    {
        // Microsoft.ML.Tokenizers' own SentencePiece normalizer drops these inputs entirely (no ids, not even BOS).
        Assert.Equal(expected, Load("tokenizer.model").Encode(text, addBos: true));
        Assert.Equal(expected, Load("tok512.bin").Encode(text, addBos: true));
    }

    [Fact]
    public void Both_bundled_tokenizers_encode_the_reference_story_identically_and_round_trip()
    {
        // Our llama2.c merge-by-score encoder and Microsoft.ML.Tokenizers' SentencePiece BPE are independent
        // implementations; on a multi-line story (newlines use byte fallback) they must agree id for id.
        var spm = Load("tokenizer.model");
        var l2c = Load("tok512.bin");
        var text = File.ReadAllText(TokenizerTestFiles.Expected("greedy_bos_256.txt"));
        var a = spm.Encode(text, addBos: true);
        var b = l2c.Encode(text, addBos: true);
        Assert.Equal(a, b);
        Assert.Equal(text, spm.Decode(a));
        Assert.Equal(text, l2c.Decode(b));

        // The story minus the trailing newline is exactly what greedy decoding generated.
        Assert.Equal(ExpectedIdsWithBos(), l2c.Encode(text[..^1], addBos: true));
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Non_ascii_text_uses_byte_fallback_and_round_trips(string which)
    {
        var tok = Load(which);
        const string text = "héllo 世界 🙂";
        var ids = tok.Encode(text, addBos: true);

        // The 512-piece vocabulary has none of these characters, so each UTF-8 byte becomes <0xNN> = id byte + 3.
        var smileStart = ids.Count - 4;
        Assert.Equal([0xF0 + 3, 0x9F + 3, 0x99 + 3, 0x82 + 3], ids.Skip(smileStart));
        Assert.Equal(text, tok.Decode(ids));

        var otherIds = Load(which == "tok512.bin" ? "tokenizer.model" : "tok512.bin").Encode(text, addBos: true);
        Assert.Equal(otherIds, ids);
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Incremental_decoder_holds_back_incomplete_utf8(string which)
    {
        var tok = Load(which);
        var decoder = tok.CreateIncrementalDecoder([1]);

        // "🙂" = F0 9F 99 82 arrives as four byte tokens: nothing may be emitted until the character is whole.
        Assert.Equal("", decoder.Append(0xF0 + 3));
        Assert.Equal("", decoder.Append(0x9F + 3));
        Assert.Equal("", decoder.Append(0x99 + 3));
        Assert.Equal("🙂", decoder.Append(0x82 + 3));

        // A character cut off at the end is reported once, as U+FFFD, only when the stream is flushed.
        Assert.Equal("", decoder.Append(0xE4 + 3));
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("", decoder.Flush());
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Leading_space_is_dropped_only_right_after_bos(string which)
    {
        var tok = Load(which);

        // As in llama2.c: the dummy-prefix space of the first piece after BOS is not text.
        Assert.Equal("Once", tok.CreateIncrementalDecoder([1]).Append(403));
        Assert.Equal(" upon", tok.CreateIncrementalDecoder([1, 403]).Append(407));
        Assert.Equal("Once upon", tok.Decode([1, 403, 407]));
        Assert.Equal(" Once upon", tok.Decode([403, 407]));

        // A byte token after BOS keeps its space: <0x20> is a real space, not the dummy prefix.
        Assert.Equal(" ", tok.Decode([1, 0x20 + 3]));
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Control_tokens_render_as_nothing(string which)
    {
        var tok = Load(which);
        Assert.True(tok.IsSpecial(1));
        Assert.True(tok.IsSpecial(2));
        Assert.False(tok.IsSpecial(403));
        Assert.Equal("Once", tok.Decode([1, 403, 2]));
        Assert.Equal("", tok.Decode([1, 2]));
        Assert.Equal("<0x0A>", tok.IdToToken(13));
        Assert.Equal("\n", tok.Decode([13]));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([512]));
        Assert.Contains("512", ex.Message);
    }

    [Theory]
    [MemberData(nameof(BundledTokenizers))]
    public void Token_bytes_are_what_each_token_adds_to_the_text_in_mid_sequence(string which)
    {
        // JSON mode reads these bytes to tell which tokens may come next, so they must be the decoder's own.
        var tok = Load(which);
        var ids = tok.Encode("Once upon a time, \"Tim\" said: {hello}\n", addBos: true);
        var decoded = System.Text.Encoding.UTF8.GetBytes(tok.Decode([.. ids, .. ids.Skip(1)]));
        var first = System.Text.Encoding.UTF8.GetBytes(tok.Decode(ids));
        Assert.Equal(decoded[first.Length..], ids.Skip(1).SelectMany(tok.TokenBytes).ToArray());
        Assert.Empty(tok.TokenBytes(1)); // BOS: special, no text
        Assert.Equal("\n"u8.ToArray(), tok.TokenBytes(13)); // a byte token
    }

    [Fact]
    public void Empty_text_encodes_to_bos_only()
    {
        Assert.Equal([1], Load("tok512.bin").Encode("", addBos: true));
        Assert.Equal([1], Load("tokenizer.model").Encode("", addBos: true));
        Assert.Empty(Load("tok512.bin").Encode("", addBos: false));
    }

    [Fact]
    public void Loader_picks_the_tokenizer_by_directory_contents()
    {
        Assert.IsType<SentencePieceTextTokenizer>(TokenizerLoader.Load(Path.Combine(TokenizerTestFiles.Stories260K, "hf")));
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(Path.Combine(TokenizerTestFiles.Stories260K, "llama2c")));
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(TokenizerTestFiles.Llama2cTokenizer));
    }

    [Fact]
    public void Loader_errors_name_the_directory_or_file()
    {
        using var dir = new TokenizerTempDir();
        var empty = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains(dir.Path, empty.Message);
        Assert.Contains("no tokenizer found", empty.Message);

        var missing = Path.Combine(dir.Path, "nope");
        Assert.Contains(missing, Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(missing)).Message);

        // A llama2.c file cut in the middle of a token record.
        var truncated = Path.Combine(dir.Path, "tokenizer.bin");
        File.WriteAllBytes(truncated, File.ReadAllBytes(TokenizerTestFiles.Llama2cTokenizer)[..1000]);
        var ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains(truncated, ex.Message);

        // Garbage where a SentencePiece protobuf should be.
        var spm = Path.Combine(dir.Path, "tokenizer.model");
        File.WriteAllBytes(spm, [0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02]);
        ex = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(dir.Path));
        Assert.Contains(spm, ex.Message);
    }

    [Fact]
    public void Llama2c_file_with_too_few_tokens_is_refused()
    {
        using var dir = new TokenizerTempDir();
        var path = Path.Combine(dir.Path, "tok.bin");
        using (var w = new BinaryWriter(File.Create(path)))
        {
            w.Write(4);
            w.Write(0f);
            w.Write(1);
            w.Write((byte)'a');
        }

        var ex = Assert.Throws<TokenizerFormatException>(() => Llama2cTokenizer.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("1 tokens", ex.Message);
    }
}

internal sealed class TokenizerTempDir : IDisposable
{
    public TokenizerTempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "actorring-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

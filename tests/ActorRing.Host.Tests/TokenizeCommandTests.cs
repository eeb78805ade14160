using ActorRing.Host.Cli;
using ActorRing.Host.Commands;

namespace ActorRing.Host.Tests;

/// <summary><c>actorring tokenize</c> on the bundled stories260K tokenizer (ids published by llama2.c).</summary>
public sealed class TokenizeCommandTests
{
    private static (int Code, string Output) Run(string stdin, params string[] args)
    {
        var output = new StringWriter();
        var code = TokenizeCommand.Run(args, new StringReader(stdin), output);
        return (code, output.ToString());
    }

    [Fact]
    public void Text_prints_the_ids_with_bos_as_a_json_array()
    {
        Assert.Equal((0, "[1,403,407,261,378]\n"), Run("", "--text", "Once upon a time"));
        Assert.Equal((0, "[403,407,261,378]\n"), Run("", "--text", "Once upon a time", "--no-special-tokens"));
    }

    [Fact]
    public void Stdin_lines_of_json_strings_give_one_array_per_line()
    {
        var (code, output) = Run("\"Once upon a time\"\n\n\"Once\"\n", "--no-special-tokens");
        Assert.Equal(0, code);
        Assert.Equal("[403,407,261,378]\n[403]\n", output);
    }

    [Fact]
    public void Decode_goes_back_to_text_from_ids_or_stdin_arrays()
    {
        Assert.Equal((0, "\"Once upon a time\"\n"), Run("", "--decode", "--ids", "1,403,407,261,378"));
        Assert.Equal((0, "\"Once upon\"\n\" upon a\"\n"), Run("[1, 403, 407]\n[407, 261]\n", "--decode"));
    }

    [Fact]
    public void Chat_renders_the_messages_through_the_template_first()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """[{"role": "user", "content": "Once upon"}, {"role": "assistant", "content": "a time"}]""");

            // The plain template joins contents with newlines and writes no BOS, so the ids get the tokenizer's BOS,
            // as the server's prompt does (a template that writes BOS itself gets no second one).
            var (code, output) = Run("", "--chat", file);
            Assert.Equal(0, code);
            Assert.Equal("[1,403,407,13,412,378]\n", output);
            Assert.Equal(Run("", "--text", "Once upon\na time").Output, output);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>
    /// A GGUF model brings its chat template in its metadata (tokenizer.chat_template, where llama.cpp's converter
    /// puts it), with its BOS and EOS texts; the prompt's "&lt;s&gt;" and "&lt;/s&gt;" are the control tokens, matched
    /// whole, and the template's BOS is the only one. The vocabulary is stories260K's, written as a GGUF
    /// SentencePiece vocabulary with token types.
    /// </summary>
    [Fact]
    public void A_gguf_model_renders_chats_with_the_template_in_its_metadata()
    {
        var (tokens, scores) = ActorRing.Model.Tests.Support.GgufWriter.Llama2cVocabulary(Path.Combine(ActorRing.Model.ModelDirectory.DefaultBundledPath(), "llama2c", "tok512.bin"));
        var types = tokens.Select((t, i) => i == 0 ? 2 : i < 3 ? 3 : t.StartsWith("<0x", StringComparison.Ordinal) ? 6 : 1).ToArray();
        var dir = Directory.CreateTempSubdirectory("actorring-gguf-chat-");
        var chat = Path.Combine(dir.FullName, "chat.json");
        try
        {
            string gguf = Path.Combine(dir.FullName, "model.gguf");
            ActorRing.Model.Tests.Support.GgufWriter.Write(gguf, new Dictionary<string, object>
            {
                ["tokenizer.ggml.model"] = "llama",
                ["tokenizer.ggml.tokens"] = tokens.ToArray(),
                ["tokenizer.ggml.scores"] = scores.ToArray(),
                ["tokenizer.ggml.token_type"] = types,
                ["tokenizer.ggml.bos_token_id"] = 1u,
                ["tokenizer.ggml.eos_token_id"] = 2u,
                ["tokenizer.chat_template"] = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}",
            }, []);
            File.WriteAllText(chat, """[{"role": "user", "content": "Once upon"}, {"role": "assistant", "content": "a time"}]""");

            var (code, output) = Run("", "--model", gguf, "--chat", chat);
            Assert.Equal(0, code);
            int[] Text(string text) => System.Text.Json.JsonSerializer.Deserialize<int[]>(Run("", "--model", gguf, "--text", text, "--no-special-tokens").Output)!;
            // Each piece of text between two control tokens gets the dummy space, as llama.cpp tokenizes a chat prompt.
            int[] expected = [1, .. Text("[user] Once upon"), 2, .. Text("[assistant] a time"), 2];
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(expected) + "\n", output);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Bad_input_names_the_line_option_and_value()
    {
        Assert.Contains("stdin line 2", Assert.Throws<UsageException>(() => Run("\"ok\"\nnot json\n")).Message);
        Assert.Contains("not json", Assert.Throws<UsageException>(() => Run("\"ok\"\nnot json\n")).Message);
        Assert.Contains("id 99999 is outside the vocabulary [0, 512)", Assert.Throws<UsageException>(() => Run("", "--decode", "--ids", "5,99999")).Message);
        Assert.Contains("stdin line 1: expected a JSON array", Assert.Throws<UsageException>(() => Run("\"text\"\n", "--decode")).Message);
        Assert.Contains("--decode reads ids", Assert.Throws<UsageException>(() => Run("", "--decode", "--text", "x")).Message);
        Assert.Contains("'/no/such/dir' does not exist", Assert.Throws<UsageException>(() => Run("", "--model", "/no/such/dir", "--text", "x")).Message);
        Assert.Contains("unknown option '--bogus'", Assert.Throws<UsageException>(() => Run("", "--bogus", "1")).Message);
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """[{"role": "user"}]""");
            var e = Assert.Throws<UsageException>(() => Run("", "--chat", file));
            Assert.Contains("message 0", e.Message);
            Assert.Contains("\"content\"", e.Message);
        }
        finally
        {
            File.Delete(file);
        }
    }
}

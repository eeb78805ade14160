using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using ActorRing.Host.Cli;
using ActorRing.Model;
using ActorRing.Model.Tokenization;
using ActorRing.Templating;

namespace ActorRing.Host.Commands;

/// <summary>
/// <c>actorring tokenize</c>, like llama.cpp's llama-tokenize, for users who debug their prompts: text to ids
/// (<c>--text</c>, or one JSON string per stdin line), ids to text (<c>--decode</c>), or a chat rendered
/// through the model's template and then tokenized (<c>--chat FILE.json</c>).
/// </summary>
internal static class TokenizeCommand
{
    /// <summary>tokenize's options; a field declared here is an option of the verb.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<string?> Model = Opt.Text("--model", "DIR|FILE",
            "Model directory, bundle folder or tokenizer file (tokenizer.json, tokenizer.model, tokenizer.bin) [default: the bundled stories260K]");
        public readonly Option<string?> Text = Opt.Text("--text", "TEXT", "Text to encode [default: one JSON string per stdin line]");
        public readonly Option<string?> Chat = Opt.Text("--chat", "MESSAGES.json",
            "A JSON array of {\"role\", \"content\"} messages, rendered through the model's chat template, then encoded");
        public readonly Option<bool> Decode = Opt.Flag("--decode", "Decode ids to text instead");
        public readonly IntListOption Ids = Opt.IntList("--ids", "1,403,...", "Ids to decode [default: one JSON array per stdin line]");
        public readonly Option<bool> NoSpecialTokens = Opt.Flag("--no-special-tokens", "Encode without BOS and the other special tokens");
    }

    // Decoded text keeps its characters readable ("你好", not "\u4F60\u597D"); the output is for a terminal.
    private static readonly JsonSerializerOptions Output = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var options = new Options();
        var command = Build(options);
        command.SetAction(result => Run(options, result, Console.In, result.InvocationConfiguration.Output));
        return command;
    }

    /// <summary>Runs tokenize with <paramref name="args"/> (after the verb) in this process.</summary>
    internal static int Run(string[] args, TextReader input, TextWriter output)
    {
        var options = new Options();
        return Run(options, CommandLine.ParseVerb(Build(options), args), input, output);
    }

    private static Command Build(Options options)
    {
        var command = new Command("tokenize",
            "Text to token ids, ids to text (--decode), or a chat through the model's template (--chat), as JSON lines");
        options.AddTo(command);
        return command;
    }

    private static int Run(Options o, ParseResult cli, TextReader input, TextWriter output)
    {
        var decode = cli.GetValue(o.Decode);
        string? text = cli.GetValue(o.Text), chat = cli.GetValue(o.Chat);
        int[]? ids = o.Ids.Get(cli);
        if (decode && (text is not null || chat is not null))
            throw new UsageException("--decode reads ids (--ids or stdin); it cannot be combined with --text or --chat");
        if (!decode && ids is not null) throw new UsageException("--ids is for --decode; to encode, give --text");
        if (text is not null && chat is not null) throw new UsageException("give either --text or --chat, not both");

        var modelPath = cli.GetValue(o.Model) ?? UsageException.FromUserErrors(ModelDirectory.DefaultBundledPath);
        var tokenizer = LoadTokenizer(modelPath);
        var addSpecial = !cli.GetValue(o.NoSpecialTokens);

        if (decode)
        {
            if (ids is not null)
            {
                output.WriteLine(JsonSerializer.Serialize(Decode(tokenizer, ids, "--ids"), Output));
                return 0;
            }

            return EachLine(input, output, (line, where) =>
            {
                int[]? parsed;
                try
                {
                    parsed = JsonSerializer.Deserialize<int[]>(line);
                }
                catch (JsonException)
                {
                    parsed = null;
                }

                if (parsed is null) throw new UsageException($"{where}: expected a JSON array of token ids like [1, 403], got {Clip(line)}");
                return JsonSerializer.Serialize(Decode(tokenizer, parsed, where), Output);
            });
        }

        if (chat is { } chatFile)
        {
            var messages = ReadMessages(chatFile);
            string prompt;
            try
            {
                prompt = Generation.ModelChatTemplate.Load(ModelDirectory.Recognise(modelPath), overrideFile: null).Render(messages, addGenerationPrompt: true);
            }
            catch (ChatTemplateException e)
            {
                throw new UsageException($"the chat template refused {chatFile}: {e.Message}");
            }

            // The same ids the server would run for these messages.
            output.WriteLine(JsonSerializer.Serialize(tokenizer.EncodePrompt(prompt)));
            return 0;
        }

        if (text is not null)
        {
            output.WriteLine(JsonSerializer.Serialize(tokenizer.Encode(text, addSpecial)));
            return 0;
        }

        return EachLine(input, output, (line, where) =>
        {
            string? parsed;
            try
            {
                parsed = JsonSerializer.Deserialize<string>(line);
            }
            catch (JsonException)
            {
                parsed = null;
            }

            if (parsed is null) throw new UsageException($"{where}: expected a JSON string like \"Hello\", got {Clip(line)}");
            return JsonSerializer.Serialize(tokenizer.Encode(parsed, addSpecial));
        });
    }

    /// <summary>A model directory, a bundle folder (models/stories260K) or a tokenizer file.</summary>
    private static ITextTokenizer LoadTokenizer(string path)
    {
        var hasTokenizer = File.Exists(path) || new[] { "tokenizer.json", "tokenizer.model", "tokenizer.bin" }.Any(f => File.Exists(Path.Combine(path, f)));
        var dir = hasTokenizer ? path : UsageException.FromUserErrors(() => ModelDirectory.Recognise(path).Path);
        return UsageException.FromUserErrors(() => TokenizerLoader.Load(dir));
    }

    private static string Decode(ITextTokenizer tokenizer, IReadOnlyList<int> ids, string where)
    {
        foreach (var id in ids)
        {
            if (id < 0 || id >= tokenizer.VocabSize)
                throw new UsageException($"{where}: id {id} is outside the vocabulary [0, {tokenizer.VocabSize})");
        }

        return tokenizer.Decode(ids);
    }

    private static int EachLine(TextReader input, TextWriter output, Func<string, string, string> convert)
    {
        var number = 0;
        while (input.ReadLine() is { } line)
        {
            number++;
            if (line.Length == 0) continue;
            output.WriteLine(convert(line, $"stdin line {number}"));
            output.Flush();
        }

        return 0;
    }

    private static List<ChatMessage> ReadMessages(string file)
    {
        string json;
        try
        {
            json = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"option --chat: cannot read '{file}': {e.Message}");
        }

        const string shape = "expected a JSON array of messages like [{\"role\": \"user\", \"content\": \"Hi\"}]";
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new UsageException($"option --chat: '{file}' holds a JSON {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}; {shape}");
            var messages = new List<ChatMessage>();
            var i = 0;
            foreach (var m in doc.RootElement.EnumerateArray())
            {
                if (m.ValueKind != JsonValueKind.Object
                    || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                    || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                {
                    throw new UsageException($"option --chat: message {i} of '{file}' is {Clip(m.GetRawText())}; each message needs a string \"role\" and a string \"content\"");
                }

                messages.Add(new ChatMessage(role.GetString()!, content.GetString()!));
                i++;
            }

            return messages;
        }
        catch (JsonException e)
        {
            throw new UsageException($"option --chat: '{file}' is not valid JSON ({e.Message}); {shape}");
        }
    }

    private static string Clip(string s) => s.Length <= 60 ? s : s[..60] + "…";

}

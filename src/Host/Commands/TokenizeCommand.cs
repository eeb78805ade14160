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
    private static readonly string[] Known = ["model", "text", "decode", "ids", "chat", "no-special-tokens"];

    // Decoded text keeps its characters readable ("你好", not "\u4F60\u597D"); the output is for a terminal.
    private static readonly JsonSerializerOptions Output = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Task<int> RunAsync(string[] args) => Task.FromResult(Run(args, Console.In, Console.Out));

    internal static int Run(string[] args, TextReader input, TextWriter output)
    {
        var cli = CliArgs.Parse(args, "decode", "no-special-tokens");
        cli.EnsureOnly(Known);
        if (cli.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cli.Positionals[0]}'");
        var decode = cli.Flag("decode");
        if (decode && (cli.Has("text") || cli.Has("chat")))
            throw new UsageException("--decode reads ids (--ids or stdin); it cannot be combined with --text or --chat");
        if (!decode && cli.Has("ids")) throw new UsageException("--ids is for --decode; to encode, give --text");
        if (cli.Has("text") && cli.Has("chat")) throw new UsageException("give either --text or --chat, not both");

        var modelPath = cli.String("model") ?? UsageException.FromUserErrors(ModelDirectory.DefaultBundledPath);
        var tokenizer = LoadTokenizer(modelPath);
        var addSpecial = !cli.Flag("no-special-tokens");

        if (decode)
        {
            if (cli.IntList("ids") is { } ids)
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

        if (cli.String("chat") is { } chatFile)
        {
            var messages = ReadMessages(chatFile);
            string prompt;
            try
            {
                prompt = ChatTemplates.Load(modelPath).Render(messages, addGenerationPrompt: true);
            }
            catch (ChatTemplateException e)
            {
                throw new UsageException($"the chat template refused {chatFile}: {e.Message}");
            }

            // The same ids the server would run for these messages.
            output.WriteLine(JsonSerializer.Serialize(tokenizer.EncodePrompt(prompt)));
            return 0;
        }

        if (cli.String("text") is { } text)
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

using System.Text.Json;

namespace ActorRing.Templating;

/// <summary>
/// Finds the chat template a model ships, the way Hugging Face does. This is the one entry point the
/// server and the CLI call:
/// <code>IChatTemplate template = ChatTemplates.Load(modelDirectory, options.ChatTemplateFile);</code>
/// Order of precedence:
/// <list type="number">
/// <item><paramref name="overrideFile"/> (<c>--chat-template FILE</c>): the file's text is the Jinja source;</item>
/// <item><c>chat_template.jinja</c> in the model directory;</item>
/// <item><c>chat_template.json</c> in the model directory (its "chat_template" field);</item>
/// <item>"chat_template" in <c>tokenizer_config.json</c>: a string, or a list of {name, template} where the
///   one named "default" is taken (and, as Hugging Face does, the one named "tool_use" when a request has tools);</item>
/// <item>none of these: <see cref="PlainChatTemplate"/>, the message contents joined by newlines.</item>
/// </list>
/// The <c>bos_token</c> and <c>eos_token</c> strings come from <c>tokenizer_config.json</c>, written either as
/// a string or as an AddedToken object with a "content" field.
/// </summary>
public static class ChatTemplates
{
    /// <exception cref="ChatTemplateException">A file is missing, unreadable or malformed, or the template does not
    /// parse; the message names the file and the fix.</exception>
    /// <param name="clock">The clock behind the templates' <c>strftime_now</c>; the system clock unless a test fixes it.</param>
    public static IChatTemplate Load(string modelDirectory, string? overrideFile = null, TimeProvider? clock = null)
    {
        // A checkpoint file (a llama2.c .bin) stands for the directory it sits in.
        if (File.Exists(modelDirectory)) modelDirectory = Path.GetDirectoryName(Path.GetFullPath(modelDirectory))!;
        else if (!Directory.Exists(modelDirectory))
            throw new ChatTemplateException($"model directory '{modelDirectory}' does not exist; give the directory that holds the model's tokenizer_config.json");
        var config = ReadTokenizerConfig(modelDirectory);
        var bos = TokenText(config, "bos_token", modelDirectory);
        var eos = TokenText(config, "eos_token", modelDirectory);

        var (source, toolUse, origin) = FindSource(modelDirectory, overrideFile, config);
        if (source is null) return new PlainChatTemplate();
        return FromSource(source, bos, eos, origin, clock, toolUse);
    }

    /// <summary>
    /// A template whose Jinja source the caller found (a GGUF file's <c>tokenizer.chat_template</c>), with the
    /// <c>bos_token</c>/<c>eos_token</c> texts it renders; <paramref name="origin"/> names the source in errors.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template does not parse.</exception>
    public static IChatTemplate FromSource(string source, string? bosToken, string? eosToken, string origin,
        TimeProvider? clock = null, string? toolUseSource = null)
    {
        try
        {
            return new JinjaChatTemplate(source, bosToken, eosToken, clock, toolUseSource);
        }
        catch (ChatTemplateException e)
        {
            throw new ChatTemplateException($"the chat template from {origin} does not parse: {e.Message}", e);
        }
    }

    private static (string? Source, string? ToolUse, string Origin) FindSource(string modelDirectory, string? overrideFile, JsonElement? config)
    {
        if (overrideFile is not null)
        {
            if (!File.Exists(overrideFile))
                throw new ChatTemplateException($"--chat-template '{overrideFile}' does not exist; give the path of a Jinja template file");
            return (File.ReadAllText(overrideFile), null, $"--chat-template '{overrideFile}'");
        }
        var jinjaFile = Path.Combine(modelDirectory, "chat_template.jinja");
        if (File.Exists(jinjaFile)) return (File.ReadAllText(jinjaFile), null, jinjaFile);

        var jsonFile = Path.Combine(modelDirectory, "chat_template.json");
        if (File.Exists(jsonFile))
        {
            var json = ParseJson(jsonFile);
            if (json.TryGetProperty("chat_template", out var fromJson))
                return TemplateFrom(fromJson, jsonFile);
        }

        var configFile = Path.Combine(modelDirectory, "tokenizer_config.json");
        if (config is { } c && c.TryGetProperty("chat_template", out var template) && template.ValueKind != JsonValueKind.Null)
            return TemplateFrom(template, configFile);
        return (null, null, "");
    }

    private static (string? Source, string? ToolUse, string Origin) TemplateFrom(JsonElement template, string file)
    {
        if (template.ValueKind == JsonValueKind.String) return (template.GetString()!, null, file);
        if (template.ValueKind == JsonValueKind.Array)
        {
            var named = new Dictionary<string, string>();
            foreach (var entry in template.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object
                    || !entry.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                    || !entry.TryGetProperty("template", out var source) || source.ValueKind != JsonValueKind.String)
                    throw new ChatTemplateException($"\"chat_template\" in {file} is a list whose entries must be {{\"name\": ..., \"template\": ...}}");
                named[name.GetString()!] = source.GetString()!;
            }
            if (named.TryGetValue("default", out var defaultSource))
                return (defaultSource, named.GetValueOrDefault("tool_use"), $"{file} (template \"default\")");
            throw new ChatTemplateException(
                $"\"chat_template\" in {file} has named templates ({string.Join(", ", named.Keys)}) but none named \"default\"; pass one with --chat-template FILE");
        }
        throw new ChatTemplateException($"\"chat_template\" in {file} is a {template.ValueKind}; expected a string or a list of named templates");
    }

    private static JsonElement? ReadTokenizerConfig(string modelDirectory)
    {
        var file = Path.Combine(modelDirectory, "tokenizer_config.json");
        return File.Exists(file) ? ParseJson(file) : null;
    }

    private static JsonElement ParseJson(string file)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(file));
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ChatTemplateException($"{file} must hold a JSON object, not a {document.RootElement.ValueKind}");
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ChatTemplateException($"{file} is not valid JSON: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new ChatTemplateException($"cannot read {file}: {e.Message}", e);
        }
    }

    /// <summary>A special token written as "text" or as {"__type": "AddedToken", "content": "text", ...}.</summary>
    private static string? TokenText(JsonElement? config, string field, string modelDirectory)
    {
        if (config is not { } c || !c.TryGetProperty(field, out var token)) return null;
        return token.ValueKind switch
        {
            JsonValueKind.String => token.GetString(),
            JsonValueKind.Null => null,
            JsonValueKind.Object when token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
            _ => throw new ChatTemplateException(
                $"\"{field}\" in {Path.Combine(modelDirectory, "tokenizer_config.json")} must be a string or an object with a \"content\" string"),
        };
    }
}

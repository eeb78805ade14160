using System.Text.Json;
using System.Text.Json.Nodes;
using ActorRing.Model.Sampling;
using ActorRing.Templating;

namespace ActorRing.Host.Http;

/// <summary>
/// How a chat request lets the model call functions (OpenAI's <c>tools</c>, <c>tool_choice</c> and
/// <c>parallel_tool_calls</c>), and how its answers are read back into calls.
/// <list type="bullet">
/// <item><b>auto</b> (the default when tools are given): the template describes the tools, the model answers freely,
/// and the calls it writes in its family's form (<see cref="ToolCallSyntax"/>) become <c>tool_calls</c>. A model whose
/// template teaches no form this server reads cannot choose, so auto is refused for it with what to send instead.</item>
/// <item><b>required</b> or a named function: the answer is forced, token by token, to be one call (the JSON
/// constraint of structured outputs). With one function to call, the answer is its arguments, following its
/// <c>parameters</c> schema, as vLLM forces a named function; with several, it is <c>{"name": …, "arguments": {…}}</c>,
/// a union told apart by "name", which is written first. This works with any model, the bundled one included.</item>
/// <item><b>none</b>: the tools are left out of the prompt and the answer is text.</item>
/// </list>
/// </summary>
/// <param name="Tools">OpenAI's tools list as sent, for the template.</param>
/// <param name="Forced">The name of the function a forced call must use (a named tool_choice), "" for any of them
/// (required), or null when the model chooses (auto).</param>
/// <param name="OnlyFunction">The function a forced answer's arguments are for, when there is one to call; null when
/// the answer names it (required, with several).</param>
/// <param name="CallSchema">The JSON Schema a forced answer follows; null in auto.</param>
/// <param name="Parallel">Whether an auto answer may hold several calls (parallel_tool_calls); when false only the first is kept.</param>
internal sealed record ToolUse(JsonElement Tools, string? Forced, string? OnlyFunction, string? CallSchema, ToolCallSyntax? Syntax, bool Parallel)
{
    /// <summary>OpenAI's limit on a function's name: letters, digits, '_' and '-', at most 64.</summary>
    private static readonly System.Text.RegularExpressions.Regex FunctionName = new("^[A-Za-z0-9_-]{1,64}$");

    /// <summary>The most functions one request may offer (OpenAI allows 128).</summary>
    public const int MaxTools = 64;

    /// <summary>
    /// The request's tool use, or null when it offers none (no tools, an empty list, or tool_choice "none").
    /// </summary>
    public static ToolUse? From(JsonFields f, ToolCallSyntax? syntax)
    {
        var tools = f.Get("tools");
        if (tools is { } t && t.ValueKind != JsonValueKind.Array) throw JsonFields.Type("tools", "an array of {\"type\": \"function\", \"function\": {...}}", t);
        bool parallel = f.Bool("parallel_tool_calls") ?? true;
        var functions = tools is { } list ? Functions(list) : [];
        string choice = Choice(f, functions.Select(fn => fn.Name).ToList());
        if (functions.Count == 0 || choice == "none") return null;
        if (choice == "auto")
        {
            if (syntax is null)
                throw ApiException.BadRequest("tool_choice \"auto\" (the default with tools) lets the model decide to call a function, but this model's chat template teaches no form of call this server reads (hermes, llama3_json or mistral); send tool_choice \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}} to have a call written for you, or \"none\"", "tool_choice", "unsupported_parameter");
            return new ToolUse(tools!.Value, null, null, null, syntax, parallel);
        }
        var called = choice == "required" ? functions : functions.Where(fn => fn.Name == choice).ToList();
        string schema = CallSchemaOf(called);
        try
        {
            JsonSchema.FromText(schema); // compiled once here; the sampler finds it by the same string
        }
        catch (JsonSchemaException e)
        {
            throw ApiException.BadRequest($"tool_choice {(choice == "required" ? "\"required\"" : $"'{choice}'")} forces the call to follow the function's parameters, and that schema cannot be enforced: {e.Message}", "tools", "unsupported_parameter");
        }
        return new ToolUse(tools!.Value, choice == "required" ? "" : choice, called.Count == 1 ? called[0].Name : null, schema, syntax, parallel);
    }

    private sealed record Function(string Name, JsonElement? Parameters);

    private static List<Function> Functions(JsonElement list)
    {
        if (list.GetArrayLength() > MaxTools) throw ApiException.BadRequest($"tools may hold at most {MaxTools} functions, got {list.GetArrayLength()}", "tools");
        var functions = new List<Function>();
        int i = 0;
        foreach (var tool in list.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object) throw JsonFields.Type(at, "an object", tool);
            var tf = new JsonFields(tool);
            string? type = tf.String("type");
            if (type != "function")
                throw ApiException.BadRequest($"{at}.type must be \"function\" (the only kind of tool), got {(type is null ? "nothing" : $"\"{type}\"")}", $"{at}.type");
            if (tf.Get("function") is not { } fn) throw ApiException.BadRequest($"{at}.function is required: {{\"name\", \"description\", \"parameters\"}}", $"{at}.function", "missing_required_parameter");
            if (fn.ValueKind != JsonValueKind.Object) throw JsonFields.Type($"{at}.function", "an object", fn);
            var ff = new JsonFields(fn);
            string name = ff.String("name") ?? throw ApiException.BadRequest($"{at}.function.name is required", $"{at}.function.name", "missing_required_parameter");
            if (!FunctionName.IsMatch(name))
                throw ApiException.BadRequest($"{at}.function.name must be 1 to 64 letters, digits, '_' or '-', got '{name}'", $"{at}.function.name");
            if (functions.Any(other => other.Name == name)) throw ApiException.BadRequest($"{at}.function.name '{name}' is given twice", $"{at}.function.name");
            ff.String("description");
            ff.Bool("strict"); // either way: a forced call follows its parameters, and auto reads what the model wrote
            var parameters = ff.Get("parameters");
            if (parameters is { } p && p.ValueKind != JsonValueKind.Object) throw JsonFields.Type($"{at}.function.parameters", "a JSON Schema object", p);
            functions.Add(new Function(name, parameters));
        }
        return functions;
    }

    /// <summary>tool_choice as "none", "auto", "required" or the name of the function to call.</summary>
    private static string Choice(JsonFields f, IReadOnlyList<string> names)
    {
        if (f.Get("tool_choice") is not { } c) return "auto";
        string choice;
        if (c.ValueKind == JsonValueKind.String)
        {
            choice = c.GetString()!;
            if (choice is not ("none" or "auto" or "required"))
                throw ApiException.BadRequest($"tool_choice must be \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got \"{choice}\"", "tool_choice");
        }
        else if (c.ValueKind == JsonValueKind.Object)
        {
            var cf = new JsonFields(c);
            if (cf.String("type") != "function" || cf.Get("function") is not { ValueKind: JsonValueKind.Object } fn || new JsonFields(fn).String("name") is not { } name)
                throw ApiException.BadRequest("tool_choice as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice");
            if (!names.Contains(name))
                throw ApiException.BadRequest($"tool_choice names the function '{name}', which is not in tools ({(names.Count == 0 ? "none given" : string.Join(", ", names))})", "tool_choice");
            choice = name;
        }
        else
        {
            throw JsonFields.Type("tool_choice", "a string or an object", c);
        }
        if (names.Count == 0 && choice != "none" && choice != "auto")
            throw ApiException.BadRequest($"tool_choice \"{choice}\" asks for a call, but tools offers no function", "tool_choice");
        return choice;
    }

    /// <summary>
    /// The schema of a forced answer: one function's parameters (a function without parameters takes an empty object),
    /// or, with several, a call object whose "name" (one of them, written first) says whose parameters its "arguments"
    /// follow: a union told apart by "name".
    /// </summary>
    private static string CallSchemaOf(IReadOnlyList<Function> functions)
    {
        JsonNode Parameters(Function fn) => fn.Parameters is { } p ? JsonNode.Parse(p.GetRawText())!
            : new JsonObject { ["type"] = "object", ["properties"] = new JsonObject(), ["additionalProperties"] = false };
        if (functions.Count == 1) return Parameters(functions[0]).ToJsonString();
        JsonObject Call(Function fn) => new()
        {
            ["type"] = "object",
            ["properties"] = new JsonObject { ["name"] = new JsonObject { ["const"] = fn.Name }, ["arguments"] = Parameters(fn) },
            ["required"] = new JsonArray("name", "arguments"),
            ["additionalProperties"] = false,
        };
        return new JsonObject { ["anyOf"] = new JsonArray([.. functions.Select(fn => (JsonNode)Call(fn))]) }.ToJsonString();
    }

    /// <summary>
    /// Reads an answer's calls: a forced answer is one call object (or, cut off, text); an auto answer is read in the
    /// template's form. With parallel_tool_calls false only the first call is kept.
    /// </summary>
    public ToolCallAnswer Read(string text)
    {
        if (CallSchema is null)
        {
            var answer = Syntax!.Parse(text);
            return Parallel || answer.Calls.Count <= 1 ? answer : answer with { Calls = [answer.Calls[0]] };
        }
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            string name = OnlyFunction ?? root.GetProperty("name").GetString()!;
            // One function's arguments are the answer, as written (a stream sends them so, piece by piece); from a
            // union's call object they are cut out, compact.
            string arguments = OnlyFunction is not null ? text.TrimStart() : ToolCallSyntax.CompactArguments(root.GetProperty("arguments"));
            return new ToolCallAnswer(null, [new ToolCall(NewCallId(), name, arguments)]);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return new ToolCallAnswer(text, []); // cut off by max_tokens or a stop string before the call closed
        }
    }

    /// <summary>A call id in the form the template takes back.</summary>
    public string NewCallId() => Syntax?.NewId() ?? ToolCallSyntax.OpenAiId();

    /// <summary>The answer is one function's arguments (a forced call with one function to call), so a stream sends them
    /// as they are written, as OpenAI streams a call's arguments.</summary>
    public bool StreamsArguments => OnlyFunction is not null;

    /// <summary>Where a streamed answer's unsent text must be held back from: a forced answer is all call, an auto one
    /// from where its template's form of call may begin (<see cref="ToolCallSyntax.HoldFrom"/>).</summary>
    public int HoldFrom(string unsent, bool atStart) => CallSchema is null ? Syntax!.HoldFrom(unsent, atStart) : 0;

    /// <summary>The finish reason of an answer that holds calls: "tool_calls", except for a named function, which
    /// OpenAI ends with "stop".</summary>
    public string FinishReason(string generated) => Forced is { Length: > 0 } ? generated : "tool_calls";
}

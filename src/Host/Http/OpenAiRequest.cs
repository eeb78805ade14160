using System.Text.Json;
using ActorRing.Host.Generation;
using ActorRing.Model.Sampling;
using ActorRing.Templating;

namespace ActorRing.Host.Http;

/// <summary>A parsed chat or legacy completion request: the prompt as ids, how to sample, how to answer.</summary>
/// <param name="Logprobs">Null: none. Otherwise the number of alternatives per token (chat's top_logprobs, the
/// legacy API's integer logprobs).</param>
/// <param name="N">Choices to generate for the prompt (OpenAI's n), each its own sequence in the batch.</param>
/// <param name="BestOf">Choices to generate, of which the N with the highest log-probability per token are returned
/// (the legacy API's best_of; at least N).</param>
/// <param name="Echo">The prompt's text, which the answer starts with (the legacy API's echo), or null.</param>
/// <param name="Tools">The functions a chat request lets the model call, and how; null when none.</param>
/// <param name="ThinkingPrompt">The rendered prompt, when the model's template teaches a think block: its answers are
/// split into reasoning and content (an answer held to JSON is held to it after the block); null otherwise.</param>
internal sealed record OpenAiRequest(GenerationInput Input, bool Stream, bool IncludeUsage, int? Logprobs, string PromptParam, int N = 1,
    int BestOf = 1, string? Echo = null, ToolUse? Tools = null, string? ThinkingPrompt = null)
{
    /// <summary>The choices generated: best_of when it asks for more than n.</summary>
    public int Generated => Math.Max(N, BestOf);

    /// <summary>Whether the choices are ranked (best_of above n), which needs each sampled token's log-probability.</summary>
    public bool Ranked => BestOf > N;

    /// <summary>The most choices one request may ask for (OpenAI allows 128); each takes a place in the batch.</summary>
    public const int MaxChoices = 64;

    /// <summary>
    /// One input per choice. They share the prompt, so the prefix cache prefills its full blocks once. With a
    /// seed, choice i samples with seed + i: the choices differ, and each is reproducible. Without one, each draws
    /// its own. Greedy choices are all the same text, as OpenAI's are.
    /// </summary>
    public IReadOnlyList<GenerationInput> ChoiceInputs()
    {
        // Ranking needs the sampled tokens' log-probabilities even when the answer shows none.
        var input = Ranked && Input.Sampling.Logprobs is null ? Input with { Sampling = Input.Sampling with { Logprobs = 0 } } : Input;
        return [.. Enumerable.Range(0, Generated).Select(i => i == 0 || input.Sampling.Seed is not ulong seed
            ? input
            : input with { Sampling = input.Sampling with { Seed = unchecked(seed + (ulong)i) } })];
    }

    /// <summary>The completion length when the request gives none (vLLM lets it run to the end of the context;
    /// a bounded default keeps a forgotten max_tokens from holding the single queue for minutes).</summary>
    public const int DefaultMaxTokens = 256;

    private static readonly string[] Roles = ["system", "developer", "user", "assistant", "tool"];

    public static OpenAiRequest Chat(JsonFields f, GenerationService service)
    {
        var messages = Messages(f);
        var tools = ToolUse.From(f, service.ToolCallSyntax);
        var format = Format(f);
        if (tools is not null && (format.JsonObject || format.JsonSchema is not null))
            throw ApiException.BadRequest("response_format cannot be combined with tools: a call is written in the model's own form (or, forced, as its function's arguments); drop one of them, or send tool_choice \"none\"", "response_format");
        if (f.Bool("logprobs") is not true && f.Has("top_logprobs"))
            throw ApiException.BadRequest("top_logprobs needs logprobs: true", "top_logprobs");
        int? logprobs = f.Bool("logprobs") is true ? f.Int("top_logprobs", 0, SamplingOptions.MaxLogprobs) ?? 0 : null;
        var variables = TemplateVariables(f);
        IReadOnlyList<int> ids;
        string promptText;
        try
        {
            promptText = service.RenderChat(messages, addGenerationPrompt: true, tools?.Tools, variables);
            ids = service.Encode(promptText);
        }
        catch (ChatTemplateException e)
        {
            throw ApiException.BadRequest($"the chat template refused the conversation: {e.Message}", "messages");
        }
        catch (GenerationRequestException e)
        {
            throw ApiException.BadRequest(e.Message, "messages");
        }
        int? max = f.Int("max_completion_tokens", 1, int.MaxValue) ?? f.Int("max_tokens", 1, int.MaxValue);
        string maxParam = f.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        if (tools?.CallSchema is { } callSchema) format = new AnswerFormat(JsonSchema: callSchema);
        // A reasoning model thinks first and writes its JSON after the think block: the constraint waits for it.
        var request = Build(f, service, ids, "messages", max, maxParam, logprobs, format);
        if (!service.TeachesThinking) return request with { Tools = tools };
        if (request.Input.Sampling.ConstrainsJson)
        {
            var think = ThinkSplitter.ForPrompt(promptText).StartsInside ? ThinkBlock.Open : ThinkBlock.Optional;
            request = request with { Input = request.Input with { Sampling = request.Input.Sampling with { ThinkFirst = think } } };
        }
        return request with { Tools = tools, ThinkingPrompt = promptText };
    }

    /// <summary>The variables the template itself sets, which chat_template_kwargs may not replace.</summary>
    private static readonly string[] TemplateOwnVariables =
        ["messages", "tools", "add_generation_prompt", "documents", "bos_token", "eos_token", "strftime_now", "raise_exception"];

    /// <summary>
    /// vLLM's chat_template_kwargs: further variables for the chat template, such as Qwen3's enable_thinking: false
    /// (the template then writes an empty think block, and the model answers at once).
    /// </summary>
    public static Dictionary<string, object?>? TemplateVariables(JsonFields f)
    {
        if (f.Get("chat_template_kwargs") is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Object) throw JsonFields.Type("chat_template_kwargs", "an object of template variables, such as {\"enable_thinking\": false}", v);
        var variables = new Dictionary<string, object?>();
        foreach (var p in v.EnumerateObject())
        {
            if (Array.IndexOf(TemplateOwnVariables, p.Name) >= 0)
                throw ApiException.BadRequest($"chat_template_kwargs may not set '{p.Name}', which the server sets from the request ({string.Join(", ", TemplateOwnVariables)} are its own)", "chat_template_kwargs");
            variables[p.Name] = p.Value;
        }
        return variables.Count == 0 ? null : variables;
    }

    public static OpenAiRequest Completion(JsonFields f, GenerationService service)
    {
        f.Refuse("suffix", "this server does not fill in the middle; drop suffix");
        var ids = Prompt(f, service);
        int? logprobs = f.Int("logprobs", 0, 5);
        bool echo = f.Bool("echo") ?? false;
        if (echo && logprobs is not null)
            throw ApiException.BadRequest("echo with logprobs asks for the prompt's log-probabilities, which this server does not compute; drop one of them", "echo", "unsupported_parameter");
        var request = Build(f, service, ids, "prompt", f.Int("max_tokens", 1, int.MaxValue), "max_tokens", logprobs, Format(f));
        int bestOf = f.Int("best_of", 1, MaxChoices) ?? request.N; // absent: n, all of them returned
        if (bestOf < request.N) throw ApiException.BadRequest($"best_of ({bestOf}) must be at least n ({request.N})", "best_of");
        if (bestOf > 1 && request.Stream) throw ApiException.BadRequest("best_of cannot be used with stream: the best choices are known only at the end", "best_of");
        return request with { BestOf = bestOf, Echo = echo ? EchoText(f, ids, service) : null };
    }

    /// <summary>The prompt as the answer repeats it: a text prompt as given, token ids as they decode.</summary>
    private static string EchoText(JsonFields f, IReadOnlyList<int> ids, GenerationService service)
    {
        var p = f.Get("prompt")!.Value;
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String) p = p[0];
        return p.ValueKind == JsonValueKind.String ? p.GetString()! : service.Decode(ids);
    }

    private static OpenAiRequest Build(JsonFields f, GenerationService service, IReadOnlyList<int> ids, string promptParam,
        int? maxTokens, string maxParam, int? logprobs, AnswerFormat format)
    {
        int n = f.Int("n", 1, MaxChoices) ?? 1;
        bool stream = f.Bool("stream") ?? false;
        bool includeUsage = false;
        if (f.Get("stream_options") is { } so)
        {
            if (!stream) throw ApiException.BadRequest("stream_options is only allowed with stream: true", "stream_options");
            if (so.ValueKind != JsonValueKind.Object) throw JsonFields.Type("stream_options", "an object", so);
            includeUsage = new JsonFields(so).Bool("include_usage") ?? false;
        }
        int max;
        try
        {
            max = service.ResolveMaxTokens(ids.Count, maxTokens, DefaultMaxTokens, promptParam, maxParam);
        }
        catch (GenerationRequestException e)
        {
            throw ApiException.BadRequest(e.Message, e.Param, "context_length_exceeded");
        }
        // What the body leaves out comes from the model's generation_config.json (as vLLM does), then from
        // OpenAI's defaults (temperature 1).
        var defaults = service.Defaults;
        var given = defaults.Resolve(new SamplingRequest(
            Temperature: (float?)f.Number("temperature", 0, 2) ?? defaults.Temperature ?? 1,
            TopK: f.Int("top_k", -1, int.MaxValue) is int topK ? Math.Max(0, topK) : null, // vLLM spells "no top-k" -1, we spell it 0
            TopP: (float?)Positive(f, "top_p", 1),
            RepetitionPenalty: (float?)Positive(f, "repetition_penalty", 100),
            Seed: f.Integer("seed", long.MinValue, long.MaxValue) is long seed ? unchecked((ulong)seed) : null,
            MaxTokens: max,
            StopStrings: Stop(f),
            StopTokenIds: StopTokenIds(f),
            IgnoreEos: f.Bool("ignore_eos") ?? false));
        var sampling = given with
        {
            MinP = (float)(f.Number("min_p", 0, 1) ?? 0),
            PresencePenalty = (float)(f.Number("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(f.Number("frequency_penalty", -2, 2) ?? 0),
            Logprobs = logprobs,
            LogitBias = LogitBias(f),
            MinTokens = MinTokens(f, max),
            JsonObject = format.JsonObject,
            JsonSchema = format.JsonSchema,
        };
        // JSON mode's clashes with other fields (ignore_eos, min_tokens) are answered as errors of response_format.
        if (sampling.ConstrainsJson && sampling.GetErrors().FirstOrDefault(e => e.StartsWith("response_format", StringComparison.Ordinal)) is { } clash)
            throw ApiException.BadRequest(clash, "response_format");
        var input = new GenerationInput(ids, sampling);
        try
        {
            service.Validate(input, promptParam);
        }
        catch (GenerationRequestException e)
        {
            throw ApiException.BadRequest(e.Message, e.Param);
        }
        return new OpenAiRequest(input, stream, includeUsage, logprobs, promptParam, n);
    }

    /// <summary>A request's response_format: plain text, any JSON object, or a JSON object that follows a schema.</summary>
    private sealed record AnswerFormat(bool JsonObject = false, string? JsonSchema = null);

    /// <summary>
    /// OpenAI's response_format: "text" (the default), "json_object", whose completion is one JSON object, or
    /// "json_schema" ({"name", "schema", "strict"}), whose object follows the schema (the sampler allows only tokens
    /// that continue it, then EOS). vLLM takes it in the legacy API as well. A schema keyword this server would not
    /// enforce is refused by name (JsonSchema says which it enforces), strict or not.
    /// </summary>
    private static AnswerFormat Format(JsonFields f)
    {
        if (f.Get("response_format") is not { } v) return new();
        if (v.ValueKind != JsonValueKind.Object) throw JsonFields.Type("response_format", "an object such as {\"type\": \"json_object\"}", v);
        var rf = new JsonFields(v);
        string? type = rf.String("type");
        switch (type)
        {
            case "text": return new();
            case "json_object": return new(JsonObject: true);
            case "json_schema":
                if (rf.Get("json_schema") is not { ValueKind: JsonValueKind.Object } spec)
                    throw ApiException.BadRequest("response_format json_schema needs json_schema: {\"name\", \"schema\"}", "response_format", "missing_required_parameter");
                var sf = new JsonFields(spec);
                if (string.IsNullOrEmpty(sf.String("name"))) throw ApiException.BadRequest("response_format.json_schema.name is required", "response_format", "missing_required_parameter");
                sf.Bool("strict"); // either way: every keyword used is enforced, the others are refused
                if (sf.Get("schema") is not { } schema)
                    throw ApiException.BadRequest("response_format.json_schema.schema is required: the JSON Schema of the answer", "response_format", "missing_required_parameter");
                string text = schema.GetRawText();
                try
                {
                    JsonSchema.FromText(text); // compiled once for this request: later checks of the same text find it
                }
                catch (JsonSchemaException e)
                {
                    throw ApiException.BadRequest($"response_format json_schema: {e.Message}", "response_format", "unsupported_parameter");
                }
                return new(JsonSchema: text);
            case null:
                throw ApiException.BadRequest("response_format.type is required: \"text\", \"json_object\" or \"json_schema\"", "response_format", "missing_required_parameter");
            default:
                throw ApiException.BadRequest($"response_format.type must be \"text\", \"json_object\" or \"json_schema\", got \"{type}\"", "response_format");
        }
    }

    /// <summary>A number in (0, max]: zero would remove every token (top_p) or divide by zero (repetition_penalty).</summary>
    private static double? Positive(JsonFields f, string name, double max)
    {
        if (f.Number(name, 0, max) is not { } v) return null;
        return v > 0 ? v : throw ApiException.BadRequest($"{name} must be in (0, {max}], got 0", name);
    }

    /// <summary>
    /// OpenAI's logit_bias: an object from token ids (as strings, since JSON keys are strings) to a bias in
    /// [-100, 100]. It changes the output, so it is honoured, never ignored.
    /// </summary>
    private static Dictionary<int, float>? LogitBias(JsonFields f)
    {
        if (f.Get("logit_bias") is not { } v || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Object) throw JsonFields.Type("logit_bias", "an object from token ids to biases", v);
        var bias = new Dictionary<int, float>();
        foreach (var p in v.EnumerateObject())
        {
            string at = $"logit_bias[{p.Name}]";
            if (!int.TryParse(p.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw ApiException.BadRequest($"logit_bias keys must be token ids (non-negative integers), got '{p.Name}'", "logit_bias");
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out double b)) throw JsonFields.Type(at, "a number", p.Value);
            if (b < -SamplingOptions.MaxLogitBias || b > SamplingOptions.MaxLogitBias)
                throw ApiException.BadRequest($"{at} must be between -100 and 100, got {p.Value.GetRawText()}", "logit_bias");
            bias[id] = (float)b;
        }
        return bias.Count == 0 ? null : bias;
    }

    /// <summary>vLLM's min_tokens: neither EOS, stop_token_ids nor a stop string ends the completion before this many
    /// tokens.</summary>
    private static int MinTokens(JsonFields f, int maxTokens)
    {
        if (f.Int("min_tokens", 0, int.MaxValue) is not int min || min == 0) return 0;
        if (min > maxTokens) throw ApiException.BadRequest($"min_tokens is {min} but max_tokens is {maxTokens}; min_tokens must not exceed it", "min_tokens");
        return min;
    }

    /// <summary>vLLM's stop_token_ids: token ids that end the completion like EOS (the token is not in the text).</summary>
    private static int[]? StopTokenIds(JsonFields f)
    {
        if (f.Get("stop_token_ids") is not { } v || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw JsonFields.Type("stop_token_ids", "an array of token ids", v);
        var ids = v.EnumerateArray().Select((e, i) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) && id >= 0 ? id
            : throw JsonFields.Type($"stop_token_ids[{i}]", "a token id (non-negative integer)", e)).ToArray();
        return ids.Length == 0 ? null : ids;
    }

    private static List<string>? Stop(JsonFields f)
    {
        if (f.Get("stop") is not { } v) return null;
        List<string> stops = v.ValueKind switch
        {
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array => v.EnumerateArray().Select((e, i) => e.ValueKind == JsonValueKind.String ? e.GetString()!
                : throw JsonFields.Type($"stop[{i}]", "a string", e)).ToList(),
            _ => throw JsonFields.Type("stop", "a string or an array of strings", v),
        };
        if (stops.Count > 16) throw ApiException.BadRequest($"stop may hold at most 16 strings, got {stops.Count}", "stop");
        for (int i = 0; i < stops.Count; i++)
        {
            if (stops[i].Length == 0) throw ApiException.BadRequest($"stop strings must not be empty, but stop[{i}] is", "stop");
        }
        return stops.Count == 0 ? null : stops;
    }

    public static List<ChatMessage> Messages(JsonFields f)
    {
        if (f.Get("messages") is not { } list) throw ApiException.BadRequest("messages is required: a list of {role, content}", "messages", "missing_required_parameter");
        if (list.ValueKind != JsonValueKind.Array) throw JsonFields.Type("messages", "an array", list);
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var m in list.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw JsonFields.Type(at, "an object", m);
            var mf = new JsonFields(m);
            string role = mf.String("role") ?? throw ApiException.BadRequest($"{at}.role is required", $"{at}.role", "missing_required_parameter");
            if (Array.IndexOf(Roles, role) < 0)
                throw ApiException.BadRequest($"{at}.role must be one of {string.Join(", ", Roles)}, got '{role}'", $"{at}.role");
            var calls = role == "assistant" ? ToolCalls(mf, at) : null;
            string? callId = role == "tool" ? mf.String("tool_call_id") ?? throw ApiException.BadRequest($"{at}.tool_call_id is required: the id of the call this message answers", $"{at}.tool_call_id", "missing_required_parameter")
                : null;
            messages.Add(new ChatMessage(role == "developer" ? "system" : role, Content(mf, at), calls, callId));
        }
        if (messages.Count == 0) throw ApiException.BadRequest("messages must not be empty", "messages");
        return messages;
    }

    /// <summary>An assistant turn's earlier calls: [{id, type "function", function: {name, arguments (JSON text)}}].</summary>
    private static List<ToolCall>? ToolCalls(JsonFields m, string at)
    {
        if (m.Get("tool_calls") is not { } list) return null;
        if (list.ValueKind != JsonValueKind.Array) throw JsonFields.Type($"{at}.tool_calls", "an array of calls", list);
        var calls = new List<ToolCall>();
        int i = 0;
        foreach (var call in list.EnumerateArray())
        {
            string cat = $"{at}.tool_calls[{i++}]";
            if (call.ValueKind != JsonValueKind.Object) throw JsonFields.Type(cat, "an object", call);
            var cf = new JsonFields(call);
            string id = cf.String("id") ?? throw ApiException.BadRequest($"{cat}.id is required", $"{cat}.id", "missing_required_parameter");
            if ((cf.String("type") ?? "function") != "function") throw ApiException.BadRequest($"{cat}.type must be \"function\"", $"{cat}.type");
            if (cf.Get("function") is not { ValueKind: JsonValueKind.Object } fn)
                throw ApiException.BadRequest($"{cat}.function is required: {{\"name\", \"arguments\"}}", $"{cat}.function", "missing_required_parameter");
            var ff = new JsonFields(fn);
            string name = ff.String("name") ?? throw ApiException.BadRequest($"{cat}.function.name is required", $"{cat}.function.name", "missing_required_parameter");
            calls.Add(new ToolCall(id, name, ff.String("arguments") ?? "{}"));
        }
        return calls.Count == 0 ? null : calls;
    }

    /// <summary>A string, or a list of text parts (<c>{"type":"text","text":...}</c>, or another of
    /// <paramref name="textTypes"/>) joined together.</summary>
    internal static string Content(JsonFields m, string at, params string[] textTypes)
    {
        if (textTypes.Length == 0) textTypes = ["text"];
        if (m.Get("content") is not { } c) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw JsonFields.Type($"{at}.content", "a string or an array of text parts", c);
        var text = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object) throw JsonFields.Type(pat, "an object", part);
            var pf = new JsonFields(part);
            string type = pf.String("type") ?? "";
            if (Array.IndexOf(textTypes, type) < 0)
                throw ApiException.BadRequest($"{pat}.type must be {string.Join(" or ", textTypes.Select(t => $"'{t}'"))} (this model reads text only), got '{type}'", $"{pat}.type");
            text.Append(pf.String("text") ?? throw ApiException.BadRequest($"{pat}.text is required", $"{pat}.text", "missing_required_parameter"));
        }
        return text.ToString();
    }

    /// <summary>The legacy prompt: a string, a list of token ids, or a list holding one of those.</summary>
    public static IReadOnlyList<int> Prompt(JsonFields f, GenerationService service)
    {
        if (f.Get("prompt") is not { } p) throw ApiException.BadRequest("prompt is required: a string or a list of token ids", "prompt", "missing_required_parameter");
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
            p = p[0];
        try
        {
            if (p.ValueKind == JsonValueKind.String) return service.Encode(p.GetString()!);
        }
        catch (GenerationRequestException e)
        {
            throw ApiException.BadRequest(e.Message, "prompt");
        }
        if (p.ValueKind == JsonValueKind.Array)
        {
            if (p.GetArrayLength() > 1 && p[0].ValueKind != JsonValueKind.Number)
                throw ApiException.BadRequest("prompt may hold one prompt only (n = 1, no batches in one request); send one request per prompt", "prompt");
            return p.EnumerateArray().Select((e, i) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) ? id
                : throw JsonFields.Type($"prompt[{i}]", "a token id (integer)", e)).ToArray();
        }
        throw JsonFields.Type("prompt", "a string or a list of token ids", p);
    }
}

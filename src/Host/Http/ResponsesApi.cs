using System.Text.Json;
using System.Text.Json.Nodes;
using ActorRing.Host.Generation;

namespace ActorRing.Host.Http;

/// <summary>
/// OpenAI's Responses API (<c>POST /v1/responses</c>), the one its newer SDKs and agents use, over the same engine as
/// chat: a request is translated into the chat request it means (instructions and input items into messages, flat
/// function tools into chat's, <c>text.format</c> into response_format), checked and run by the chat path, and its
/// answer told as output items (reasoning, a message, function calls) or, streamed, as the API's named events. This
/// server keeps no responses: <c>previous_response_id</c> is refused (send the whole conversation in input), and
/// <c>store</c> is ignored.
/// </summary>
internal static class ResponsesRequest
{
    /// <summary>Fields of chat's that mean the same here and are passed on as they are.</summary>
    private static readonly string[] SameFields =
        ["temperature", "top_p", "top_k", "min_p", "seed", "stream", "parallel_tool_calls", "presence_penalty", "frequency_penalty",
         "repetition_penalty", "logit_bias", "stop", "stop_token_ids", "ignore_eos", "min_tokens", "chat_template_kwargs"];

    /// <summary>Fields of the Responses API this server cannot honour, with what to do instead.</summary>
    private static readonly (string Name, string Why)[] Refused =
    [
        ("previous_response_id", "this server keeps no responses; send the whole conversation in input"),
        ("conversation", "this server keeps no conversations; send the whole conversation in input"),
        ("background", "responses run while the request is open; drop background"),
        ("prompt", "this server has no stored prompt templates; send the instructions and input"),
    ];

    /// <summary>The chat request a Responses request means, or a 400 that names the Responses field at fault.</summary>
    public static OpenAiRequest From(JsonFields f, GenerationService service)
    {
        foreach (var (name, why) in Refused) f.Refuse(name, why);
        if (f.Get("include") is { ValueKind: JsonValueKind.Array } include && include.GetArrayLength() > 0)
            throw ApiException.BadRequest("include is not supported: the answer has no extra parts to include (no stored files, searches or encrypted reasoning)", "include", "unsupported_parameter");
        var chat = new JsonObject { ["messages"] = Messages(f) };
        foreach (var name in SameFields)
            if (f.Get(name) is { } v) chat[name] = JsonNode.Parse(v.GetRawText());
        if (f.Get("max_output_tokens") is { } max) chat["max_completion_tokens"] = JsonNode.Parse(max.GetRawText());
        if (f.Get("tools") is { } tools) chat["tools"] = Tools(tools);
        if (f.Get("tool_choice") is { } choice) chat["tool_choice"] = ToolChoice(choice);
        if (f.Get("text") is { } text) chat["response_format"] = Format(text);
        using var document = JsonDocument.Parse(chat.ToJsonString());
        try
        {
            var request = OpenAiRequest.Chat(new JsonFields(document.RootElement.Clone()), service);
            return request with { IncludeUsage = request.Stream }; // the last event carries the usage
        }
        catch (ApiException e) when (e.Status == 400)
        {
            throw ApiException.BadRequest(Rename(e.Message), e.Param is null ? null : Rename(e.Param), e.Code ?? "invalid_value");
        }
    }

    /// <summary>
    /// What a response object repeats of its request (the API's response carries the settings it ran with): the
    /// fields as given, or their defaults.
    /// </summary>
    public static JsonObject Echo(JsonFields f)
    {
        JsonNode? Given(string name, JsonNode? fallback) => f.Get(name) is { } v ? JsonNode.Parse(v.GetRawText()) : fallback;
        return new JsonObject
        {
            ["instructions"] = Given("instructions", null),
            ["max_output_tokens"] = Given("max_output_tokens", null),
            ["temperature"] = Given("temperature", null),
            ["top_p"] = Given("top_p", null),
            ["tools"] = Given("tools", new JsonArray()),
            ["tool_choice"] = Given("tool_choice", "auto"),
            ["parallel_tool_calls"] = Given("parallel_tool_calls", true),
            ["text"] = Given("text", new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } }),
        };
    }

    /// <summary>Chat's names in a message or param, in this API's words.</summary>
    private static string Rename(string text) => text
        .Replace("max_completion_tokens", "max_output_tokens", StringComparison.Ordinal)
        .Replace("response_format", "text.format", StringComparison.Ordinal)
        .Replace("messages", "input", StringComparison.Ordinal);

    /// <summary>instructions as the system turn, then the input: a string (one user turn) or a list of items.</summary>
    private static JsonArray Messages(JsonFields f)
    {
        var messages = new JsonArray();
        if (f.String("instructions") is { } instructions) messages.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
        if (f.Get("input") is not { } input) throw ApiException.BadRequest("input is required: a string, or a list of messages and function call items", "input", "missing_required_parameter");
        if (input.ValueKind == JsonValueKind.String)
        {
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = input.GetString() });
            return messages;
        }
        if (input.ValueKind != JsonValueKind.Array) throw JsonFields.Type("input", "a string or a list of items", input);
        int i = 0;
        foreach (var item in input.EnumerateArray())
        {
            string at = $"input[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw JsonFields.Type(at, "an object", item);
            var it = new JsonFields(item);
            switch (it.String("type") ?? "message")
            {
                case "message":
                    string role = it.String("role") ?? throw ApiException.BadRequest($"{at}.role is required", $"{at}.role", "missing_required_parameter");
                    messages.Add(new JsonObject { ["role"] = role, ["content"] = OpenAiRequest.Content(it, at, "input_text", "output_text", "text") });
                    break;
                case "function_call":
                    // Consecutive calls are one assistant turn that made them all.
                    var call = new JsonObject
                    {
                        ["id"] = it.String("call_id") ?? throw ApiException.BadRequest($"{at}.call_id is required", $"{at}.call_id", "missing_required_parameter"),
                        ["type"] = "function",
                        ["function"] = new JsonObject
                        {
                            ["name"] = it.String("name") ?? throw ApiException.BadRequest($"{at}.name is required", $"{at}.name", "missing_required_parameter"),
                            ["arguments"] = it.String("arguments") ?? "{}",
                        },
                    };
                    if (messages.Count > 0 && messages[^1] is JsonObject last && (string?)last["role"] == "assistant" && last["tool_calls"] is JsonArray calls)
                        calls.Add(call);
                    else
                        messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = "", ["tool_calls"] = new JsonArray(call) });
                    break;
                case "function_call_output":
                    messages.Add(new JsonObject
                    {
                        ["role"] = "tool",
                        ["tool_call_id"] = it.String("call_id") ?? throw ApiException.BadRequest($"{at}.call_id is required", $"{at}.call_id", "missing_required_parameter"),
                        ["content"] = it.String("output") ?? throw ApiException.BadRequest($"{at}.output is required: the call's result as a string", $"{at}.output", "missing_required_parameter"),
                    });
                    break;
                case "reasoning":
                    break; // a model's earlier thinking is not part of its next prompt (the templates drop it too)
                case var other:
                    throw ApiException.BadRequest($"{at}.type must be \"message\", \"function_call\", \"function_call_output\" or \"reasoning\", got \"{other}\"", $"{at}.type");
            }
        }
        return messages;
    }

    /// <summary>The flat function tools of this API ({type, name, description, parameters, strict}) in chat's shape.</summary>
    private static JsonNode Tools(JsonElement tools)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw JsonFields.Type("tools", "an array of {\"type\": \"function\", \"name\", ...}", tools);
        var list = new JsonArray();
        int i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object) throw JsonFields.Type(at, "an object", tool);
            var tf = new JsonFields(tool);
            string? type = tf.String("type");
            if (type != "function")
                throw ApiException.BadRequest($"{at}.type must be \"function\": this server runs no built-in tools (web search, file search, code interpreter, ...), got {(type is null ? "nothing" : $"\"{type}\"")}", $"{at}.type", "unsupported_parameter");
            var function = new JsonObject();
            foreach (var name in new[] { "name", "description", "parameters", "strict" })
                if (tf.Get(name) is { } v) function[name] = JsonNode.Parse(v.GetRawText());
            list.Add(new JsonObject { ["type"] = "function", ["function"] = function });
        }
        return list;
    }

    /// <summary>tool_choice: the same strings as chat's, or {"type": "function", "name"} for chat's nested form.</summary>
    private static JsonNode ToolChoice(JsonElement choice)
    {
        if (choice.ValueKind == JsonValueKind.Object && new JsonFields(choice).String("type") == "function")
            return new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = new JsonFields(choice).String("name")
                        ?? throw ApiException.BadRequest("tool_choice as an object must be {\"type\": \"function\", \"name\": ...}", "tool_choice", "missing_required_parameter"),
                },
            };
        return JsonNode.Parse(choice.GetRawText())!;
    }

    /// <summary>text.format: {"type": "text" | "json_object" | "json_schema", with name, schema and strict beside the
    /// type} as chat's response_format.</summary>
    private static JsonNode Format(JsonElement text)
    {
        if (text.ValueKind != JsonValueKind.Object) throw JsonFields.Type("text", "an object such as {\"format\": {\"type\": \"json_object\"}}", text);
        if (new JsonFields(text).Get("format") is not { } format) return new JsonObject { ["type"] = "text" };
        if (format.ValueKind != JsonValueKind.Object) throw JsonFields.Type("text.format", "an object", format);
        var ff = new JsonFields(format);
        if (ff.String("type") != "json_schema") return JsonNode.Parse(format.GetRawText())!;
        var spec = new JsonObject();
        foreach (var name in new[] { "name", "schema", "strict", "description" })
            if (ff.Get(name) is { } v) spec[name] = JsonNode.Parse(v.GetRawText());
        return new JsonObject { ["type"] = "json_schema", ["json_schema"] = spec };
    }
}

/// <summary>
/// A response's output and events, read off the chat format's answer for the same request: its reasoning becomes a
/// reasoning item, its text a message item, its calls function_call items. Streamed, each chat chunk becomes this
/// API's events (an item added when it starts, deltas, the item done when the next one starts or the answer ends),
/// and the usage comes with the last event, response.completed or, cut off by max_output_tokens, response.incomplete.
/// </summary>
/// <param name="echo">The request's settings the response repeats (<see cref="ResponsesRequest.Echo"/>).</param>
internal sealed class ResponsesFormat(OpenAiApi api, string id, long created, string model, ChatFormat chat, JsonObject echo) : OpenAiApi.ResponseFormat(api)
{
    public override bool EndsWithDone => false;

    public override string? EventName(object body) => body is JsonObject e && e["type"] is JsonValue type ? (string?)type : null;

    private int _sequence;
    private readonly JsonArray _output = [];
    private JsonObject? _open; // the item being streamed
    private string? _finish;

    private JsonObject Event(string type, JsonObject fields)
    {
        var e = new JsonObject { ["type"] = type, ["sequence_number"] = _sequence++ };
        foreach (var (key, value) in fields.ToList())
        {
            fields.Remove(key);
            e[key] = value;
        }
        return e;
    }

    private JsonObject Response(string status, UsageBody? usage)
    {
        var response = new JsonObject
        {
            ["id"] = id,
            ["object"] = "response",
            ["created_at"] = created,
            ["status"] = status,
            ["error"] = null,
            ["incomplete_details"] = status == "incomplete" ? new JsonObject { ["reason"] = "max_output_tokens" } : null,
            ["model"] = model,
            ["output"] = _output.DeepClone(),
            ["store"] = false, // this server keeps no responses
            ["metadata"] = new JsonObject(),
            ["usage"] = usage is null ? null : Usage(usage),
        };
        foreach (var (key, value) in echo) response[key] = value?.DeepClone();
        return response;
    }

    private static JsonObject Usage(UsageBody usage) => new()
    {
        ["input_tokens"] = usage.PromptTokens,
        ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = 0 },
        ["output_tokens"] = usage.CompletionTokens,
        ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
        ["total_tokens"] = usage.TotalTokens,
    };

    public override object? StreamStart(int index) => new OpenAiApi.EventBatch(
        [Event("response.created", new JsonObject { ["response"] = Response("in_progress", null) }),
         Event("response.in_progress", new JsonObject { ["response"] = Response("in_progress", null) })]);

    public override object? StreamText(int index, string text, IReadOnlyList<TokenLogprob> logprobs) =>
        chat.StreamText(index, text, logprobs) is ChatChunkBody chunk ? Batch(Translate(chunk)) : null;

    public override IEnumerable<object> StreamFinish(int index, string reason, IReadOnlyList<TokenLogprob> logprobs)
    {
        var events = chat.StreamFinish(index, reason, logprobs).OfType<ChatChunkBody>().SelectMany(Translate).ToList();
        events.AddRange(Close());
        return events;
    }

    /// <summary>A failure mid-stream (the cluster lost a rank past its recovery time): the response failed, with why.</summary>
    public override object StreamError(ApiException error)
    {
        var response = Response("failed", null);
        response["error"] = new JsonObject { ["code"] = error.Code ?? "server_error", ["message"] = error.Message };
        return Event("response.failed", new JsonObject { ["response"] = response });
    }

    public override object StreamUsage(UsageBody usage)
    {
        string status = _finish == "length" ? "incomplete" : "completed";
        return Event(status == "completed" ? "response.completed" : "response.incomplete", new JsonObject { ["response"] = Response(status, usage) });
    }

    public override object Whole(IReadOnlyList<ChoiceResult> choices, UsageBody usage)
    {
        var body = (ChatCompletionBody)chat.Whole(choices, usage);
        var choice = body.Choices[0];
        var message = choice.Message;
        if (message.ReasoningContent is { } reasoning) _output.Add(ReasoningItem(reasoning));
        if (message.Content is { Length: > 0 } content || message.ToolCalls is null) _output.Add(MessageItem(message.Content ?? "", "completed"));
        foreach (var call in message.ToolCalls ?? []) _output.Add(CallItem(call.Id, call.Function.Name, call.Function.Arguments, "completed"));
        _finish = choice.FinishReason;
        return Response(_finish == "length" ? "incomplete" : "completed", usage);
    }

    private static OpenAiApi.EventBatch? Batch(List<JsonObject> events) => events.Count == 0 ? null : new OpenAiApi.EventBatch(events);

    /// <summary>One chat chunk's news as this API's events.</summary>
    private List<JsonObject> Translate(ChatChunkBody chunk)
    {
        var events = new List<JsonObject>();
        var choice = chunk.Choices[0];
        if (choice.Delta.ReasoningContent is { Length: > 0 } reasoning)
            events.AddRange(Delta("reasoning", reasoning));
        if (choice.Delta.Content is { Length: > 0 } text)
            events.AddRange(Delta("message", text));
        foreach (var call in choice.Delta.ToolCalls ?? [])
        {
            // A call's first delta (with its id) opens its item; later ones (a forced call's arguments as they are
            // written) only add to the open item's arguments.
            if (call.Id is not null)
            {
                events.AddRange(Close());
                events.AddRange(Open(CallItem(call.Id, call.Function.Name!, "", "in_progress")));
            }
            var item = _open!;
            item["arguments"] = (string)item["arguments"]! + call.Function.Arguments;
            events.Add(Event("response.function_call_arguments.delta", new JsonObject { ["item_id"] = (string)item["id"]!, ["output_index"] = _output.Count, ["delta"] = call.Function.Arguments }));
        }
        if (choice.FinishReason is { } finish) _finish = finish;
        return events;
    }

    /// <summary>Text for the open item of <paramref name="kind"/> (opening it, and closing another, first).</summary>
    private IEnumerable<JsonObject> Delta(string kind, string text)
    {
        if ((string?)_open?["type"] != kind)
        {
            foreach (var e in Close()) yield return e;
            foreach (var e in Open(kind == "reasoning" ? ReasoningItem("") : MessageItem("", "in_progress"))) yield return e;
        }
        var part = (JsonObject)((JsonArray)_open!["content"]!)[0]!;
        part["text"] = (string)part["text"]! + text;
        yield return Event(kind == "reasoning" ? "response.reasoning_text.delta" : "response.output_text.delta", new JsonObject
        {
            ["item_id"] = (string)_open["id"]!,
            ["output_index"] = _output.Count,
            ["content_index"] = 0,
            ["delta"] = text,
        });
    }

    private IEnumerable<JsonObject> Open(JsonObject item)
    {
        _open = item;
        yield return Event("response.output_item.added", new JsonObject { ["output_index"] = _output.Count, ["item"] = item.DeepClone() }); // a copy: the open item goes on growing
        if (item["content"] is JsonArray parts)
        {
            yield return Event("response.content_part.added", new JsonObject
            {
                ["item_id"] = (string)item["id"]!, ["output_index"] = _output.Count, ["content_index"] = 0, ["part"] = parts[0]!.DeepClone(),
            });
        }
    }

    /// <summary>Ends the open item: its text (or a call's arguments) done, its part done, the item done and in the output.</summary>
    private IEnumerable<JsonObject> Close()
    {
        if (_open is not { } item) yield break;
        _open = null;
        string itemId = (string)item["id"]!;
        if ((string?)item["type"] == "function_call")
            yield return Event("response.function_call_arguments.done", new JsonObject { ["item_id"] = itemId, ["output_index"] = _output.Count, ["arguments"] = (string)item["arguments"]! });
        if (item["content"] is JsonArray parts)
        {
            var part = parts[0]!;
            bool reasoning = (string?)item["type"] == "reasoning";
            yield return Event(reasoning ? "response.reasoning_text.done" : "response.output_text.done", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = _output.Count, ["content_index"] = 0, ["text"] = (string)part["text"]!,
            });
            yield return Event("response.content_part.done", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = _output.Count, ["content_index"] = 0, ["part"] = part.DeepClone(),
            });
        }
        if (item.ContainsKey("status")) item["status"] = "completed";
        yield return Event("response.output_item.done", new JsonObject { ["output_index"] = _output.Count, ["item"] = item.DeepClone() });
        _output.Add(item);
    }

    private static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N");

    private static JsonObject MessageItem(string text, string status) => new()
    {
        ["type"] = "message",
        ["id"] = NewId("msg_"),
        ["status"] = status,
        ["role"] = "assistant",
        ["content"] = new JsonArray(new JsonObject { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray() }),
    };

    private static JsonObject ReasoningItem(string text) => new()
    {
        ["type"] = "reasoning",
        ["id"] = NewId("rs_"),
        ["summary"] = new JsonArray(),
        ["content"] = new JsonArray(new JsonObject { ["type"] = "reasoning_text", ["text"] = text }),
    };

    private static JsonObject CallItem(string callId, string name, string arguments, string status) => new()
    {
        ["type"] = "function_call",
        ["id"] = NewId("fc_"),
        ["call_id"] = callId,
        ["name"] = name,
        ["arguments"] = arguments,
        ["status"] = status,
    };
}

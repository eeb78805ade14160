using System.Net;
using System.Text;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// Tool calling through the real HTTP API on the 2-rank cluster: forced calls (a named function, or "required") are
/// written token by token to the function's parameters by the story model itself, streamed and not; the requests'
/// own tool turns are taken; and what cannot be honoured is a 400 that says why.
/// </summary>
[Collection(HttpClusterCollection.Name)]
public sealed class ToolCallTests(HttpCluster cluster)
{
    private const string Chat = "/v1/chat/completions";

    private const string Weather = """
        {"type":"function","function":{"name":"get_weather","description":"The weather in a city","parameters":{"type":"object",
         "properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["c","f"]}},"required":["city","days","unit"],
         "additionalProperties":false}}}
        """;

    private const string Time = """
        {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"enum":["utc","local"]},
         "exact":{"type":"boolean"}},"required":["zone","exact"]}}}
        """;

    private static string Request(string fields, int maxTokens = 200) =>
        $$"""{"messages":[{"role":"user","content":"{{HttpCluster.Prompt}}"}],"temperature":0,"max_tokens":{{maxTokens}},"tools":[{{Weather}},{{Time}}],{{fields}}}""";

    /// <summary>Checks one call's arguments against get_weather's or get_time's parameters.</summary>
    private static void AssertArguments(string name, string arguments)
    {
        using var doc = JsonDocument.Parse(arguments);
        var a = doc.RootElement;
        if (name == "get_weather")
        {
            Assert.Equal(new[] { "city", "days", "unit" }, a.EnumerateObject().Select(p => p.Name).Order());
            Assert.Equal(JsonValueKind.String, a.GetProperty("city").ValueKind);
            Assert.True(a.GetProperty("days").TryGetInt64(out _), arguments);
            Assert.Contains(a.GetProperty("unit").GetString(), new[] { "c", "f" });
        }
        else
        {
            Assert.Equal("get_time", name);
            Assert.Contains(a.GetProperty("zone").GetString(), new[] { "utc", "local" });
            Assert.True(a.GetProperty("exact").ValueKind is JsonValueKind.True or JsonValueKind.False, arguments);
        }
    }

    [Fact]
    public async Task A_named_function_is_called_with_arguments_that_follow_its_parameters_streamed_alike()
    {
        string body = Request(""" "tool_choice":{"type":"function","function":{"name":"get_weather"}} """);
        var (status, json) = await cluster.PostAsync(Chat, body);
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        var choice = json.GetProperty("choices")[0];
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = message.GetProperty("tool_calls")[0];
        Assert.Equal("function", call.GetProperty("type").GetString());
        Assert.Matches("^call_[A-Za-z0-9]{24}$", call.GetProperty("id").GetString());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        string arguments = call.GetProperty("function").GetProperty("arguments").GetString()!;
        AssertArguments("get_weather", arguments);
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString()); // OpenAI ends a named call with "stop"

        // Streamed: no content, and the same call (greedy), its arguments in pieces as they are written: the first
        // delta has the id and the name, the ones after it only arguments.
        using var client = cluster.NewClient(withKey: true);
        using var response = await client.PostAsync(Chat, HttpCluster.Body(body.Replace("\"temperature\":0", "\"temperature\":0,\"stream\":true")));
        var chunks = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync());
        Assert.Equal("[DONE]", chunks[^1]);
        var deltas = chunks[..^1].Select(c => JsonDocument.Parse(c).RootElement.GetProperty("choices")[0]).ToList();
        Assert.DoesNotContain(deltas.Skip(1), d => d.GetProperty("delta").TryGetProperty("content", out _));
        var pieces = deltas.Where(d => d.GetProperty("delta").TryGetProperty("tool_calls", out _))
            .Select(d => d.GetProperty("delta").GetProperty("tool_calls")[0]).ToList();
        Assert.True(pieces.Count > 5, $"the arguments came in {pieces.Count} pieces");
        Assert.All(pieces, p => Assert.Equal(0, p.GetProperty("index").GetInt32()));
        Assert.Equal("get_weather", pieces[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Matches("^call_[A-Za-z0-9]{24}$", pieces[0].GetProperty("id").GetString());
        Assert.All(pieces.Skip(1), p => Assert.False(p.TryGetProperty("id", out _) || p.GetProperty("function").TryGetProperty("name", out _)));
        Assert.Equal(arguments, string.Concat(pieces.Select(p => p.GetProperty("function").GetProperty("arguments").GetString())));
        Assert.Equal("stop", deltas[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Required_calls_one_of_the_functions_with_its_own_parameters()
    {
        var names = new HashSet<string>();
        foreach (string sampling in new[] { """ "seed":1 """, """ "seed":2 """, """ "seed":3 """, """ "seed":4 """ })
        {
            var (status, json) = await cluster.PostAsync(Chat, Request(""" "tool_choice":"required", """ + sampling).Replace("\"temperature\":0", "\"temperature\":1"));
            Assert.True(status == HttpStatusCode.OK, json.ToString());
            var choice = json.GetProperty("choices")[0];
            if (choice.GetProperty("finish_reason").GetString() == "length") continue; // cut off: text, as OpenAI's would be
            Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
            var function = choice.GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function");
            string name = function.GetProperty("name").GetString()!;
            AssertArguments(name, function.GetProperty("arguments").GetString()!);
            names.Add(name);
        }
        Assert.NotEmpty(names);
    }

    [Fact]
    public async Task A_conversation_with_earlier_calls_and_their_results_is_taken()
    {
        // The turns an agent loop sends back: the assistant's call (content null) and the tool's answer to it.
        string body = $$$"""
            {"messages":[{"role":"user","content":"{{{HttpCluster.Prompt}}}"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":1,\"unit\":\"c\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"It was sunny."}],
             "temperature":0,"max_tokens":8,"tools":[{{{Weather}}}],"tool_choice":"none"}
            """;
        var (status, json) = await cluster.PostAsync(Chat, body);
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        var message = json.GetProperty("choices")[0].GetProperty("message");
        Assert.False(string.IsNullOrEmpty(message.GetProperty("content").GetString()));
        Assert.False(message.TryGetProperty("tool_calls", out _));
        // The bundled model's plain template joins the contents: the tool's answer is in the prompt.
        var (_, tokenized) = await cluster.PostAsync("/tokenize", """{"prompt":"Once upon a time\n\nIt was sunny."}""");
        Assert.Equal(tokenized.GetProperty("count").GetInt32(), json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Theory]
    [InlineData(""" "tools":[{"type":"retrieval"}] """, "tools[0].type", "tools[0].type must be \"function\"")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"get weather"}}] """, "tools[0].function.name", "must be 1 to 64 letters, digits, '_' or '-', got 'get weather'")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}] """, "tools[1].function.name", "'f' is given twice")]
    [InlineData(""" "tools":[{"type":"function"}] """, "tools[0].function", "tools[0].function is required")]
    [InlineData(""" "tools":{"type":"function"} """, "tools", "tools must be an array")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f"}}] """, "tool_choice", "this model's chat template teaches no form of call this server reads")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}} """, "tool_choice", "names the function 'g', which is not in tools (f)")]
    [InlineData(""" "tool_choice":"required" """, "tool_choice", "tool_choice \"required\" asks for a call, but tools offers no function")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"always" """, "tool_choice", "got \"always\"")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"string","pattern":"^a"}}}}}],"tool_choice":"required" """, "tools", "the keyword \"pattern\" at #/properties/n is not supported")]
    [InlineData(""" "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","response_format":{"type":"json_object"} """, "response_format", "response_format cannot be combined with tools")]
    [InlineData(""" "chat_template_kwargs":[true] """, "chat_template_kwargs", "chat_template_kwargs must be an object of template variables")]
    [InlineData(""" "chat_template_kwargs":{"messages":[]} """, "chat_template_kwargs", "chat_template_kwargs may not set 'messages'")]
    public async Task Tool_requests_that_cannot_be_honoured_get_400_naming_the_field(string fields, string param, string message)
    {
        var (status, json) = await cluster.PostAsync(Chat, $$"""{"messages":[{"role":"user","content":"x"}],{{fields}}}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = json.GetProperty("error");
        Assert.Contains(message, error.GetProperty("message").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"tool","content":"x"}]}""", "messages[0].tool_call_id", "tool_call_id is required")]
    [InlineData("""{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}""", "messages[0].tool_calls[0].id", "messages[0].tool_calls[0].id is required")]
    [InlineData("""{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function"}]}]}""", "messages[0].tool_calls[0].function", "function is required")]
    public async Task Malformed_tool_turns_get_400_naming_the_field(string body, string param, string message)
    {
        var (status, json) = await cluster.PostAsync(Chat, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = json.GetProperty("error");
        Assert.Contains(message, error.GetProperty("message").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }
}

#pragma warning disable OPENAI001 // the official client marks its Responses API as for evaluation
using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Responses;

namespace ActorRing.Host.Tests;

/// <summary>
/// The Responses API (POST /v1/responses) on the 2-rank cluster: raw over HTTP (the output items, the named events
/// of a stream, the refusals) and through the official .NET client's ResponsesClient, as agents use it.
/// </summary>
[Collection(HttpClusterCollection.Name)]
public sealed class ResponsesApiTests(HttpCluster cluster)
{
    private const string Path = "/v1/responses";

    private ResponsesClient Client => new(new ApiKeyCredential(HttpCluster.ApiKey), new ResponsesClientOptions { Endpoint = new Uri(cluster.BaseUrl, "/v1") });

    [Fact]
    public async Task A_text_input_answers_with_generates_text_as_one_message_item()
    {
        var (status, json) = await cluster.PostAsync(Path, $$"""{"input":"{{HttpCluster.Prompt}}","max_output_tokens":{{HttpCluster.ReferenceTokens}},"temperature":0}""");
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        Assert.Equal("response", json.GetProperty("object").GetString());
        Assert.StartsWith("resp_", json.GetProperty("id").GetString());
        Assert.Equal("incomplete", json.GetProperty("status").GetString()); // it stopped at max_output_tokens
        Assert.Equal("max_output_tokens", json.GetProperty("incomplete_details").GetProperty("reason").GetString());
        var item = Assert.Single(json.GetProperty("output").EnumerateArray());
        Assert.Equal(("message", "assistant"), (item.GetProperty("type").GetString(), item.GetProperty("role").GetString()));
        Assert.Equal(cluster.ReferenceText, item.GetProperty("content")[0].GetProperty("text").GetString());
        var usage = json.GetProperty("usage");
        Assert.Equal((5, HttpCluster.ReferenceTokens), (usage.GetProperty("input_tokens").GetInt32(), usage.GetProperty("output_tokens").GetInt32()));
    }

    [Fact]
    public async Task A_stream_is_named_events_in_order_whose_deltas_add_up_to_the_text()
    {
        using var client = cluster.NewClient(withKey: true);
        using var response = await client.PostAsync(Path, HttpCluster.Body(
            $$"""{"input":"{{HttpCluster.Prompt}}","max_output_tokens":{{HttpCluster.ReferenceTokens}},"temperature":0,"stream":true}"""));
        string body = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("[DONE]", body); // this API ends with its own last event

        // Each event is "event: NAME" then "data: {...}" whose type is NAME.
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(block =>
        {
            var lines = block.Split('\n');
            Assert.StartsWith("event: ", lines[0]);
            var data = JsonDocument.Parse(lines[1]["data: ".Length..]).RootElement;
            Assert.Equal(lines[0]["event: ".Length..], data.GetProperty("type").GetString());
            return data;
        }).ToList();
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.GetProperty("sequence_number").GetInt32()));
        var types = events.Select(e => e.GetProperty("type").GetString()).ToList();
        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], types.Take(4));
        Assert.Equal(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"], types.TakeLast(4));
        string text = string.Concat(events.Where(e => e.GetProperty("type").GetString() == "response.output_text.delta").Select(e => e.GetProperty("delta").GetString()));
        Assert.Equal(cluster.ReferenceText, text);
        var last = events[^1].GetProperty("response");
        Assert.Equal(cluster.ReferenceText, last.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(HttpCluster.ReferenceTokens, last.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task The_official_client_gets_text_and_a_forced_function_call_whose_output_goes_back_in()
    {
        ResponseResult answer = await Client.CreateResponseAsync(new CreateResponseOptions(HttpCluster.ModelId, [ResponseItem.CreateUserMessageItem(HttpCluster.Prompt)])
        {
            MaxOutputTokenCount = HttpCluster.ReferenceTokens,
            Temperature = 0,
        });
        Assert.Equal(cluster.ReferenceText, answer.GetOutputText());
        Assert.Equal(ResponseStatus.Incomplete, answer.Status);

        // Streamed through the client: its text deltas add up to the same text.
        var streamed = new StringBuilder();
        await foreach (var update in await Client.CreateResponseStreamingAsync(new CreateResponseOptions(HttpCluster.ModelId, [ResponseItem.CreateUserMessageItem(HttpCluster.Prompt)])
        {
            MaxOutputTokenCount = HttpCluster.ReferenceTokens,
            Temperature = 0,
            StreamingEnabled = true,
        }))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta) streamed.Append(delta.Delta);
        }
        Assert.Equal(cluster.ReferenceText, streamed.ToString());

        // A function the model must call, then its output sent back with the call, as an agent loop does.
        var options = new CreateResponseOptions(HttpCluster.ModelId, [ResponseItem.CreateUserMessageItem(HttpCluster.Prompt)])
        {
            MaxOutputTokenCount = 200,
            Temperature = 0,
            ToolChoice = ResponseToolChoice.CreateFunctionChoice("get_weather"),
        };
        options.Tools.Add(ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString("""
            {"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"],"additionalProperties":false}
            """), strictModeEnabled: true, functionDescription: "The weather in a city"));
        ResponseResult called = await Client.CreateResponseAsync(options);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(called.OutputItems));
        Assert.Equal("get_weather", call.FunctionName);
        using (var doc = JsonDocument.Parse(call.FunctionArguments.ToString()))
        {
            Assert.Equal(JsonValueKind.String, doc.RootElement.GetProperty("city").ValueKind);
            Assert.True(doc.RootElement.GetProperty("days").TryGetInt64(out _));
        }

        var next = new CreateResponseOptions(HttpCluster.ModelId,
            [ResponseItem.CreateUserMessageItem(HttpCluster.Prompt), call, ResponseItem.CreateFunctionCallOutputItem(call.CallId, "Sunny.")])
        {
            MaxOutputTokenCount = 8,
            Temperature = 0,
        };
        ResponseResult after = await Client.CreateResponseAsync(next);
        Assert.False(string.IsNullOrEmpty(after.GetOutputText()));
        // The plain template joins the contents: the call's output is in the prompt.
        var (_, tokenized) = await cluster.PostAsync("/tokenize", $$"""{"prompt":"{{HttpCluster.Prompt}}\n\nSunny."}""");
        Assert.Equal(tokenized.GetProperty("count").GetInt32(), after.Usage.InputTokenCount);
    }

    [Theory]
    [InlineData("""{"input":"x","previous_response_id":"resp_1"}""", "previous_response_id", "this server keeps no responses")]
    [InlineData("""{"max_output_tokens":3}""", "input", "input is required")]
    [InlineData("""{"input":[{"type":"image","url":"x"}]}""", "input[0].type", "got \"image\"")]
    [InlineData("""{"input":[{"role":"user","content":[{"type":"input_image"}]}]}""", "input[0].content[0].type", "got 'input_image'")]
    [InlineData("""{"input":"x","tools":[{"type":"web_search"}]}""", "tools[0].type", "this server runs no built-in tools")]
    [InlineData("""{"input":"x","max_output_tokens":9000}""", "max_output_tokens", "lower max_output_tokens")]
    [InlineData("""{"input":"x","text":{"format":{"type":"yaml"}}}""", "text.format", "got \"yaml\"")]
    [InlineData("""{"input":[{"role":"wizard","content":"x"}]}""", "input[0].role", "got 'wizard'")]
    [InlineData("""{"input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function"}}""", "tool_choice", "must be {\"type\": \"function\", \"name\": ...}")]
    public async Task What_cannot_be_honoured_is_a_400_in_this_apis_words(string body, string param, string message)
    {
        var (status, json) = await cluster.PostAsync(Path, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = json.GetProperty("error");
        Assert.Contains(message, error.GetProperty("message").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;
using ActorRing.Host.Http;
using ActorRing.Templating;

namespace ActorRing.Host.Tests;

/// <summary>
/// The Responses API's events for what the bundled model cannot show: a reasoning model's thinking as a reasoning
/// item before its message, an auto call after the thinking as a function_call item, and a failure mid-stream.
/// </summary>
public sealed class ResponsesFormatTests
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static ResponsesFormat Format(ToolUse? tools = null)
    {
        var api = new OpenAiApi(null!, "m", null); // only asked for token texts, which events without log-probabilities never need
        var chat = new ChatFormat(api, "resp_1", 0, "m", tools, "<|im_start|>assistant\n");
        return new ResponsesFormat(api, "resp_1", 0, "m", chat, new JsonObject());
    }

    private static List<JsonElement> Events(object? body) => body switch
    {
        null => [],
        OpenAiApi.EventBatch batch => [.. batch.Events.Select(e => JsonSerializer.SerializeToElement(e, e.GetType(), Json))],
        _ => [JsonSerializer.SerializeToElement(body, body.GetType(), Json)],
    };

    [Fact]
    public void Thinking_then_a_call_stream_as_a_reasoning_item_then_a_function_call_item()
    {
        var tools = new ToolUse(JsonDocument.Parse("[]").RootElement, Forced: null, OnlyFunction: null, CallSchema: null, ToolCallSyntax.Hermes, Parallel: true);
        var format = Format(tools);
        var events = Events(format.StreamStart(0));
        foreach (var piece in new[] { "<think>\nWeather", " needed.\n</think>\n\n", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>" })
            events.AddRange(Events(format.StreamText(0, piece, [])));
        events.AddRange(format.StreamFinish(0, "stop", []).SelectMany(e => Events(e)));
        events.AddRange(Events(format.StreamUsage(new UsageBody(3, 20, 23))));

        var types = events.Select(e => e.GetProperty("type").GetString()).ToList();
        Assert.Equal(
        [
            "response.created", "response.in_progress",
            "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
            "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
            "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
            "response.completed",
        ], types);
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.GetProperty("sequence_number").GetInt32()));
        var output = events[^1].GetProperty("response").GetProperty("output");
        Assert.Equal("Weather needed.", output[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(("function_call", "get_weather", "{\"city\":\"Oslo\"}"),
            (output[1].GetProperty("type").GetString(), output[1].GetProperty("name").GetString(), output[1].GetProperty("arguments").GetString()));
        Assert.Equal(1, events[^3].GetProperty("output_index").GetInt32()); // the call is the second item
    }

    [Fact]
    public void A_whole_answer_puts_the_reasoning_item_before_the_message()
    {
        var body = JsonSerializer.SerializeToElement(Format().Whole([new ChoiceResult("<think>\nEasy.\n</think>\n\n42", null, "stop")], new UsageBody(1, 5, 6)), Json);
        var output = body.GetProperty("output");
        Assert.Equal(("reasoning", "Easy."), (output[0].GetProperty("type").GetString(), output[0].GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.Equal(("message", "42"), (output[1].GetProperty("type").GetString(), output[1].GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.Equal("completed", body.GetProperty("status").GetString());
    }

    [Fact]
    public void A_failure_mid_stream_is_a_failed_response_that_says_why()
    {
        var e = Events(Format().StreamError(new ApiException(503, "rank 1 is gone", null, "cluster_unavailable")))[0];
        Assert.Equal("response.failed", e.GetProperty("type").GetString());
        Assert.Equal("failed", e.GetProperty("response").GetProperty("status").GetString());
        Assert.Equal(("cluster_unavailable", "rank 1 is gone"),
            (e.GetProperty("response").GetProperty("error").GetProperty("code").GetString(), e.GetProperty("response").GetProperty("error").GetProperty("message").GetString()));
    }
}

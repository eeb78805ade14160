using System.Text.Json;
using ActorRing.Host.Http;
using ActorRing.Templating;

namespace ActorRing.Host.Tests;

/// <summary>
/// How a streamed chat answer with tools in auto is cut into chunks: text goes out as it comes until a call may be
/// starting, what may be a call is held, and at the end the calls go out whole (or, when the held text was not a call
/// after all, the text). The bundled model's template teaches no form of call, so this is tested on the format alone.
/// </summary>
public sealed class ToolStreamTests
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static (ChatFormat Format, ToolUse Tools) Auto(ToolCallSyntax syntax)
    {
        var tools = new ToolUse(JsonDocument.Parse("[]").RootElement, Forced: null, OnlyFunction: null, CallSchema: null, syntax, Parallel: true);
        // The API object is only asked for token texts, which chunks without log-probabilities never need.
        return (new ChatFormat(new OpenAiApi(null!, "m", null), "chatcmpl-1", 0, "m", tools), tools);
    }

    private static JsonElement Delta(object chunk) =>
        JsonSerializer.SerializeToElement(chunk, chunk.GetType(), Json).GetProperty("choices")[0];

    private static string? Text(object? chunk) => chunk is null ? null : Delta(chunk).GetProperty("delta").TryGetProperty("content", out var c) ? c.GetString() : null;

    [Fact]
    public void Text_before_a_hermes_call_streams_and_the_call_goes_out_whole_at_the_end()
    {
        var (format, _) = Auto(ToolCallSyntax.Hermes);
        string?[] sent =
        [
            Text(format.StreamText(0, "Let me", [])),
            Text(format.StreamText(0, " look.<to", [])),     // "<to" may start the marker: held
            Text(format.StreamText(0, "ol_call>\n{\"name\": \"get_weather\",", [])),
            Text(format.StreamText(0, " \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", [])),
        ];
        Assert.Equal(new string?[] { "Let me", " look.", null, null }, sent);
        var end = format.StreamFinish(0, "stop", []).Select(Delta).ToList();
        Assert.Equal(2, end.Count);
        var call = end[0].GetProperty("delta").GetProperty("tool_calls")[0];
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"city\":\"Oslo\"}", call.GetProperty("function").GetProperty("arguments").GetString());
        Assert.Equal("tool_calls", end[1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void Held_text_that_is_no_call_after_all_goes_out_before_the_finish()
    {
        var (format, _) = Auto(ToolCallSyntax.Hermes);
        Assert.Equal("a ", Text(format.StreamText(0, "a <", [])));
        Assert.Equal("<b", Text(format.StreamText(0, "b", []))); // "<b" cannot start the marker any more
        Assert.Equal(" ", Text(format.StreamText(0, " <tool_call>{\"name\"", [])));
        var end = format.StreamFinish(0, "length", []).Select(Delta).ToList(); // cut off inside the call: it is text
        Assert.Equal("<tool_call>{\"name\"", end[0].GetProperty("delta").GetProperty("content").GetString());
        Assert.Equal("length", end[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void A_whole_answer_with_calls_has_null_content_and_the_finish_reason_tool_calls()
    {
        var (format, _) = Auto(ToolCallSyntax.LlamaJson);
        var body = JsonSerializer.SerializeToElement(format.Whole(
            [new ChoiceResult("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", null, "stop"), new ChoiceResult("It is sunny.", null, "stop")],
            new UsageBody(1, 2, 3)), Json);
        var first = body.GetProperty("choices")[0];
        Assert.Equal(JsonValueKind.Null, first.GetProperty("message").GetProperty("content").ValueKind);
        Assert.Equal("get_weather", first.GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("tool_calls", first.GetProperty("finish_reason").GetString());
        var second = body.GetProperty("choices")[1];
        Assert.Equal("It is sunny.", second.GetProperty("message").GetProperty("content").GetString());
        Assert.False(second.GetProperty("message").TryGetProperty("tool_calls", out _));
        Assert.Equal("stop", second.GetProperty("finish_reason").GetString());
    }
}

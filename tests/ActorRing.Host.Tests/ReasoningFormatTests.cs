using System.Text.Json;
using ActorRing.Host.Http;
using ActorRing.Templating;

namespace ActorRing.Host.Tests;

/// <summary>
/// A reasoning model's answers through the chat format: the think block goes to reasoning_content, streamed as it
/// comes and whole, and a call after the thinking is still read as a call. The bundled model's template teaches no
/// think block, so this is tested on the format with the prompts of DeepSeek-R1's and Qwen3's templates.
/// </summary>
public sealed class ReasoningFormatTests
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private const string R1Prompt = "<｜User｜>Hi<｜Assistant｜><think>\n";

    private static ChatFormat Format(string prompt, ToolUse? tools = null) =>
        new(new OpenAiApi(null!, "m", null), "chatcmpl-1", 0, "m", tools, prompt); // the API object is only asked for token texts

    private static JsonElement Choice(object chunk) => JsonSerializer.SerializeToElement(chunk, chunk.GetType(), Json).GetProperty("choices")[0];

    private static string? Field(JsonElement choice, string name) =>
        choice.GetProperty("delta").TryGetProperty(name, out var v) ? v.GetString() : null;

    [Fact]
    public void Streamed_thinking_goes_to_reasoning_content_and_the_answer_to_content()
    {
        var format = Format(R1Prompt);
        var chunks = new[] { "The user", " says hi.\n</th", "ink>\n\nHello", " there." }
            .Select(piece => format.StreamText(0, piece, [])).Where(c => c is not null).Select(c => Choice(c!)).ToList();
        chunks.AddRange(format.StreamFinish(0, "stop", []).Select(Choice));

        Assert.Equal("The user says hi.", string.Concat(chunks.Select(c => Field(c, "reasoning_content"))));
        Assert.Equal("Hello there.", string.Concat(chunks.Select(c => Field(c, "content"))));
        Assert.Equal("stop", chunks[^1].GetProperty("finish_reason").GetString());
        // The reasoning arrives before the closing tag does: the first chunk is reasoning only.
        Assert.Equal(("The user", null), (Field(chunks[0], "reasoning_content"), Field(chunks[0], "content")));
    }

    [Fact]
    public void A_whole_answer_has_both_and_an_answer_cut_off_while_thinking_has_no_content()
    {
        var body = JsonSerializer.SerializeToElement(Format("<|im_start|>assistant\n").Whole(
            [new ChoiceResult("<think>\nEasy.\n</think>\n\n42", null, "stop"), new ChoiceResult("<think>\nHmm, let me", null, "length"), new ChoiceResult("42", null, "stop")],
            new UsageBody(1, 2, 3)), Json);
        var messages = body.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message")).ToList();
        Assert.Equal(("Easy.", "42"), (messages[0].GetProperty("reasoning_content").GetString(), messages[0].GetProperty("content").GetString()));
        Assert.Equal("Hmm, let me", messages[1].GetProperty("reasoning_content").GetString());
        Assert.Equal(JsonValueKind.Null, messages[1].GetProperty("content").ValueKind);
        Assert.Equal("42", messages[2].GetProperty("content").GetString());
        Assert.False(messages[2].TryGetProperty("reasoning_content", out _)); // no thinking, no field
    }

    [Fact]
    public void A_call_written_after_the_thinking_is_read_as_a_call()
    {
        var tools = new ToolUse(JsonDocument.Parse("[]").RootElement, Forced: null, OnlyFunction: null, CallSchema: null, ToolCallSyntax.Hermes, Parallel: true);
        var format = Format("<|im_start|>assistant\n", tools);
        var chunks = new[] { "<think>\nI need the weather.\n</think>\n\n", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>" }
            .Select(piece => format.StreamText(0, piece, [])).Where(c => c is not null).Select(c => Choice(c!)).ToList();
        chunks.AddRange(format.StreamFinish(0, "stop", []).Select(Choice));

        Assert.Equal("I need the weather.", string.Concat(chunks.Select(c => Field(c, "reasoning_content"))));
        Assert.Equal("", string.Concat(chunks.Select(c => Field(c, "content"))));
        var call = chunks.Single(c => c.GetProperty("delta").TryGetProperty("tool_calls", out _)).GetProperty("delta").GetProperty("tool_calls")[0];
        Assert.Equal("{\"city\":\"Oslo\"}", call.GetProperty("function").GetProperty("arguments").GetString());
        Assert.Equal("tool_calls", chunks[^1].GetProperty("finish_reason").GetString());
    }
}

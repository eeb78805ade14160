using System.Text.Json;

namespace ActorRing.Templating.Tests;

/// <summary>
/// The forms of tool call the server reads out of answers (hermes, llama3_json, mistral): which real template teaches
/// which, what a whole answer reads as, what a stream must hold back, and that a conversation's calls given as
/// <see cref="ChatMessage"/>s render as Hugging Face renders the same turns.
/// </summary>
public class ToolCallSyntaxTests
{
    private static readonly string DataDirectory = Path.Combine(AppContext.BaseDirectory, "ChatTemplateData");

    [Theory]
    [InlineData("qwen2_5", "hermes")]
    [InlineData("qwen3", "hermes")]
    [InlineData("llama3_2", "llama3_json")]
    [InlineData("mistral_nemo", "mistral")]
    [InlineData("gemma3", null)]
    [InlineData("llama3", null)]
    [InlineData("deepseek_r1_distill", null)]
    public void A_real_template_teaches_its_familys_form(string model, string? syntax)
    {
        var template = ChatTemplates.Load(Path.Combine(DataDirectory, "models", model));
        Assert.Equal(syntax, template.ToolCallSyntax?.Name);
    }

    [Fact]
    public void The_plain_template_teaches_none() => Assert.Null(new PlainChatTemplate().ToolCallSyntax);

    [Fact]
    public void Hermes_blocks_become_calls_after_the_text_before_them()
    {
        var answer = ToolCallSyntax.Hermes.Parse(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"utc\\\"}\"}\n</tool_call>");
        Assert.Equal("Let me check.", answer.Content);
        Assert.Equal(2, answer.Calls.Count);
        Assert.Equal(("get_weather", "{\"city\":\"Zürich\",\"days\":2}"), (answer.Calls[0].Name, answer.Calls[0].Arguments));
        Assert.Equal(("get_time", "{\"zone\":\"utc\"}"), (answer.Calls[1].Name, answer.Calls[1].Arguments)); // arguments sent as a string of JSON
        Assert.All(answer.Calls, c => Assert.Matches("^call_[A-Za-z0-9]{24}$", c.Id));
        Assert.NotEqual(answer.Calls[0].Id, answer.Calls[1].Id);

        // The model may end its turn right after the JSON, without the closing tag.
        var unclosed = ToolCallSyntax.Hermes.Parse("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}");
        Assert.Null(unclosed.Content);
        Assert.Equal(("f", "{}"), (unclosed.Calls[0].Name, unclosed.Calls[0].Arguments));
    }

    [Theory]
    [InlineData("Just text, no call.")]
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1</tool_call>")] // malformed JSON
    [InlineData("<tool_call>\n{\"arguments\": {}}\n</tool_call>")] // no name
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>")] // arguments not an object
    public void An_answer_that_does_not_read_as_calls_stays_text(string text)
    {
        var answer = ToolCallSyntax.Hermes.Parse(text);
        Assert.Empty(answer.Calls);
        Assert.Equal(text, answer.Content);
    }

    [Fact]
    public void Llama_json_calls_are_the_whole_answer()
    {
        var answer = ToolCallSyntax.LlamaJson.Parse(" {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {}}");
        Assert.Null(answer.Content);
        Assert.Equal(new[] { ("get_weather", "{\"city\":\"Paris\"}"), ("get_time", "{}") }, answer.Calls.Select(c => (c.Name, c.Arguments)));
        Assert.Equal("f", ToolCallSyntax.LlamaJson.Parse("<|python_tag|>{\"name\": \"f\", \"parameters\": {}}").Calls[0].Name);
        Assert.Empty(ToolCallSyntax.LlamaJson.Parse("The answer is {\"name\": \"f\"}").Calls);
    }

    [Fact]
    public void Mistral_calls_are_a_list_after_the_marker_or_at_the_start_with_ids_its_template_takes_back()
    {
        var answer = ToolCallSyntax.Mistral.Parse("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"g\", \"arguments\": {}}]");
        Assert.Equal(new[] { "get_weather", "g" }, answer.Calls.Select(c => c.Name));
        Assert.All(answer.Calls, c => Assert.Matches("^[A-Za-z0-9]{9}$", c.Id));
        // Decoding usually drops the control token: the list alone at the start counts.
        Assert.Equal("{\"city\":\"Rome\"}", ToolCallSyntax.Mistral.Parse(" [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]").Calls[0].Arguments);
        Assert.Empty(ToolCallSyntax.Mistral.Parse("Sure, here it is.").Calls);
    }

    [Theory]
    [InlineData("hermes", "Let me check.", 13)]          // no marker: all of it may go
    [InlineData("hermes", "Let me check.<tool", 13)]     // a marker may be starting
    [InlineData("hermes", "Let me check.<tool_call>{\"na", 13)]
    [InlineData("hermes", "a < b", 5)]                 // '<' then ' ' cannot start the marker
    [InlineData("llama3_json", "  ", 0)]                // nothing but whitespace yet
    [InlineData("llama3_json", " {\"name", 0)]
    [InlineData("llama3_json", "<|python", 0)]
    [InlineData("llama3_json", "Paris is", 8)]
    [InlineData("mistral", "[{\"name", 0)]
    [InlineData("mistral", "Sure [TOOL_CA", 5)]
    [InlineData("mistral", "Sure.", 5)]
    public void A_stream_holds_back_what_is_or_may_become_a_call(string syntax, string text, int holdFrom)
    {
        var s = new[] { ToolCallSyntax.Hermes, ToolCallSyntax.LlamaJson, ToolCallSyntax.Mistral }.Single(x => x.Name == syntax);
        Assert.Equal(holdFrom, s.HoldFrom(text));
    }

    [Fact]
    public void A_form_whose_calls_are_the_whole_answer_holds_nothing_once_text_was_sent()
    {
        Assert.Equal(0, ToolCallSyntax.LlamaJson.HoldFrom("{\"name", atStart: true));
        Assert.Equal(6, ToolCallSyntax.LlamaJson.HoldFrom("{\"name", atStart: false));
        Assert.Equal(7, ToolCallSyntax.Mistral.HoldFrom("[1, 2] ", atStart: false));
        Assert.Equal(2, ToolCallSyntax.Mistral.HoldFrom("x [TOOL", atStart: false)); // its marker still counts
        Assert.Equal(0, ToolCallSyntax.Hermes.HoldFrom("<tool_call>", atStart: false));
    }

    [Theory]
    [InlineData("qwen2_5")]
    [InlineData("qwen3")]
    [InlineData("llama3_2")]
    [InlineData("mistral_nemo")]
    public void Calls_given_as_chat_messages_render_as_hugging_face_renders_them(string model)
    {
        // The tools_and_tool_calls conversation of RealTemplateTests, as the HTTP layer builds it from a request:
        // records whose calls carry their arguments as JSON text.
        var conversation = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "conversations.json"))).RootElement
            .EnumerateArray().Single(c => c.GetProperty("name").GetString() == "tools_and_tool_calls");
        var messages = conversation.GetProperty("messages").EnumerateArray().Select(m => new ChatMessage(
            m.GetProperty("role").GetString()!,
            m.GetProperty("content").GetString()!,
            m.TryGetProperty("tool_calls", out var calls)
                ? [.. calls.EnumerateArray().Select(c => new ToolCall(c.GetProperty("id").GetString()!, c.GetProperty("function").GetProperty("name").GetString()!,
                    c.GetProperty("function").GetProperty("arguments").GetRawText()))]
                : null,
            m.TryGetProperty("tool_call_id", out var id) ? id.GetString() : null)).ToList();
        var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "expected.json"))).RootElement
            .GetProperty(model).GetProperty("tools_and_tool_calls").GetProperty("with_generation_prompt");
        var clock = new FixedTimeProvider(new DateTimeOffset(2024, 7, 26, 12, 0, 0, TimeSpan.Zero));
        var template = ChatTemplates.Load(Path.Combine(DataDirectory, "models", model), null, clock);
        var tools = conversation.GetProperty("tools");

        if (expected.ValueKind == JsonValueKind.String)
            Assert.Equal(expected.GetString(), template.Render(messages, addGenerationPrompt: true, tools, null));
        else // the template refuses this conversation (mistral_nemo: its roles must alternate user/assistant), with its own message
            Assert.Equal(expected.GetProperty("error").GetString(), Assert.Throws<ChatTemplateException>(() => template.Render(messages, true, tools, null)).Message);
    }
}

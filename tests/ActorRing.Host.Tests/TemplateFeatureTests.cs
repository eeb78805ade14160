using System.Net;
using System.Text;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// What a model's chat template turns on, through a real 1-rank <c>serve</c> given a template (<c>--chat-template</c>)
/// that opens a think block in the prompt, as DeepSeek-R1's does, and teaches hermes tool calls, as Qwen's do. The
/// bundled story model then "thinks" whatever it writes: its answer goes to reasoning_content, a JSON answer is held
/// to JSON only after the block (which it never closes), and tools in auto are taken and rendered.
/// </summary>
public sealed class TemplateFeatureTests : IAsyncLifetime
{
    private const string Template = """
        {#- The model answers after its think block, which it ends with </think>. -#}
        {%- if tools %}You may call: {% for t in tools %}{{ t.function.name }} {% endfor %}as <tool_call>{"name": ..., "arguments": ...}</tool_call>
        {% endif %}
        {%- for m in messages %}{{ m.content }}{% endfor %}
        {%- if add_generation_prompt %}<think>
        {% endif %}
        """;

    private readonly LoopbackRing _ring = new(1);
    private readonly string _templateFile = Path.Combine(Path.GetTempPath(), $"actorring-template-{Guid.NewGuid():N}.jinja");
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(_templateFile, Template);
        int port = LoopbackRing.FreePort();
        var master = _ring.Serve(0, ["--http-port", port.ToString(), "--chat-template", _templateFile]);
        await master.WaitForLogAsync($"actorring: serving {HttpCluster.ModelId} on http://127.0.0.1:{port}/v1", HttpCluster.Deadline);
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
    }

    public Task DisposeAsync()
    {
        _http.Dispose();
        _ring.Dispose();
        File.Delete(_templateFile);
        return Task.CompletedTask;
    }

    private async Task<JsonElement> ChatAsync(string fields)
    {
        using var response = await _http.PostAsync("/v1/chat/completions", HttpCluster.Body(
            $$"""{"messages":[{"role":"user","content":"{{HttpCluster.Prompt}}"}],"temperature":0,"max_tokens":24,{{fields}}}"""));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static JsonElement Message(JsonElement answer) => answer.GetProperty("choices")[0].GetProperty("message");

    [Fact]
    public async Task An_answer_inside_an_open_think_block_is_reasoning_and_JSON_waits_for_the_block_to_end()
    {
        var free = await ChatAsync(""" "stream":false """);
        string reasoning = Message(free).GetProperty("reasoning_content").GetString()!;
        Assert.False(string.IsNullOrWhiteSpace(reasoning));
        Assert.Equal(JsonValueKind.Null, Message(free).GetProperty("content").ValueKind); // cut off while thinking
        Assert.Equal("length", free.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        // Held to JSON: inside the block the constraint lets every token but a stop through, so greedy thinks the same.
        var json = await ChatAsync(""" "response_format":{"type":"json_object"} """);
        Assert.Equal(reasoning, Message(json).GetProperty("reasoning_content").GetString());
        Assert.Equal(JsonValueKind.Null, Message(json).GetProperty("content").ValueKind);

        // Streamed, the thinking arrives as reasoning_content deltas that add up to the same text.
        using var response = await _http.PostAsync("/v1/chat/completions", HttpCluster.Body(
            $$"""{"messages":[{"role":"user","content":"{{HttpCluster.Prompt}}"}],"temperature":0,"max_tokens":24,"stream":true}"""));
        var deltas = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync()).Where(e => e != "[DONE]")
            .Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("delta")).ToList();
        Assert.Equal(reasoning, string.Concat(deltas.Select(d => d.TryGetProperty("reasoning_content", out var r) ? r.GetString() : "")));
        Assert.DoesNotContain(deltas, d => d.TryGetProperty("content", out var c) && c.GetString() is { Length: > 0 });
    }

    [Fact]
    public async Task Tools_in_auto_are_rendered_for_a_template_that_teaches_calls_and_a_plain_answer_stays_text()
    {
        var without = await ChatAsync(""" "stream":false """);
        var with = await ChatAsync(""" "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}] """);
        Assert.True(with.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > without.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(),
            "the tools were not rendered into the prompt");
        var message = Message(with);
        Assert.False(message.TryGetProperty("tool_calls", out _)); // the story model wrote no call
        Assert.Equal("length", with.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.False(string.IsNullOrWhiteSpace(message.GetProperty("reasoning_content").GetString()));
    }
}

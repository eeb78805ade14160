using System.ClientModel;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace ActorRing.Host.Tests;

/// <summary>The official OpenAI .NET client against a real 2-process cluster, used the way users use it.</summary>
[Collection(HttpClusterCollection.Name)]
public sealed class OpenAiClientTests(HttpCluster cluster)
{
    private OpenAIClientOptions Options => new() { Endpoint = new Uri(cluster.BaseUrl, "/v1") };

    private ChatClient Chat => new(HttpCluster.ModelId, new ApiKeyCredential(HttpCluster.ApiKey), Options);

    private static ChatCompletionOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokenCount = maxTokens };

    [Fact]
    public async Task A_chat_completion_is_the_greedy_text_generate_gives()
    {
        ChatCompletion answer = await Chat.CompleteChatAsync([new UserChatMessage(HttpCluster.Prompt)], Greedy(HttpCluster.ReferenceTokens));

        Assert.Equal(cluster.ReferenceText, answer.Content[0].Text);
        Assert.Equal(", there was a little girl named Lily. She loved to play outside in the p", answer.Content[0].Text);
        Assert.Equal(ChatMessageRole.Assistant, answer.Role);
        Assert.Equal(ChatFinishReason.Length, answer.FinishReason);
        Assert.Equal(5, answer.Usage.InputTokenCount); // BOS + "Once upon a time"
        Assert.Equal(24, answer.Usage.OutputTokenCount);
        Assert.Equal(29, answer.Usage.TotalTokenCount);
        Assert.Equal(HttpCluster.ModelId, answer.Model);
    }

    [Fact]
    public async Task Structured_output_through_the_clients_json_schema_format_parses_to_the_schema()
    {
        var options = Greedy(300);
        options.ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("story", BinaryData.FromString("""
            {"type":"object","properties":{"mood":{"enum":["happy","sad"]},"age":{"type":"integer"},"done":{"type":"boolean"},
             "name":{"type":"string"}},"required":["mood","age","done","name"],"additionalProperties":false}
            """), jsonSchemaIsStrict: true);
        ChatCompletion answer = await Chat.CompleteChatAsync([new UserChatMessage(HttpCluster.Prompt)], options);

        Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);
        using var doc = JsonDocument.Parse(answer.Content[0].Text);
        Assert.Equal(new[] { "age", "done", "mood", "name" }, doc.RootElement.EnumerateObject().Select(p => p.Name).Order());
        Assert.Contains(doc.RootElement.GetProperty("mood").GetString(), new[] { "happy", "sad" });

        // JSON mode through the client's own switch: the answer opens an object.
        var json = Greedy(40);
        json.ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat();
        ChatCompletion jsonAnswer = await Chat.CompleteChatAsync([new UserChatMessage(HttpCluster.Prompt)], json);
        Assert.StartsWith("{", jsonAnswer.Content[0].Text.TrimStart());
    }

    [Fact]
    public async Task A_forced_tool_call_comes_back_as_the_clients_tool_call_and_its_result_goes_back_in()
    {
        var weather = ChatTool.CreateFunctionTool("get_weather", "The weather in a city", BinaryData.FromString("""
            {"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"],"additionalProperties":false}
            """), functionSchemaIsStrict: true);
        var options = Greedy(200);
        options.Tools.Add(weather);
        options.ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather");
        List<ChatMessage> messages = [new UserChatMessage(HttpCluster.Prompt)];
        ChatCompletion answer = await Chat.CompleteChatAsync(messages, options);

        var call = Assert.Single(answer.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        using (var doc = JsonDocument.Parse(call.FunctionArguments.ToString()))
        {
            Assert.Equal(JsonValueKind.String, doc.RootElement.GetProperty("city").ValueKind);
            Assert.True(doc.RootElement.GetProperty("days").TryGetInt64(out _));
        }
        Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);

        // Streamed, the client's updates carry the same call.
        var streamedArguments = new StringBuilder();
        string? streamedName = null, streamedId = null;
        await foreach (var update in Chat.CompleteChatStreamingAsync(messages, options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                streamedName ??= part.FunctionName;
                streamedId ??= part.ToolCallId;
                streamedArguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
        }
        Assert.Equal("get_weather", streamedName);
        Assert.False(string.IsNullOrEmpty(streamedId));
        Assert.Equal(call.FunctionArguments.ToString(), streamedArguments.ToString());

        // The agent loop's next turn: the call and its result go back in, and the model answers in text.
        messages.Add(new AssistantChatMessage(answer.ToolCalls));
        messages.Add(new ToolChatMessage(call.Id, "Sunny, 20 degrees."));
        options.ToolChoice = ChatToolChoice.CreateNoneChoice();
        options.MaxOutputTokenCount = 8;
        ChatCompletion next = await Chat.CompleteChatAsync(messages, options);
        Assert.Empty(next.ToolCalls);
        Assert.False(string.IsNullOrEmpty(next.Content[0].Text));
    }

    [Fact]
    public async Task A_streamed_chat_completion_arrives_in_pieces_that_add_up_to_the_same_text()
    {
        var options = Greedy(HttpCluster.ReferenceTokens);
        var text = new StringBuilder();
        int updates = 0;
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (var update in Chat.CompleteChatStreamingAsync([new UserChatMessage(HttpCluster.Prompt)], options))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }

        Assert.Equal(cluster.ReferenceText, text.ToString());
        Assert.True(updates > 10, $"expected one update per token or so, got {updates}");
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage); // the client asks for stream_options.include_usage
        Assert.Equal(5, usage.InputTokenCount);
        Assert.Equal(24, usage.OutputTokenCount);
    }

    [Fact]
    public async Task A_stop_string_ends_the_chat_with_finish_reason_stop_and_is_not_in_the_text()
    {
        var options = Greedy(HttpCluster.ReferenceTokens);
        options.StopSequences.Add("Lily");
        ChatCompletion answer = await Chat.CompleteChatAsync([new UserChatMessage(HttpCluster.Prompt)], options);

        Assert.Equal(", there was a little girl named ", answer.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);
        // The tokens up to the one that completed "Lily", as generate's ids.
        int lily = cluster.ReferenceText.IndexOf("Lily", StringComparison.Ordinal);
        Assert.True(answer.Usage.OutputTokenCount is > 6 and < 24, $"{answer.Usage.OutputTokenCount} tokens for '{cluster.ReferenceText[..lily]}Lily'");
    }

    [Fact]
    public async Task A_legacy_completion_is_the_same_greedy_text()
    {
// OpenAI .NET 2.x keeps its legacy completions client internal; its public pipeline (authentication, retries,
        // error handling) sends the request instead, as a user of that package would.
        var client = new OpenAIClient(new ApiKeyCredential(HttpCluster.ApiKey), Options);
        using var message = client.Pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(cluster.BaseUrl, "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString(JsonSerializer.Serialize(new
        {
            model = HttpCluster.ModelId, prompt = HttpCluster.Prompt, max_tokens = HttpCluster.ReferenceTokens, temperature = 0,
        })));
        await client.Pipeline.SendAsync(message);
        Assert.Equal(200, message.Response!.Status);
        var json = JsonDocument.Parse(message.Response.Content.ToString()).RootElement;

        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(cluster.ReferenceText, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(5, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(24, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task The_model_list_names_the_served_model()
    {
        var models = new OpenAIModelClient(new ApiKeyCredential(HttpCluster.ApiKey), Options);
        OpenAIModelCollection list = await models.GetModelsAsync();

        var model = Assert.Single(list);
        Assert.Equal(HttpCluster.ModelId, model.Id);
        Assert.Equal("actorring", model.OwnedBy);

        // Retrieving one model by its id, and one this server does not have (a 404 the client raises).
        OpenAIModel one = await models.GetModelAsync(HttpCluster.ModelId);
        Assert.Equal((HttpCluster.ModelId, "actorring"), (one.Id, one.OwnedBy));
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => models.GetModelAsync("gpt-4o"));
        Assert.Equal(404, missing.Status);
        Assert.Contains("the model 'gpt-4o' does not exist; this server serves 'stories260K'", missing.Message);
    }
}

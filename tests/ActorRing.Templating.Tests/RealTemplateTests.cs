using System.Text.Json;

namespace ActorRing.Templating.Tests;

/// <summary>
/// The real chat templates of eleven models, rendered for each conversation in ChatTemplateData and compared
/// character for character with what Hugging Face's renderer gave (see ChatTemplateData/README.md for how
/// expected.json was made). A refusal must come back as a ChatTemplateException with the template's message.
/// </summary>
public class RealTemplateTests
{
    private static readonly string DataDirectory = Path.Combine(AppContext.BaseDirectory, "ChatTemplateData");

    private static readonly Dictionary<string, JsonElement> Conversations =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "conversations.json"))).RootElement
            .EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.Clone());

    private static readonly JsonElement Expected =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "expected.json"))).RootElement.Clone();

    /// <summary>The clock the expected renders were made with: 2024-07-26 12:00, local time taken as UTC.</summary>
    private static readonly TimeProvider FixedClock = new FixedTimeProvider(new DateTimeOffset(2024, 7, 26, 12, 0, 0, TimeSpan.Zero));

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in Expected.EnumerateObject())
            foreach (var conversation in model.Value.EnumerateObject())
                data.Add(model.Name, conversation.Name);
        return data;
    }

    [Fact]
    public void Every_model_and_conversation_has_an_expected_render()
    {
        var models = Directory.GetDirectories(Path.Combine(DataDirectory, "models")).Select(Path.GetFileName).Order().ToList();
        Assert.Equal(["command_r_plus", "deepseek_r1_distill", "deepseek_v3", "gemma3", "llama3", "llama3_1", "llama3_2", "mistral_nemo", "mistral_small_3_1", "qwen2_5", "qwen3"], models);
        foreach (var model in models)
            Assert.Equal(Conversations.Keys.Order(), Expected.GetProperty(model!).EnumerateObject().Select(c => c.Name).Order());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_as_hugging_face_does(string model, string conversationName)
    {
        var template = Assert.IsType<JinjaChatTemplate>(ChatTemplates.Load(Path.Combine(DataDirectory, "models", model), null, FixedClock));
        var conversation = Conversations[conversationName];
        var messages = conversation.GetProperty("messages").EnumerateArray().Cast<object?>().ToList();
        object? tools = conversation.TryGetProperty("tools", out var t) ? t : null;

        foreach (var (key, addGenerationPrompt) in new[] { ("without_generation_prompt", false), ("with_generation_prompt", true) })
        {
            var expected = Expected.GetProperty(model).GetProperty(conversationName).GetProperty(key);
            if (expected.ValueKind == JsonValueKind.String)
            {
                Assert.Equal(expected.GetString(), template.Render(messages, addGenerationPrompt, tools));
            }
            else
            {
                var error = Assert.Throws<ChatTemplateException>(() => template.Render(messages, addGenerationPrompt, tools));
                var message = expected.GetProperty("error").GetString()!;
                // A template's raise_exception message comes through exactly; an engine error (from Jinja2 here,
                // where Python names the exception type first) comes after our position prefix.
                if (message.StartsWith("TypeError: ", StringComparison.Ordinal)) message = message["TypeError: ".Length..];
                if (error.Message.StartsWith("chat template error at ", StringComparison.Ordinal)) Assert.EndsWith(message, error.Message);
                else Assert.Equal(message, error.Message);
            }
        }
    }
}

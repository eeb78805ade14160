using System.Text.Json;
using ActorRing.Templating.Jinja;

namespace ActorRing.Templating.Tests;

/// <summary>
/// Engine features checked against Python's Jinja2 itself: JinjaData/engine_cases.json holds small
/// templates and what Jinja2, configured as Hugging Face configures it, rendered for them
/// (JinjaData/make_engine_cases.py). A case Jinja2 refused must be refused here, with its message.
/// </summary>
public class JinjaConformanceTests
{
    private static readonly JsonElement Data = JsonDocument.Parse(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "JinjaData", "engine_cases.json"))).RootElement.Clone();

    private static readonly Dictionary<string, object?> Variables =
        Data.GetProperty("variables").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var c in Data.GetProperty("cases").EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_as_jinja2_does(string name)
    {
        var c = Data.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
        var template = new JinjaTemplate(c.GetProperty("template").GetString()!);
        var expected = c.GetProperty("expected");
        if (expected.ValueKind == JsonValueKind.String)
        {
            Assert.Equal(expected.GetString(), template.Render(Variables));
            return;
        }
        var error = Assert.Throws<ChatTemplateException>(() => template.Render(Variables));
        // Python prefixes the exception type; the text after it is what a user of HF would see.
        var message = expected.GetProperty("error").GetString()!;
        message = message.StartsWith("TypeError: ", StringComparison.Ordinal) ? message["TypeError: ".Length..] : message;
        Assert.Contains(message.TrimEnd('.'), error.Message);
    }
}

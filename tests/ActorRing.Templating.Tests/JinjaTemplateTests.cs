using ActorRing.Templating.Jinja;

namespace ActorRing.Templating.Tests;

/// <summary>The engine's public surface: Undefined semantics and the .NET values a caller may pass in.</summary>
public class JinjaTemplateTests
{
    [Fact]
    public void Undefined_values_behave_as_jinjas_default_undefined()
    {
        var template = new JinjaTemplate(
            "[{{ missing }}][{{ missing | default('d') }}][{{ missing | length }}][{% for x in missing %}x{% endfor %}]"
            + "[{{ missing is defined }}][{{ 'yes' if missing else 'no' }}][{{ missing ~ 'joined' }}][{{ d.nokey is defined }}][{{ missing == missing }}]");
        Assert.Equal("[][d][0][][False][no][joined][False][True]",
            template.Render(new Dictionary<string, object?> { ["d"] = new Dictionary<string, object?>() }));
    }

    [Fact]
    public void Variables_may_be_plain_dotnet_values_and_functions()
    {
        var template = new JinjaTemplate("{{ n + 1 }} {{ xs | join(',') }} {{ m.k }} {{ shout('hi') }} {{ f }}");
        var text = template.Render(new Dictionary<string, object?>
        {
            ["n"] = 41,
            ["xs"] = new[] { "a", "b" },
            ["m"] = new Dictionary<string, int> { ["k"] = 3 },
            ["shout"] = (Func<IReadOnlyList<object?>, object?>)(args => ((string)args[0]!).ToUpperInvariant() + "!"),
            ["f"] = 0.5f,
        });
        Assert.Equal("42 a,b 3 HI! 0.5", text);
        Assert.Equal("user [1, 2.5]", new JinjaTemplate("{{ node.role }} {{ node.n }}").Render(new Dictionary<string, object?>
        {
            ["node"] = System.Text.Json.Nodes.JsonNode.Parse("""{"role": "user", "n": [1, 2.5]}"""),
        }));
    }
}

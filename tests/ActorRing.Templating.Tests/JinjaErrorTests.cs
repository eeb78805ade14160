using ActorRing.Templating.Jinja;

namespace ActorRing.Templating.Tests;

/// <summary>What a template author sees when a template is wrong: the line and column, and what was expected.</summary>
public class JinjaErrorTests
{
    private static string ParseError(string source) => Assert.Throws<ChatTemplateException>(() => new JinjaTemplate(source)).Message;

    private static string RenderError(string source, Dictionary<string, object?>? variables = null) =>
        Assert.Throws<ChatTemplateException>(() => new JinjaTemplate(source).Render(variables ?? [])).Message;

    [Theory]
    [InlineData("{% if x %}abc", "chat template syntax error at line 1, column 14: unexpected end of template; expected '{% elif %}' or '{% else %}' or '{% endif %}'")]
    [InlineData("line one\n{{ x + }}", "chat template syntax error at line 2, column 8: expected an expression but found end of tag '}}'")]
    [InlineData("a\nb\n  {% endfor %}", "chat template syntax error at line 3, column 6: 'endfor' without a matching opening tag")]
    [InlineData("{% include 'x' %}", "chat template syntax error at line 1, column 4: unknown tag 'include'; this engine supports if, for, set, macro, raw, generation, break and continue")]
    [InlineData("{{ 'abc }}", "chat template syntax error at line 1, column 4: string is never closed; add '")]
    [InlineData("x\n{{ name", "chat template syntax error at line 2, column 1: tag is never closed; add }}")]
    [InlineData("{# note", "chat template syntax error at line 1, column 1: comment is never closed; add #}")]
    [InlineData("{% for x in items %}{% endif %}", "chat template syntax error at line 1, column 24: 'endif' without a matching opening tag")]
    [InlineData("{% for in items %}{% endfor %}", "chat template syntax error at line 1, column 11: expected 'in' but found 'items'")]
    [InlineData("{{ x ? y }}", "chat template syntax error at line 1, column 6: unexpected character '?'")]
    [InlineData("{% set x = 1 %}{{ f(a=1, 2) }}", "chat template syntax error at line 1, column 26: a positional argument cannot follow a named one")]
    [InlineData("{% raw %}never closed", "chat template syntax error at line 1, column 1: 'raw' block is never closed; add {% endraw %}")]
    public void Parse_errors_name_the_line_and_column(string source, string expected) =>
        Assert.Equal(expected, ParseError(source));

    [Fact]
    public void Runaway_recursion_and_nesting_stop_with_an_error_instead_of_overflowing_the_stack()
    {
        Assert.Equal("chat template error at line 1, column 28: macro 'f' calls itself more than 100 levels deep",
            RenderError("{% macro f(n) %}{{ n }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"));
        var deep = "{{ " + new string('(', 101) + "1" + new string(')', 101) + " }}";
        Assert.Equal("chat template syntax error at line 1, column 104: brackets nest more than 100 deep", ParseError(deep));
        Assert.Equal("1", new JinjaTemplate("{{ " + new string('(', 100) + "1" + new string(')', 100) + " }}").Render(new Dictionary<string, object?>()));
    }

    [Fact]
    public void Raise_exception_gives_exactly_the_templates_message()
    {
        var error = RenderError("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user message, not ' + messages[0].role) }}{% endif %}",
            new() { ["messages"] = new List<object?> { new ChatMessage("assistant", "hi") } });
        Assert.Equal("Conversation must start with a user message, not assistant", error);
    }

    [Theory]
    [InlineData("{{ 'a' + 1 }}", "chat template error at line 1, column 8: can only concatenate str (not \"int\") to str")]
    [InlineData("x\n  {{ missing.attr }}", "chat template error at line 2, column 13: 'missing' is undefined")]
    [InlineData("{{ missing + 'a' }}", "chat template error at line 1, column 12: 'missing' is undefined")]
    [InlineData("{{ nothing() }}", "chat template error at line 1, column 11: 'nothing' is undefined")]
    [InlineData("{% for x in 3 %}{% endfor %}", "chat template error at line 1, column 13: 'int' object is not iterable")]
    [InlineData("{{ [1].append(2) }}", "chat template error at line 1, column 14: access to attribute 'append' of 'list' object is unsafe: templates cannot modify lists")]
    [InlineData("{{ 'a' | nosuchfilter }}", "chat template error at line 1, column 8: unknown filter 'nosuchfilter'")]
    [InlineData("{{ 1 is nosuchtest }}", "chat template error at line 1, column 6: unknown test 'nosuchtest'")]
    [InlineData("{{ 1 // 0 }}", "chat template error at line 1, column 6: integer division or modulo by zero")]
    [InlineData("{% set d = {} %}{% set d.x = 1 %}", "chat template error at line 1, column 17: cannot assign attribute on non-namespace object: 'd' is a dict; make it with namespace() to set 'x' on it")]
    [InlineData("{{ 'x'.nosuchmethod() }}", "chat template error at line 1, column 20: 'str object' has no attribute 'nosuchmethod'")]
    [InlineData("{{ {'a': 1} | tojson(separators=1) }}", "chat template error at line 1, column 13: tojson separators must be a pair of strings, e.g. (',', ':')")]
    public void Render_errors_name_the_position_and_the_problem(string source, string expected) =>
        Assert.Equal(expected, RenderError(source));

    [Fact]
    public void A_variable_of_an_unsupported_type_is_refused_by_name()
    {
        var error = Assert.Throws<ArgumentException>(() => new JinjaTemplate("{{ x }}").Render(new Dictionary<string, object?> { ["x"] = new Uri("http://a") }));
        Assert.Equal("a template variable cannot be a Uri; pass strings, numbers, booleans, lists, dictionaries or JSON", error.Message);
    }
}

namespace ActorRing.Templating.Jinja;

/// <summary>
/// A parsed Jinja template, rendered with Python Jinja's semantics as Hugging Face configures them
/// (trim_blocks, lstrip_blocks, loop controls, a json.dumps <c>tojson</c>). Parse once, render many times;
/// rendering is thread-safe because every render gets its own scopes.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Node> _nodes;

    /// <exception cref="ChatTemplateException">The source does not parse; the message names line and column.</exception>
    public JinjaTemplate(string source) => _nodes = Parser.Parse(source);

    /// <summary>
    /// Renders with the given variables. Values may be strings, numbers, booleans, null, lists, dictionaries
    /// with string keys, <see cref="System.Text.Json.JsonElement"/>s, <see cref="System.Text.Json.Nodes.JsonNode"/>s or
    /// <see cref="ChatMessage"/>s, and
    /// functions given as <c>Func&lt;IReadOnlyList&lt;object?&gt;, object?&gt;</c>.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template failed, or refused the input with raise_exception
    /// (then the message is exactly the template's).</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        var runtime = new Dictionary<string, object?>
        {
            ["namespace"] = new Callable("namespace", NewNamespace),
            ["range"] = new Callable("range", Range),
            ["dict"] = new Callable("dict", args => new Dictionary<string, object?>(args.Named)),
            ["raise_exception"] = new Callable("raise_exception", args => throw new TemplateRaisedError(Values.ToText(args.Get(0, "message")))),
        };
        foreach (var (name, value) in variables)
            runtime[name] = value is Func<IReadOnlyList<object?>, object?> function
                ? new Callable(name, args => Values.FromHost(function(args.Positional)))
                : Values.FromHost(value);
        try
        {
            return Renderer.Render(_nodes, runtime);
        }
        catch (TemplateRaisedError e)
        {
            throw new ChatTemplateException(e.Message, e);
        }
        catch (JinjaError e)
        {
            throw new ChatTemplateException($"chat template error: {e.Message}", e);
        }
        catch (OverflowException e)
        {
            throw new ChatTemplateException($"chat template error: a number is too large ({e.Message})", e);
        }
    }

    private static object? NewNamespace(CallArguments args)
    {
        var attributes = new Dictionary<string, object?>();
        foreach (var initial in args.Positional)
        {
            if (initial is not Dictionary<string, object?> dict) throw new JinjaError("namespace() takes a dict or name=value arguments");
            foreach (var (key, value) in dict) attributes[key] = value;
        }
        foreach (var (key, value) in args.Named) attributes[key] = value;
        return new Namespace(attributes);
    }

    private static object? Range(CallArguments args)
    {
        var numbers = args.Positional.Select(Values.ToLong).ToList();
        var (start, stop, step) = numbers.Count switch
        {
            1 => (0L, numbers[0], 1L),
            2 => (numbers[0], numbers[1], 1L),
            3 => (numbers[0], numbers[1], numbers[2]),
            _ => throw new JinjaError("range() takes 1 to 3 integers"),
        };
        if (step == 0) throw new JinjaError("range() step must not be zero");
        var result = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (result.Count >= 100_000) throw new JinjaError("range() is limited to 100000 items");
            result.Add(i);
        }
        return result;
    }
}

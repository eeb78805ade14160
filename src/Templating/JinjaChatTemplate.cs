using ActorRing.Templating.Jinja;

namespace ActorRing.Templating;

/// <summary>
/// A model's own chat template, rendered with the variables Hugging Face's <c>apply_chat_template</c> passes:
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>/<c>eos_token</c> (when the model has them),
/// <c>tools</c> (none unless given), <c>documents</c> (none), <c>strftime_now(format)</c> and
/// <c>raise_exception(message)</c>.
/// </summary>
public sealed class JinjaChatTemplate : IChatTemplate
{
    private readonly JinjaTemplate _template;
    private readonly JinjaTemplate? _toolUseTemplate;
    private readonly string? _bosToken;
    private readonly string? _eosToken;
    private readonly TimeProvider _clock;

    /// <param name="clock">The clock behind <c>strftime_now</c>, local time as in Python's datetime.now().</param>
    /// <param name="toolUseSource">A model's template named "tool_use", which Hugging Face renders instead of the
    /// default one when tools are given.</param>
    /// <exception cref="ChatTemplateException">A source does not parse; the message names line and column.</exception>
    public JinjaChatTemplate(string source, string? bosToken, string? eosToken, TimeProvider? clock = null, string? toolUseSource = null)
    {
        _template = new JinjaTemplate(source);
        _toolUseTemplate = toolUseSource is null ? null : new JinjaTemplate(toolUseSource);
        ToolCallSyntax = ToolCallSyntax.For(toolUseSource ?? source);
        TeachesThinking = ThinkSplitter.Teaches(source);
        _bosToken = bosToken;
        _eosToken = eosToken;
        _clock = clock ?? TimeProvider.System;
    }

    public string? BosToken => _bosToken;
    public string? EosToken => _eosToken;

    public ToolCallSyntax? ToolCallSyntax { get; }

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        Render(messages.Cast<object?>().ToList(), addGenerationPrompt);

    public bool TeachesThinking { get; }

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, System.Text.Json.JsonElement? tools,
        IReadOnlyDictionary<string, object?>? variables) =>
        Render(messages.Cast<object?>().ToList(), addGenerationPrompt, tools is { } t ? t : null, variables);

    /// <summary>
    /// The general form, for messages with more than role and content (tool calls, tool results, content
    /// parts) and for tools. Messages and tools may be dictionaries, lists, <see cref="ChatMessage"/>s or
    /// <see cref="System.Text.Json.JsonElement"/>s (e.g. straight from an OpenAI request body).
    /// </summary>
    /// <param name="extraVariables">Further template variables, e.g. <c>enable_thinking</c> or <c>date_string</c>.</param>
    public string Render(IReadOnlyList<object?> messages, bool addGenerationPrompt, object? tools = null,
        IReadOnlyDictionary<string, object?>? extraVariables = null)
    {
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["tools"] = tools,
            ["documents"] = null,
            ["strftime_now"] = (Func<IReadOnlyList<object?>, object?>)(args =>
                StrFTime.Format(_clock.GetLocalNow(), args.Count > 0 && args[0] is string format ? format
                    : throw new ChatTemplateException("strftime_now() needs a format string, e.g. strftime_now(\"%d %b %Y\")"))),
        };
        if (_bosToken is not null) variables["bos_token"] = _bosToken;
        if (_eosToken is not null) variables["eos_token"] = _eosToken;
        if (extraVariables is not null)
            foreach (var (name, value) in extraVariables) variables[name] = value;
        return (tools is not null && _toolUseTemplate is not null ? _toolUseTemplate : _template).Render(variables);
    }
}

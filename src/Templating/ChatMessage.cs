namespace ActorRing.Templating;

/// <summary>
/// One turn of a conversation as chat templates see it: a role (system, user, assistant, tool) and its text. An
/// assistant turn may hold the tool calls it made (<paramref name="ToolCalls"/>), and a tool turn answers the call
/// <paramref name="ToolCallId"/>.
/// </summary>
public sealed record ChatMessage(string Role, string Content, IReadOnlyList<ToolCall>? ToolCalls = null, string? ToolCallId = null);

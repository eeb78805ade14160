using System.Text.Json;

namespace ActorRing.Templating;

/// <summary>
/// The template for a model that ships none (the bundled story model): the message contents joined by
/// newlines, with nothing added for the assistant's turn. A base model continues the text it is given, so
/// any role markup would only be text it never saw in training; for the same reason it describes no tools, takes
/// no variables and teaches no form of call and no think block.
/// </summary>
public sealed class PlainChatTemplate : IChatTemplate
{
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        string.Join("\n", messages.Select(m => m.Content));

    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, JsonElement? tools, IReadOnlyDictionary<string, object?>? variables) =>
        Render(messages, addGenerationPrompt);

    public ToolCallSyntax? ToolCallSyntax => null;

    public bool TeachesThinking => false;
}

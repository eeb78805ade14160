using System.Text.Json;

namespace ActorRing.Templating;

/// <summary>Turns a conversation into the prompt text a model was trained on.</summary>
public interface IChatTemplate
{
    /// <param name="addGenerationPrompt">Append the opening of an assistant turn, so the model answers next.</param>
    /// <exception cref="ChatTemplateException">The template refused the conversation (its raise_exception), or failed.</exception>
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>The same, with the functions the model may call: OpenAI's <c>tools</c> list, which the template
    /// describes to the model (a template that has no place for tools leaves them out).</summary>
    /// <exception cref="ChatTemplateException">The template refused the conversation, or failed.</exception>
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, JsonElement tools);

    /// <summary>How the model writes calls in its answers, as the template teaches it; null when it teaches none this
    /// server reads.</summary>
    ToolCallSyntax? ToolCallSyntax { get; }
}

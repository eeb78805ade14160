using System.Text.Json;

namespace ActorRing.Templating;

/// <summary>Turns a conversation into the prompt text a model was trained on.</summary>
public interface IChatTemplate
{
    /// <param name="addGenerationPrompt">Append the opening of an assistant turn, so the model answers next.</param>
    /// <exception cref="ChatTemplateException">The template refused the conversation (its raise_exception), or failed.</exception>
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>The same, with the functions the model may call (OpenAI's <c>tools</c> list, which the template
    /// describes to the model; a template that has no place for tools leaves them out) and further variables of the
    /// template (vLLM's <c>chat_template_kwargs</c>, such as Qwen3's <c>enable_thinking</c>).</summary>
    /// <exception cref="ChatTemplateException">The template refused the conversation, or failed.</exception>
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, JsonElement? tools, IReadOnlyDictionary<string, object?>? variables);

    /// <summary>Whether the template teaches a think block (<c>&lt;think&gt;…&lt;/think&gt;</c>), whose text is the
    /// model's reasoning rather than its answer (see <see cref="ThinkSplitter"/>).</summary>
    bool TeachesThinking { get; }

    /// <summary>How the model writes calls in its answers, as the template teaches it; null when it teaches none this
    /// server reads.</summary>
    ToolCallSyntax? ToolCallSyntax { get; }
}

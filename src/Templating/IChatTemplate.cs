namespace ActorRing.Templating;

/// <summary>Turns a conversation into the prompt text a model was trained on.</summary>
public interface IChatTemplate
{
    /// <param name="addGenerationPrompt">Append the opening of an assistant turn, so the model answers next.</param>
    /// <exception cref="ChatTemplateException">The template refused the conversation (its raise_exception), or failed.</exception>
    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);
}

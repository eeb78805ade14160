namespace ActorRing.Templating;

/// <summary>A template could not be parsed or rendered, or it refused the conversation; the message says why
/// (for a template's own raise_exception, its text), so a server can answer 400 with it.</summary>
public sealed class ChatTemplateException(string message, Exception? inner = null) : Exception(message, inner);

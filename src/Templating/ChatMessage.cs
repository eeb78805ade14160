namespace ActorRing.Templating;

/// <summary>One turn of a conversation as chat templates see it: a role (system, user, assistant, tool) and its text.</summary>
public sealed record ChatMessage(string Role, string Content);

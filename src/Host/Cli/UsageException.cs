namespace ActorRing.Host.Cli;

/// <summary>A command line the user can fix: the message names the option, the value and what is expected.</summary>
public sealed class UsageException(string message) : Exception(message);

namespace ActorRing.Model.Tokenization;

/// <summary>A tokenizer file is missing, unrecognised or malformed. The message names the file.</summary>
public sealed class TokenizerFormatException : Exception
{
    public TokenizerFormatException(string message) : base(message) { }

    public TokenizerFormatException(string message, Exception inner) : base(message, inner) { }
}

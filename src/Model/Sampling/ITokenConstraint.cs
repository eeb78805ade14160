namespace ActorRing.Model.Sampling;

/// <summary>
/// A rule on which tokens may come next, which the <see cref="Sampler"/> applies before it picks: a disallowed
/// token's score becomes -infinity, so top-k, top-p and the draw see only allowed tokens (OpenAI's
/// response_format). One instance per sequence: it follows that sequence's tokens through <see cref="Accept"/>.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Whether <paramref name="tokenId"/> may be the next token.</summary>
    bool Allows(int tokenId);

    /// <summary>Sets the score of every disallowed token to -infinity (scores past the vocabulary included); false
    /// when no token with a finite score is left.</summary>
    bool RemoveDisallowed(Span<float> scores);

    /// <summary>The sequence went on with <paramref name="tokenId"/> (an allowed token).</summary>
    /// <exception cref="InvalidOperationException">The token was not allowed.</exception>
    void Accept(int tokenId);
}

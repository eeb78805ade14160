namespace ActorRing.Model.Generation;

/// <summary>
/// Rank 0's side of a generation: picks each next token from the gathered logits and decides when to stop.
/// Other ranks only follow the tokens rank 0 broadcasts.
/// </summary>
public interface IGenerationController
{
    /// <summary>The next token given the full-vocabulary logits and every id so far (prompt + generated).</summary>
    int Choose(ReadOnlySpan<float> logits, IReadOnlyList<int> sequence);

    /// <summary>Takes the chosen token; true when generation ends with it.</summary>
    bool Accept(int token);

    /// <summary>Why generation ended ("stop" or "length"), once <see cref="Accept"/> returned true.</summary>
    string? FinishReason { get; }
}

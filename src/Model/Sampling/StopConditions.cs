using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Sampling;

/// <summary>OpenAI-compatible finish reasons.</summary>
public static class FinishReasons
{
    /// <summary>EOS or a stop string.</summary>
    public const string Stop = "stop";

    /// <summary>max_tokens reached.</summary>
    public const string Length = "length";
}

/// <summary>What one generated token contributes to the stream.</summary>
/// <param name="Text">Text to send to the client now (may be empty while a character or a possible stop string is incomplete).</param>
/// <param name="Stopped">Generation is over; <paramref name="FinishReason"/> says why.</param>
/// <param name="FinishReason"><see cref="FinishReasons.Stop"/> or <see cref="FinishReasons.Length"/> when stopped, else null.</param>
public readonly record struct StopCheck(string Text, bool Stopped, string? FinishReason);

/// <summary>
/// The per-request end-of-generation logic on rank 0: decodes each generated token incrementally, cuts the text
/// at the first stop string (which is not emitted), and stops on an EOS id or after max_tokens.
/// When generation stops, every piece of text that belongs to the completion has been returned.
/// </summary>
public sealed class StopConditions
{
    private readonly IncrementalDecoder _decoder;
    private readonly HashSet<int> _eos;
    private readonly StopStringMatcher _matcher;
    private readonly int _minTokens;

    /// <param name="minTokens">vLLM's min_tokens: no stop string ends a completion shorter than this many tokens (the
    /// sampler holds back EOS and the stop ids; see <see cref="SamplingOptions"/>).</param>
    public StopConditions(IncrementalDecoder decoder, IEnumerable<int> eosIds, int maxTokens, IReadOnlyList<string>? stopStrings, int minTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(eosIds);
        if (maxTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, $"max_tokens must be >= 1, got {maxTokens}");
        }

        _decoder = decoder;
        _eos = [.. eosIds];
        MaxTokens = maxTokens;
        _matcher = new StopStringMatcher(stopStrings);
        _minTokens = minTokens;
    }

    /// <summary>Stop conditions for a completion of <paramref name="promptIds"/> with the tokenizer's EOS ids (unless the
    /// options ignore EOS), the options' stop token ids and limits.</summary>
    public static StopConditions For(ITextTokenizer tokenizer, SamplingOptions options, IReadOnlyList<int> promptIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var eos = options.IgnoreEos ? [] : tokenizer.EosIds;
        return new StopConditions(tokenizer.CreateIncrementalDecoder(promptIds), eos.Concat(options.StopTokenIds ?? []), options.MaxTokens, options.StopStrings,
            options.MinTokens);
    }

    public int MaxTokens { get; }

    /// <summary>Tokens appended so far, EOS included.</summary>
    public int GeneratedTokens { get; private set; }

    public bool Stopped { get; private set; }

    public string? FinishReason { get; private set; }

    /// <summary>The stop string that ended generation, if one did.</summary>
    public string? MatchedStopString { get; private set; }

    /// <summary>Feeds one generated token. After a result with Stopped = true, no more tokens may be appended.</summary>
    public StopCheck Append(int tokenId)
    {
        if (Stopped)
        {
            throw new InvalidOperationException($"generation already stopped ({FinishReason}); no more tokens can be appended");
        }

        GeneratedTokens++;
        if (_eos.Contains(tokenId))
        {
            return Finish(FinishReasons.Stop);
        }

        var step = _matcher.Push(_decoder.Append(tokenId), armed: GeneratedTokens >= _minTokens);
        if (step.Stopped)
        {
            return Stop(step.Text, step.StopString);
        }

        return GeneratedTokens >= MaxTokens ? Finish(FinishReasons.Length, step.Text) : new StopCheck(step.Text, false, null);
    }

    // Ends generation for a reason other than a stop string: whatever the decoder and matcher still hold belongs to
    // the completion, unless flushing it completes a stop string after all.
    private StopCheck Finish(string reason, string already = "")
    {
        var tail = _matcher.Push(_decoder.Flush(), armed: GeneratedTokens >= _minTokens);
        if (tail.Stopped)
        {
            return Stop(already + tail.Text, tail.StopString);
        }

        Stopped = true;
        FinishReason = reason;
        return new StopCheck(already + tail.Text + _matcher.Flush(), true, reason);
    }

    private StopCheck Stop(string text, string? stopString)
    {
        Stopped = true;
        FinishReason = FinishReasons.Stop;
        MatchedStopString = stopString;
        return new StopCheck(text, true, FinishReasons.Stop);
    }
}

namespace ActorRing.Host.Generation;

/// <summary>What one request produces, in order: <see cref="TokenEvent"/>s and <see cref="TextEvent"/>s, then
/// exactly one <see cref="FinishedEvent"/> or <see cref="FailedEvent"/>.</summary>
public abstract record GenerationEvent;

/// <summary>A generated token. <paramref name="Logprob"/> is set when the request asked for log-probabilities.</summary>
public sealed record TokenEvent(int Index, int TokenId, TokenLogprob? Logprob) : GenerationEvent;

/// <summary>Text that is final: whole UTF-8 characters only, never part of a stop string.</summary>
public sealed record TextEvent(string Text) : GenerationEvent;

/// <param name="FinishReason">OpenAI's: <c>stop</c> (EOS or a stop string) or <c>length</c> (max_tokens).</param>
/// <param name="StopString">The stop string that ended the request, if one did.</param>
public sealed record FinishedEvent(string FinishReason, TokenUsage Usage, GenerationTimings Timings, string? StopString) : GenerationEvent;

public sealed record FailedEvent(string Message, GenerationErrorKind Kind) : GenerationEvent;

public enum GenerationErrorKind
{
    /// <summary>The request itself is wrong (HTTP 400).</summary>
    InvalidRequest,

    /// <summary>The cluster cannot serve it now: a rank is down or the ring is re-forming (HTTP 503).</summary>
    Unavailable,
}

/// <param name="CompletionTokens">Every generated token, an end-of-sequence token included, up to the one that
/// ended the request.</param>
public sealed record TokenUsage(int PromptTokens, int CompletionTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <param name="QueuedMs">Time waiting behind other requests.</param>
/// <param name="FirstTokenMs">From submission (after the queue) to the first token.</param>
/// <param name="MsPerToken">Mean decode step time, as the coordinator measured it.</param>
/// <param name="ControlShare">Share of decode time outside the ranks' compute (which includes their
/// all-reduces): actor messaging and scheduling.</param>
public sealed record GenerationTimings(double QueuedMs, double FirstTokenMs, double PrefillMs, double MsPerToken, double ControlShare);

/// <summary>The sampled token's log-probability and, when asked, the most likely alternatives.</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);

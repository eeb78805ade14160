using System.Globalization;

namespace ActorRing.Model.Sampling;

/// <summary>
/// How to pick the next token. Temperature 0 is greedy. TopK 0 and TopP 1 disable those filters,
/// RepetitionPenalty 1 disables the penalty. Seed null draws a random seed (see <see cref="Sampler.Seed"/>).
/// StopTokenIds end a generation like the tokenizer's EOS ids (e.g. those of the model's generation_config.json).
/// </summary>
public sealed record SamplingOptions(
    float Temperature = 0,
    int TopK = 0,
    float TopP = 1,
    float RepetitionPenalty = 1,
    ulong? Seed = null,
    int MaxTokens = 256,
    IReadOnlyList<string>? StopStrings = null,
    IReadOnlyList<int>? StopTokenIds = null)
{
    /// <summary>Greedy decoding: the same token for the same logits, every time.</summary>
    public static SamplingOptions Greedy { get; } = new();

    public bool IsGreedy => Temperature == 0 || TopK == 1;

    /// <summary>
    /// Every problem with these options, each naming the field (as the HTTP API and CLI spell it) and the value.
    /// Empty when the options are usable.
    /// </summary>
    public IReadOnlyList<string> GetErrors()
    {
        var errors = new List<string>();
        if (!(Temperature >= 0))
        {
            errors.Add($"temperature must be >= 0, got {F(Temperature)}");
        }
        else if (float.IsPositiveInfinity(Temperature))
        {
            errors.Add($"temperature must be finite, got {F(Temperature)}");
        }

        if (TopK < 0)
        {
            errors.Add($"top_k must be >= 0 (0 disables it), got {TopK}");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            errors.Add($"top_p must be in (0, 1] (1 disables it), got {F(TopP)}");
        }

        if (!(RepetitionPenalty > 0) || float.IsPositiveInfinity(RepetitionPenalty))
        {
            errors.Add($"repetition_penalty must be > 0 and finite (1 disables it), got {F(RepetitionPenalty)}");
        }

        if (MaxTokens < 1)
        {
            errors.Add($"max_tokens must be >= 1, got {MaxTokens}");
        }

        if (StopStrings is not null)
        {
            for (var i = 0; i < StopStrings.Count; i++)
            {
                if (string.IsNullOrEmpty(StopStrings[i]))
                {
                    errors.Add($"stop strings must be non-empty, but stop[{i}] is {(StopStrings[i] is null ? "null" : "empty")}");
                }
            }
        }

        return errors;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> listing every problem, e.g. "temperature must be >= 0, got -1"; returns this when valid.</summary>
    public SamplingOptions Validate()
    {
        var errors = GetErrors();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }

        return this;
    }

    private static string F(float v) => v.ToString(CultureInfo.InvariantCulture);
}

using System.Globalization;

namespace ActorRing.Model.Sampling;

/// <summary>
/// How to pick the next token. Temperature 0 is greedy. TopK 0, TopP 1 and MinP 0 disable those filters,
/// RepetitionPenalty 1 and Presence/FrequencyPenalty 0 disable the penalties. Seed null draws a random seed (see
/// <see cref="Sampler.Seed"/>). Logprobs null returns no log-probabilities; N returns the sampled token's and the
/// N most likely alternatives' (0: the sampled token's only).
/// StopTokenIds end a generation like the tokenizer's EOS ids (e.g. those of the model's generation_config.json).
/// IgnoreEos (vLLM's ignore_eos, for load tests that need every completion max_tokens long): the tokenizer's EOS ids
/// do not end the generation; StopTokenIds and stop strings still do. MinTokens (vLLM's min_tokens): the sampler
/// never picks a StopTokenIds id before that many tokens are generated (give it the EOS ids among them), and
/// <see cref="StopConditions"/> lets no stop string end a shorter completion.
/// LogitBias (OpenAI's logit_bias) adds a value in [-100, 100] to a token's logit before anything else looks at
/// it: -100 in effect bans the token, 100 in effect forces it.
/// JsonObject (OpenAI's response_format json_object): the completion is one JSON object, ended by an EOS or stop id
/// right after it (<see cref="JsonConstraint"/>), so it cannot be combined with IgnoreEos or MinTokens.
/// JsonSchema (response_format json_schema): the same, for an object that follows this JSON Schema (its text; see
/// <see cref="Sampling.JsonSchema"/> for the keywords it may use).
/// ThinkFirst: a reasoning model's JSON comes after its think block (<see cref="ThinkPreamble"/>).
/// </summary>
public sealed record SamplingOptions(
    float Temperature = 0,
    int TopK = 0,
    float TopP = 1,
    float RepetitionPenalty = 1,
    ulong? Seed = null,
    int MaxTokens = 256,
    IReadOnlyList<string>? StopStrings = null,
    IReadOnlyList<int>? StopTokenIds = null,
    float MinP = 0,
    float PresencePenalty = 0,
    float FrequencyPenalty = 0,
    int? Logprobs = null,
    IReadOnlyDictionary<int, float>? LogitBias = null,
    bool IgnoreEos = false,
    int MinTokens = 0,
    bool JsonObject = false,
    string? JsonSchema = null,
    ThinkBlock ThinkFirst = ThinkBlock.None)
{
    /// <summary>The answer is held to JSON: an object (<see cref="JsonObject"/>) or one that follows <see cref="JsonSchema"/>.</summary>
    public bool ConstrainsJson => JsonObject || JsonSchema is not null;

    /// <summary>The response format as errors name it.</summary>
    public string JsonFormatName => JsonSchema is not null ? "response_format json_schema" : "response_format json_object";

    /// <summary>The largest bias magnitude a request may give a token (OpenAI's limit).</summary>
    public const float MaxLogitBias = 100;

    public bool HasLogitBias => LogitBias is { Count: > 0 };

    /// <summary>The most alternatives a request may ask log-probabilities for (OpenAI's limit).</summary>
    public const int MaxLogprobs = 20;

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

        if (!(MinP >= 0 && MinP <= 1))
        {
            errors.Add($"min_p must be in [0, 1] (0 disables it), got {F(MinP)}");
        }

        if (!(PresencePenalty >= -2 && PresencePenalty <= 2))
        {
            errors.Add($"presence_penalty must be in [-2, 2] (0 disables it), got {F(PresencePenalty)}");
        }

        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2))
        {
            errors.Add($"frequency_penalty must be in [-2, 2] (0 disables it), got {F(FrequencyPenalty)}");
        }

        if (Logprobs is < 0 or > MaxLogprobs)
        {
            errors.Add($"top_logprobs must be in [0, {MaxLogprobs}], got {Logprobs}");
        }

        if (LogitBias is not null)
        {
            foreach (var (id, bias) in LogitBias)
            {
                if (id < 0)
                {
                    errors.Add($"logit_bias keys must be token ids >= 0, got {id}");
                }

                if (!(bias >= -MaxLogitBias && bias <= MaxLogitBias))
                {
                    errors.Add($"logit_bias values must be in [-{MaxLogitBias}, {MaxLogitBias}], but token {id} has {F(bias)}");
                }
            }
        }

        if (MaxTokens < 1)
        {
            errors.Add($"max_tokens must be >= 1, got {MaxTokens}");
        }

        if (MinTokens < 0 || MinTokens > MaxTokens)
        {
            errors.Add($"min_tokens must be in [0, max_tokens = {MaxTokens}], got {MinTokens}");
        }

        if (ConstrainsJson && IgnoreEos)
        {
            errors.Add($"{JsonFormatName} ends the completion with EOS right after the object, so ignore_eos cannot be used with it");
        }

        if (ConstrainsJson && MinTokens > 0)
        {
            errors.Add($"{JsonFormatName} ends the completion right after the object, however short, so min_tokens ({MinTokens}) cannot be used with it");
        }

        if (JsonObject && JsonSchema is not null)
        {
            errors.Add("response_format is either json_object or json_schema, not both");
        }

        if (JsonSchema is not null)
        {
            try
            {
                Sampling.JsonSchema.FromText(JsonSchema);
            }
            catch (JsonSchemaException e)
            {
                errors.Add($"response_format json_schema: {e.Message}");
            }
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

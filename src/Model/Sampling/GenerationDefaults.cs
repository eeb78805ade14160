using System.Globalization;
using System.Text.Json;

namespace ActorRing.Model.Sampling;

/// <summary>
/// The defaults a model's <c>generation_config.json</c> sets for a request, as vLLM and transformers apply
/// them: <c>temperature</c>, <c>top_p</c>, <c>top_k</c> and <c>repetition_penalty</c> fill what a request does
/// not give, and its <c>eos_token_id</c> (one id or a list) ends a generation besides the tokenizer's EOS.
/// Other fields (max_new_tokens, min_p, pad_token_id, …) are not read.
/// </summary>
public sealed record GenerationDefaults
{
    public const string FileName = "generation_config.json";

    /// <summary>No defaults: what a model without the file, or <c>--generation-config ignore</c>, gets.</summary>
    public static GenerationDefaults None { get; } = new();

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public float? Temperature { get; init; }
    public float? TopP { get; init; }
    public int? TopK { get; init; }
    public float? RepetitionPenalty { get; init; }

    /// <summary>Where the defaults came from, for messages; null for <see cref="None"/>.</summary>
    public string? Source { get; init; }

    /// <summary>
    /// The defaults of the model in <paramref name="modelDir"/> (a directory <see cref="ModelDirectory"/>
    /// recognises): its generation_config.json, or <see cref="None"/> when it has none (llama2.c checkpoints never do).
    /// </summary>
    public static GenerationDefaults Load(string modelDir)
    {
        string path = Path.Combine(ModelDirectory.Recognise(modelDir).Path, FileName);
        return File.Exists(path) ? Parse(File.ReadAllText(path), path) : None;
    }

    /// <summary>Reads a generation_config.json; a malformed value is refused naming the file, the field and the value.</summary>
    public static GenerationDefaults Parse(string json, string source = FileName)
    {
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(json).RootElement;
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{source} is not valid JSON: {e.Message}; fix the file, or pass --generation-config ignore");
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"{source} must hold a JSON object; fix the file, or pass --generation-config ignore");

        ModelLoadException Bad(string field, JsonElement value, string expected) =>
            new($"{source}: {field} = {value.GetRawText()} is not usable: {expected}; fix the file, or pass --generation-config ignore");

        var eos = new List<int>();
        if (root.TryGetProperty("eos_token_id", out var eosEl) && eosEl.ValueKind != JsonValueKind.Null)
        {
            var items = eosEl.ValueKind == JsonValueKind.Array ? eosEl.EnumerateArray().ToArray() : [eosEl];
            foreach (var item in items)
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id) || id < 0)
                    throw Bad("eos_token_id", eosEl, "expected a token id or a list of token ids");
                if (!eos.Contains(id)) eos.Add(id);
            }
        }

        double? Number(string field)
        {
            if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble() : throw Bad(field, v, "expected a number");
        }

        double? temperature = Number("temperature"), topP = Number("top_p"), topK = Number("top_k"), penalty = Number("repetition_penalty");
        if (temperature < 0) throw Bad("temperature", root.GetProperty("temperature"), "expected a number >= 0");
        if (topP is <= 0 or > 1) throw Bad("top_p", root.GetProperty("top_p"), "expected a number in (0, 1]");
        if (topK is double k && (k < 0 || k != Math.Floor(k) || k > int.MaxValue)) throw Bad("top_k", root.GetProperty("top_k"), "expected an integer >= 0");
        if (penalty <= 0) throw Bad("repetition_penalty", root.GetProperty("repetition_penalty"), "expected a number > 0");

        // transformers samples only with do_sample true, and otherwise decodes greedily whatever the temperature
        // says. A file that says do_sample false therefore means greedy; one that does not say, vLLM's reading.
        if (root.TryGetProperty("do_sample", out var sample) && sample.ValueKind == JsonValueKind.False) temperature = 0;

        return new GenerationDefaults
        {
            EosTokenIds = eos,
            Temperature = (float?)temperature,
            TopP = (float?)topP,
            TopK = (int?)topK,
            RepetitionPenalty = (float?)penalty,
            Source = source,
        };
    }

    /// <summary>
    /// The options of a request: each value it gives, else this file's default, else the built-in one
    /// (greedy, no top-k/top-p, no penalty). The file's EOS ids join the request's stop token ids, unless it ignores EOS.
    /// </summary>
    public SamplingOptions Resolve(SamplingRequest request)
    {
        var builtIn = SamplingOptions.Greedy;
        return new SamplingOptions(
            Temperature: request.Temperature ?? Temperature ?? builtIn.Temperature,
            TopK: request.TopK ?? TopK ?? builtIn.TopK,
            TopP: request.TopP ?? TopP ?? builtIn.TopP,
            RepetitionPenalty: request.RepetitionPenalty ?? RepetitionPenalty ?? builtIn.RepetitionPenalty,
            Seed: request.Seed,
            MaxTokens: request.MaxTokens ?? builtIn.MaxTokens,
            StopStrings: request.StopStrings,
            StopTokenIds: EosTokenIds.Count == 0 || request.IgnoreEos ? request.StopTokenIds : [.. (request.StopTokenIds ?? []).Union(EosTokenIds)],
            IgnoreEos: request.IgnoreEos);
    }

    /// <summary>One line for logs: what this file sets.</summary>
    public override string ToString()
    {
        if (Source is null) return "no generation defaults";
        var ci = CultureInfo.InvariantCulture;
        var parts = new List<string>();
        if (Temperature is { } t) parts.Add(string.Create(ci, $"temperature {t}"));
        if (TopP is { } p) parts.Add(string.Create(ci, $"top_p {p}"));
        if (TopK is { } k) parts.Add(string.Create(ci, $"top_k {k}"));
        if (RepetitionPenalty is { } r) parts.Add(string.Create(ci, $"repetition_penalty {r}"));
        if (EosTokenIds.Count > 0) parts.Add($"eos_token_id [{string.Join(", ", EosTokenIds)}]");
        return $"{Source}: {(parts.Count == 0 ? "nothing used" : string.Join(", ", parts))}";
    }
}

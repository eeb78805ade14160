using System.CommandLine;
using ActorRing.Model.Sampling;

namespace ActorRing.Host.Cli;

/// <summary>
/// The sampling of a prompt given on the command line (generate, serve's one-shot and interactive modes). Left
/// unset, each falls back to the model's generation_config.json (see <see cref="RankOptions.GenerationConfig"/>),
/// then to greedy decoding.
/// </summary>
internal sealed class SamplingCliOptions : OptionGroup
{
    public readonly Option<int?> MaxTokens = Opt.Int("--max-tokens", "Most tokens to generate [default: 256]");
    public readonly Option<double?> Temperature = Opt.Double("--temperature", "0 is greedy [default: 0, or the model's generation_config.json]");
    public readonly Option<int?> TopK = Opt.Int("--top-k", "Sample from the K likeliest tokens; 0 disables it [default: 0]");
    public readonly Option<double?> TopP = Opt.Double("--top-p", "Nucleus sampling mass in (0, 1]; 1 disables it [default: 1]");
    public readonly Option<double?> RepetitionPenalty = Opt.Double("--repetition-penalty", "Above 1 penalises repeated tokens; 1 disables it [default: 1]");
    public readonly Option<long?> Seed = Opt.Long("--seed", "Seed of the sampler's RNG [default: random]", 0);
    public readonly Option<string?> Stop = Opt.Text("--stop", "TEXT", "Stop before this text");

    /// <summary>The options given, over the model's defaults; with neither, temperature 0 (greedy).</summary>
    public SamplingOptions Resolve(ParseResult result, GenerationDefaults defaults)
    {
        var options = defaults.Resolve(new SamplingRequest(
            Temperature: (float?)result.GetValue(Temperature),
            TopK: result.GetValue(TopK),
            TopP: (float?)result.GetValue(TopP),
            RepetitionPenalty: (float?)result.GetValue(RepetitionPenalty),
            Seed: result.GetValue(Seed) is long seed ? (ulong)seed : null,
            MaxTokens: result.GetValue(MaxTokens),
            StopStrings: result.GetValue(Stop) is { } stop ? [stop] : null));
        var errors = options.GetErrors();
        if (errors.Count > 0) throw new UsageException(string.Join("; ", errors));
        return options;
    }
}

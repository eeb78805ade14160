using System.CommandLine;
using ActorRing.Host.Cli;
using ActorRing.Model;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using ActorRing.Transport;

namespace ActorRing.Host.Commands;

/// <summary>
/// <c>actorring generate</c>: one completion, with the model split over --world-size ranks that run as
/// <c>serve</c> processes on loopback (rank 0 runs the request through the serving step loop).
/// </summary>
internal static class GenerateCommand
{
    /// <summary>
    /// generate's options. Declaring a field here makes it an option of <c>generate</c>; options in
    /// <see cref="RankOptions"/> also reach every rank's serve process, and <see cref="SamplingCliOptions"/>
    /// and --json reach rank 0 (see <see cref="Serve.MultiProcessGenerate"/>).
    /// </summary>
    internal sealed class Definitions : OptionGroup
    {
        public readonly PromptOptions Prompt = new();
        public readonly SamplingCliOptions Sampling = new();
        public readonly Option<int> WorldSize = Opt.Int("--world-size", "Ranks to split the model over, each a serve process on loopback", 1, 1, 64);
        public readonly Option<int?> Threads = Opt.Int("--threads", "Compute threads per rank [default: cores / world size]", 1, 1024);
        public readonly RankOptions Rank = new();
    }

    public static Command Create()
    {
        var definitions = new Definitions();
        var command = new Command("generate", "Generate one completion, with the model split over --world-size ranks");
        definitions.AddTo(command);
        command.SetAction((result, _) => RunAsync(definitions, result));
        return command;
    }

    private static async Task<int> RunAsync(Definitions o, ParseResult cli)
    {
        o.Prompt.EnsureOneOf(cli);
        string modelPath = cli.GetValue(o.Rank.Model) ?? UsageException.FromUserErrors(ModelDirectory.DefaultBundledPath);
        var dir = UsageException.FromUserErrors(() => ModelDirectory.Recognise(modelPath));
        var config = UsageException.FromUserErrors(dir.ReadConfig);
        int worldSize = cli.GetValue(o.WorldSize);
        o.Rank.DType.Get(cli);
        o.Rank.QuantChoice(cli);
        if (cli.GetValue(o.Rank.Context) is int context && context > config.MaxPositionEmbeddings)
            throw new UsageException($"option --context must be between 1 and {config.MaxPositionEmbeddings}, got {context}");
        int threads = cli.GetValue(o.Threads) ?? Math.Max(1, Environment.ProcessorCount / worldSize);
        // Refuse an impossible split before starting any rank.
        UsageException.FromUserErrors(() => ShardPlan.Create(config, 0, worldSize));

        var tokenizer = UsageException.FromUserErrors(() => TokenizerLoader.Load(dir.Path));
        IReadOnlyList<int> promptIds = o.Prompt.PromptIds.Get(cli) is { } given ? given
            : cli.GetValue(o.Prompt.Prompt) is { } text ? tokenizer.Encode(text, addBos: true)
            : tokenizer.BosId >= 0 ? [tokenizer.BosId]
            : throw new UsageException("this tokenizer has no BOS token; give --prompt or --prompt-ids");
        if (promptIds.Count == 0) throw new UsageException("the prompt is empty");
        foreach (int id in promptIds)
        {
            if (id < 0 || id >= config.VocabSize) throw new UsageException($"option --prompt-ids: id {id} is outside the vocabulary [0, {config.VocabSize})");
        }

        // Checked here, before any process starts, so a bad value is one clear message.
        var defaults = o.Rank.LoadGenerationDefaults(cli, dir.Path);
        o.Sampling.Resolve(cli, defaults);
        // Sampling the user did not ask for deserves a word on where it came from.
        if (defaults.Temperature is > 0 || defaults.TopK is not null || defaults.TopP is not null || defaults.RepetitionPenalty is not null)
            Console.Error.WriteLine($"[defaults from {defaults}; --generation-config ignore drops them]");

        // Every world size, 1 included, runs as `serve` processes over the actor runtime and the serving step
        // loop (see Serve/MultiProcessGenerate): one code path for generate, serve and the HTTP API.
        return await Serve.MultiProcessGenerate.RunAsync(
            shared: o.Rank.GivenArguments(cli),
            request: [.. o.Sampling.GivenArguments(cli), .. cli.GetValue(o.Prompt.Json) ? ["--json"] : Array.Empty<string>()],
            worldSize, promptIds, threads);
    }
}

using System.Diagnostics;
using System.Text.Json;
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
    private static readonly string[] Known =
    [
        "model", "prompt", "prompt-ids", "max-tokens", "temperature", "top-k", "top-p", "repetition-penalty",
        "seed", "stop", "world-size", "json", "dtype", "context", "threads", "max-batch", "kv-cache-tokens", "prefill-chunk", "generation-config",
        "quant", "quant-lm-head", "sync-dtype",
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var cli = CliArgs.Parse(args, "json", "quant-lm-head");
        cli.EnsureOnly(Known);
        if (cli.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cli.Positionals[0]}'");
        if (cli.Has("prompt") && cli.Has("prompt-ids")) throw new UsageException("give either --prompt or --prompt-ids, not both");

        string modelPath = cli.String("model") ?? UsageException.FromUserErrors(ModelDirectory.DefaultBundledPath);
        var dir = UsageException.FromUserErrors(() => ModelDirectory.Recognise(modelPath));
        var config = UsageException.FromUserErrors(dir.ReadConfig);
        int worldSize = cli.Int("world-size", 1, 64) ?? 1;
        var dtype = cli.DType();
        var (quant, quantHead) = cli.Quant();
        int? context = cli.Int("context", 1, config.MaxPositionEmbeddings);
        int threads = cli.Int("threads", 1, 1024) ?? Math.Max(1, Environment.ProcessorCount / worldSize);
        // Refuse an impossible split before starting any rank.
        UsageException.FromUserErrors(() => ShardPlan.Create(config, 0, worldSize));

        var tokenizer = UsageException.FromUserErrors(() => TokenizerLoader.Load(dir.Path));
        IReadOnlyList<int> promptIds = cli.IntList("prompt-ids") is { } given ? given
            : cli.String("prompt") is { } text ? tokenizer.Encode(text, addBos: true)
            : tokenizer.BosId >= 0 ? [tokenizer.BosId]
            : throw new UsageException("this tokenizer has no BOS token; give --prompt or --prompt-ids");
        if (promptIds.Count == 0) throw new UsageException("the prompt is empty");
        foreach (int id in promptIds)
        {
            if (id < 0 || id >= config.VocabSize) throw new UsageException($"option --prompt-ids: id {id} is outside the vocabulary [0, {config.VocabSize})");
        }

        // Checked here, before any process starts, so a bad value is one clear message.
        var defaults = cli.GenerationDefaults(dir.Path);
        var options = Serve.ServeOptions.ParseSampling(cli, defaults);
        // Sampling the user did not ask for deserves a word on where it came from.
        if (defaults.Temperature is > 0 || defaults.TopK is not null || defaults.TopP is not null || defaults.RepetitionPenalty is not null)
            Console.Error.WriteLine($"[defaults from {defaults}; --generation-config ignore drops them]");

        // Every world size, 1 included, runs as `serve` processes over the actor runtime and the serving step
        // loop (see Serve/MultiProcessGenerate): one code path for generate, serve and the HTTP API.
        return await Serve.MultiProcessGenerate.RunAsync(args, worldSize, promptIds, threads);
    }
}

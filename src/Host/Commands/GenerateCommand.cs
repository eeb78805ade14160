using System.Diagnostics;
using System.Text.Json;
using ActorRing.Host.Cli;
using ActorRing.Model;
using ActorRing.Model.Generation;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using ActorRing.Transport;

namespace ActorRing.Host.Commands;

/// <summary>
/// <c>actorring generate</c>: one completion, with the model split over --world-size ranks that run as
/// threads of this process (each on its own compute thread, as a ShardWorker would).
/// </summary>
internal static class GenerateCommand
{
    private static readonly string[] Known =
    [
        "model", "prompt", "prompt-ids", "max-tokens", "temperature", "top-k", "top-p", "repetition-penalty",
        "seed", "stop", "world-size", "json", "dtype", "context", "threads", "quant", "quant-lm-head", "sync-dtype",
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var cli = CliArgs.Parse(args, "json", "quant-lm-head");
        cli.EnsureOnly(Known);
        if (cli.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cli.Positionals[0]}'");
        if (cli.Has("prompt") && cli.Has("prompt-ids")) throw new UsageException("give either --prompt or --prompt-ids, not both");

        string modelPath = cli.String("model") ?? Try(ModelDirectory.DefaultBundledPath);
        var dir = Try(() => ModelDirectory.Recognise(modelPath));
        var config = Try(dir.ReadConfig);
        int worldSize = cli.Int("world-size", 1, 64) ?? 1;
        var dtype = cli.DType();
        var (quant, quantHead) = cli.Quant();
        int? context = cli.Int("context", 1, config.MaxPositionEmbeddings);
        int threads = cli.Int("threads", 1, 1024) ?? Math.Max(1, Environment.ProcessorCount / worldSize);
        // Refuse an impossible split before starting any rank.
        Try(() => ShardPlan.Create(config, 0, worldSize));

        var tokenizer = Try(() => TokenizerLoader.Load(dir.Path));
        IReadOnlyList<int> promptIds = cli.IntList("prompt-ids") is { } given ? given
            : cli.String("prompt") is { } text ? tokenizer.Encode(text, addBos: true)
            : tokenizer.BosId >= 0 ? [tokenizer.BosId]
            : throw new UsageException("this tokenizer has no BOS token; give --prompt or --prompt-ids");
        if (promptIds.Count == 0) throw new UsageException("the prompt is empty");
        foreach (int id in promptIds)
        {
            if (id < 0 || id >= config.VocabSize) throw new UsageException($"option --prompt-ids: id {id} is outside the vocabulary [0, {config.VocabSize})");
        }

        var options = new SamplingOptions(
            Temperature: (float)(cli.Double("temperature") ?? 0),
            TopK: cli.Int("top-k") ?? 0,
            TopP: (float)(cli.Double("top-p") ?? 1),
            RepetitionPenalty: (float)(cli.Double("repetition-penalty") ?? 1),
            Seed: cli.Long("seed", 0) is long s ? (ulong)s : null,
            MaxTokens: cli.Int("max-tokens") ?? 256,
            StopStrings: cli.String("stop") is { } stop ? [stop] : null);
        var errors = options.GetErrors();
        if (errors.Count > 0) throw new UsageException(string.Join("; ", errors));

        bool json = cli.Flag("json");
        // Several ranks run as separate `serve` processes over the actor runtime (see Serve/MultiProcessGenerate).
        if (worldSize > 1) return await Serve.MultiProcessGenerate.RunAsync(args, worldSize, promptIds, threads);
        var loadOptions = new ModelLoadOptions
        {
            ContextLength = context, DType = dtype, Threads = threads, Quant = quant, QuantizeLmHead = quantHead, SyncDType = cli.SyncDType(), Log = Console.Error.WriteLine,
        };
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            ICollectives[] comms;
            try
            {
                comms = await LocalRanks.ConnectAsync(worldSize, threads, cts.Token);
            }
            catch (CollectiveException e)
            {
                throw new UsageException($"could not form the loopback ring: {e.Message}");
            }
            var stdout = Console.Out;
            SamplingController? controller = null;
            var results = Try(() => RankThreads.Run(worldSize, rank =>
            {
                using var comm = comms[rank];
                using var model = ShardedLlama.Load(dir.Path, comm, loadOptions);
                if (rank == 0)
                {
                    controller = new SamplingController(tokenizer, options, promptIds, json ? null : piece =>
                    {
                        stdout.Write(piece);
                        stdout.Flush();
                    });
                }
                return TensorParallelGeneration.Run(model, comm, promptIds, controller, cancellation: cts.Token);
            }));
            var result = results[0];
            if (json)
            {
                var payload = new Dictionary<string, object?>
                {
                    ["prompt_ids"] = promptIds,
                    ["ids"] = result.GeneratedIds,
                    ["text"] = controller!.Text,
                    ["world_size"] = worldSize,
                    ["ms_per_token"] = Math.Round(result.MsPerToken, 3),
                    ["prefill_ms"] = Math.Round(result.PrefillMs, 3),
                    ["finish_reason"] = result.FinishReason,
                };
                stdout.WriteLine(JsonSerializer.Serialize(payload));
            }
            else
            {
                stdout.WriteLine();
                Console.Error.WriteLine($"[{result.GeneratedIds.Count} tokens, {result.MsPerToken:F2} ms/token, prefill {result.PrefillMs:F1} ms, world size {worldSize}, finish: {result.FinishReason}]");
            }
            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>Turns the model's and tokenizer's user errors into usage errors: a message, not a stack trace.</summary>
    private static T Try<T>(Func<T> f)
    {
        try
        {
            return f();
        }
        catch (ModelLoadException e)
        {
            throw new UsageException(e.Message);
        }
        catch (TokenizerFormatException e)
        {
            throw new UsageException(e.Message);
        }
        catch (CollectiveException e)
        {
            throw new UsageException($"the ring failed: {e.Message}");
        }
    }
}

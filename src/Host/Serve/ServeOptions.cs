using System.Net;
using ActorRing.Actors;
using ActorRing.Host.Cli;
using ActorRing.Model;
using ActorRing.Model.Sampling;

namespace ActorRing.Host.Serve;

/// <summary>The parsed command line of <c>actorring serve</c>.</summary>
public sealed record ServeOptions
{
    public const string Verb = "serve";

    public static readonly string[] Flags = ["interactive", "json", "verbose", "quiet", "quant-lm-head", "insecure-short-secret", "no-prefix-cache"];

    public static readonly string[] Known =
    [
        "model", "ring-config", "interactive", "prompt", "prompt-ids", "json", "max-tokens", "temperature", "top-k",
        "top-p", "seed", "repetition-penalty", "stop", "bind", "advertise", "control-port", "threads", "cores", "context", "dtype", "ready-timeout",
        "verbose", "quiet", "preset", "max-batch", "kv-cache-tokens", "prefill-chunk", "generation-config",
        "http-host", "http-port", "model-id", "api-key", "chat-template",
        "quant", "quant-lm-head", "sync-dtype",
        "insecure-short-secret", "no-prefix-cache",
    ];

    /// <summary>The environment variable that sets the HTTP API key when --api-key is not given.</summary>
    public const string ApiKeyEnvironmentVariable = "ACTORRING_API_KEY";

    public required string ModelDir { get; init; }

    /// <summary>bench decode's shapes (llama-160m, tinyllama-1.1b) with seeded random weights instead of --model:
    /// measures the runtime (e.g. its control-plane share) at a real model's size. Prompts must be ids.</summary>
    public string? Preset { get; init; }
    public string? RingConfigPath { get; init; }
    public bool Interactive { get; init; }

    /// <summary>One-shot mode (what <c>generate --world-size N</c> runs on rank 0): this prompt, then stop every rank.</summary>
    public string? Prompt { get; init; }
    public int[]? PromptIds { get; init; }
    public bool Json { get; init; }
    public required SamplingOptions Sampling { get; init; }

    /// <summary>The model's generation_config.json defaults (none with --generation-config ignore or a --preset):
    /// what a request that leaves temperature, top_p, top_k or repetition_penalty unset gets.</summary>
    public GenerationDefaults GenerationDefaults { get; init; } = GenerationDefaults.None;
    public IPAddress BindAddress { get; init; } = IPAddress.Any;
    public string? Advertise { get; init; }

    /// <summary>A worker's Akka.Remote listen port (0: any free port). Fix it when a firewall must allow it.</summary>
    public int ControlPort { get; init; }
    public required ModelLoadOptions Load { get; init; }

    /// <summary>The step loop's limits (--max-batch, --prefill-chunk); the KV budget is Load.KvCacheTokens.</summary>
    public ActorRing.Actors.Serving.SchedulerOptions Scheduling { get; init; } = new();

    /// <summary>
    /// How a rank loads its shard for a model of <paramref name="contextLength"/> positions. Without
    /// --kv-cache-tokens, each rank gives its KV cache half of the memory still free once its weights are in, up
    /// to room for --max-batch full contexts (all the scheduler can ever reserve), and refuses to start when that
    /// is less than one full context. Ranks may end up with different sizes; the step loop uses the smallest,
    /// since plans name blocks by index.
    /// </summary>
    public ModelLoadOptions LoadFor(int contextLength) => Load.KvCacheTokens is not null ? Load : Load with
    {
        KvCacheFromMemory = new KvMemoryBudget(KvMemoryBudget.DefaultShare, (int)Math.Min(int.MaxValue, (long)Scheduling.MaxBatch * contextLength), contextLength,
            Announce: !Quiet),
    };
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public bool Verbose { get; init; }

    /// <summary>Accept an ACTORRING_SECRET shorter than <see cref="Actors.Security.ClusterSecret.MinimumBytes"/> (tests, demos).</summary>
    public bool InsecureShortSecret { get; init; }

    /// <summary>Warnings and errors only (ranks started by generate).</summary>
    public bool Quiet { get; init; }

    public bool OneShot => Prompt is not null || PromptIds is not null;

    /// <summary>Where rank 0's OpenAI-compatible API listens. Port 0 picks a free port (the start-up line names it).</summary>
    public string HttpHost { get; init; } = "127.0.0.1";
    public int HttpPort { get; init; } = 8080;

    /// <summary>The API runs on rank 0 of a server; --interactive runs it too when --http-port is given, and a
    /// one-shot --prompt never does.</summary>
    public bool Http { get; init; } = true;

    /// <summary>The model's id in the API (GET /v1/models, the "model" field); the model directory's name by default.</summary>
    public required string ModelId { get; init; }

    /// <summary>When set, every HTTP request but /health must carry <c>Authorization: Bearer</c> this key.</summary>
    public string? ApiKey { get; init; }

    /// <summary><c>--chat-template FILE</c>: a Jinja chat template used instead of the model's own.</summary>
    public string? ChatTemplatePath { get; init; }

    public static ServeOptions Parse(string[] args)
    {
        var cli = CliArgs.Parse(args, Flags);
        cli.EnsureOnly(Known);
        if (cli.Positionals.Count > 0)
            throw new UsageException($"serve takes no positional arguments, got '{cli.Positionals[0]}'");
        if (cli.Has("prompt") && cli.Has("prompt-ids"))
            throw new UsageException("give either --prompt or --prompt-ids, not both");
        bool interactive = cli.Flag("interactive");
        if (cli.Has("preset") && (cli.Has("model") || cli.Has("prompt") || interactive))
            throw new UsageException("--preset builds a random model with no tokenizer: drop --model, and give prompts with --prompt-ids");
        if (interactive && (cli.Has("prompt") || cli.Has("prompt-ids")))
            throw new UsageException("--interactive reads prompts from stdin; drop --prompt/--prompt-ids");

        string modelDir = cli.String("model") ?? (cli.Has("preset") ? "" : ModelDirectory.DefaultBundledPath());
        var defaults = cli.Has("preset") ? GenerationDefaults.None : cli.GenerationDefaults(modelDir);
        var sampling = ParseSampling(cli, defaults);
        if (cli.IntList("cores") is { } cores)
        {
            int count = Environment.ProcessorCount;
            foreach (int core in cores)
            {
                if (core < 0 || core >= count)
                    throw new UsageException($"option --cores: core {core} does not exist; this machine has {count} (0-{count - 1})");
            }
            if (cores.Distinct().Count() != cores.Length)
                throw new UsageException($"option --cores lists a core twice: {string.Join(',', cores)}");
        }
        IPAddress bind = IPAddress.Any;
        if (cli.String("bind") is { } b && !IPAddress.TryParse(b, out bind!))
            throw new UsageException($"option --bind expects an IP address such as 0.0.0.0 or 10.0.0.5, got '{b}'");
        var dtype = cli.DType();
        string? apiKey = cli.String("api-key") ?? Environment.GetEnvironmentVariable(ApiKeyEnvironmentVariable);
        if (apiKey is { Length: 0 }) throw new UsageException($"option --api-key (or {ApiKeyEnvironmentVariable}) is empty; give a key or leave it unset");
        if (cli.String("http-host") is { Length: 0 }) throw new UsageException("option --http-host is empty; give an address such as 127.0.0.1 or 0.0.0.0");
        if ((cli.Has("prompt") || cli.Has("prompt-ids")) && cli.Has("http-port"))
            throw new UsageException("--prompt runs one request and exits; it serves no HTTP API, so drop --http-port");
        var (quant, quantHead) = cli.Quant();
        return new ServeOptions
        {
            ModelDir = modelDir,
            HttpHost = cli.String("http-host") ?? "127.0.0.1",
            HttpPort = cli.Int("http-port", 0, 65535) ?? 8080,
            Http = !(cli.Has("prompt") || cli.Has("prompt-ids")) && (!interactive || cli.Has("http-port")),
            ModelId = cli.String("model-id") ?? (cli.Has("preset") ? cli.String("preset")! : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir)))),
            ApiKey = apiKey,
            ChatTemplatePath = cli.String("chat-template"),
            Preset = cli.String("preset"),
            RingConfigPath = cli.String("ring-config"),
            Interactive = interactive,
            Prompt = cli.String("prompt"),
            PromptIds = cli.IntList("prompt-ids"),
            Json = cli.Flag("json"),
            Sampling = sampling,
            GenerationDefaults = defaults,
            BindAddress = bind,
            Advertise = cli.String("advertise"),
            ControlPort = cli.Int("control-port", 0, 65535) ?? 0,
            Load = new ModelLoadOptions
            {
                ContextLength = cli.Int("context", 1, 1 << 20),
                Threads = cli.Int("threads", 1, 1024),
                Cores = cli.IntList("cores")?.ToArray(),
                DType = dtype,
                KvCacheTokens = cli.Int("kv-cache-tokens", 16, 1 << 28),
                Quant = quant,
                QuantizeLmHead = quantHead,
                SyncDType = cli.SyncDType(),
                Log = Console.Error.WriteLine,
            },
            Scheduling = new ActorRing.Actors.Serving.SchedulerOptions(
                MaxBatch: cli.Int("max-batch", 1, 4096) ?? 16,
                PrefillChunk: cli.Int("prefill-chunk", 1, 1 << 20) ?? 256,
                PrefixCaching: !cli.Flag("no-prefix-cache")),
            ReadyTimeout = TimeSpan.FromSeconds(cli.Int("ready-timeout", 1, 86_400) ?? 600),
            Verbose = cli.Flag("verbose"),
            Quiet = cli.Flag("quiet"),
            InsecureShortSecret = cli.Flag("insecure-short-secret"),
        };
    }

    /// <summary>generate's sampling flags over the model's generation defaults; with neither, temperature 0 (greedy).</summary>
    public static SamplingOptions ParseSampling(CliArgs cli, GenerationDefaults defaults)
    {
        var options = defaults.Resolve(new SamplingRequest(
            Temperature: (float?)cli.Double("temperature"),
            TopK: cli.Int("top-k"),
            TopP: (float?)cli.Double("top-p"),
            RepetitionPenalty: (float?)cli.Double("repetition-penalty"),
            Seed: cli.Long("seed", 0) is long seed ? (ulong)seed : null,
            MaxTokens: cli.Int("max-tokens"),
            StopStrings: cli.String("stop") is { } stop ? [stop] : null));
        var errors = options.GetErrors();
        if (errors.Count > 0) throw new UsageException(string.Join("; ", errors));
        return options;
    }
}

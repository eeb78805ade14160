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

    public static readonly string[] Flags = ["interactive", "json", "verbose", "quiet", "insecure-short-secret"];

    public static readonly string[] Known =
    [
        "model", "ring-config", "interactive", "prompt", "prompt-ids", "json", "max-tokens", "temperature", "top-k",
        "top-p", "seed", "repetition-penalty", "stop", "bind", "advertise", "control-port", "threads", "cores", "context", "dtype", "ready-timeout",
        "verbose", "quiet", "preset", "insecure-short-secret",
    ];

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
    public IPAddress BindAddress { get; init; } = IPAddress.Any;
    public string? Advertise { get; init; }

    /// <summary>A worker's Akka.Remote listen port (0: any free port). Fix it when a firewall must allow it.</summary>
    public int ControlPort { get; init; }
    public required ModelLoadOptions Load { get; init; }
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public bool Verbose { get; init; }

    /// <summary>Accept an ACTORRING_SECRET shorter than <see cref="Actors.Security.ClusterSecret.MinimumBytes"/> (tests, demos).</summary>
    public bool InsecureShortSecret { get; init; }

    /// <summary>Warnings and errors only (ranks started by generate).</summary>
    public bool Quiet { get; init; }

    public bool OneShot => Prompt is not null || PromptIds is not null;

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

        var sampling = ParseSampling(cli);
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
        return new ServeOptions
        {
            ModelDir = cli.String("model") ?? (cli.Has("preset") ? "" : ModelDirectory.DefaultBundledPath()),
            Preset = cli.String("preset"),
            RingConfigPath = cli.String("ring-config"),
            Interactive = interactive,
            Prompt = cli.String("prompt"),
            PromptIds = cli.IntList("prompt-ids"),
            Json = cli.Flag("json"),
            Sampling = sampling,
            BindAddress = bind,
            Advertise = cli.String("advertise"),
            ControlPort = cli.Int("control-port", 0, 65535) ?? 0,
            Load = new ModelLoadOptions
            {
                ContextLength = cli.Int("context", 1, 1 << 20),
                Threads = cli.Int("threads", 1, 1024),
                Cores = cli.IntList("cores")?.ToArray(),
                DType = dtype,
            },
            ReadyTimeout = TimeSpan.FromSeconds(cli.Int("ready-timeout", 1, 86_400) ?? 600),
            Verbose = cli.Flag("verbose"),
            Quiet = cli.Flag("quiet"),
            InsecureShortSecret = cli.Flag("insecure-short-secret"),
        };
    }

    /// <summary>generate's sampling flags; temperature 0 (the default) is greedy.</summary>
    public static SamplingOptions ParseSampling(CliArgs cli)
    {
        var options = new SamplingOptions(
            Temperature: (float)(cli.Double("temperature") ?? 0),
            TopK: cli.Int("top-k") ?? 0,
            TopP: (float)(cli.Double("top-p") ?? 1),
            RepetitionPenalty: (float)(cli.Double("repetition-penalty") ?? 1),
            Seed: cli.Long("seed", 0) is long seed ? (ulong)seed : null,
            MaxTokens: cli.Int("max-tokens") ?? 256,
            StopStrings: cli.String("stop") is { } stop ? [stop] : null);
        var errors = options.GetErrors();
        if (errors.Count > 0) throw new UsageException(string.Join("; ", errors));
        return options;
    }

    /// <summary>The control-plane form of the sampling options, stopping at the tokenizer's end-of-sequence ids.</summary>
    public static SamplingSpec ToSpec(SamplingOptions o, IEnumerable<int> stopIds, int maxTokens) =>
        new(o.Temperature, o.TopK, o.TopP, o.Seed, o.RepetitionPenalty, maxTokens, stopIds.ToArray());
}

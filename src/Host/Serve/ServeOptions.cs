using System.CommandLine;
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

    /// <summary>The environment variable that sets the HTTP API key when --api-key is not given.</summary>
    public const string ApiKeyEnvironmentVariable = "ACTORRING_API_KEY";

    public required string ModelDir { get; init; }

    /// <summary>bench decode's shapes (<see cref="ModelPresets.Names"/>) with seeded random weights instead of --model:
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

    /// <summary>--recovery-timeout: how long requests in flight wait for a lost rank to come back (restarted with the
    /// same command, or resumed from a pause) before they fail naming it; 0 fails them at once.</summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);
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

    /// <summary><c>--tls-cert FILE.pfx</c>: the cluster's certificate and key (PKCS#12), the same file on every rank;
    /// the control plane then runs mutual TLS pinned to it (see <see cref="Actors.Security.ControlPlaneTls"/>).</summary>
    public string? TlsCertificatePath { get; init; }

    /// <summary>The PKCS#12 file's password: <c>--tls-cert-password</c>, else ACTORRING_TLS_PASSWORD, else none.</summary>
    public string? TlsCertificatePassword { get; init; }

    /// <summary><c>--http-timeout SECONDS</c>: how long a client may take to send its headers, the grace before its
    /// body must flow, and a third of how long an idle connection stays open (see <see cref="Http.HttpLimits"/>).</summary>
    public TimeSpan HttpTimeout { get; init; } = ActorRing.Host.Http.HttpLimits.DefaultTimeout;

    /// <summary>The model's id in the API (GET /v1/models, the "model" field); the model directory's name by default.</summary>
    public required string ModelId { get; init; }

    /// <summary>When set, every HTTP request but /health must carry <c>Authorization: Bearer</c> this key.</summary>
    public string? ApiKey { get; init; }

    /// <summary><c>--chat-template FILE</c>: a Jinja chat template used instead of the model's own.</summary>
    public string? ChatTemplatePath { get; init; }

    /// <summary>
    /// serve's options. Declaring a field here makes it an option of <c>serve</c> (with its --help line); read
    /// its value in <see cref="From"/>. Options every rank of a generate cluster needs too go in
    /// <see cref="RankOptions"/> instead, and sampling ones in <see cref="SamplingCliOptions"/>.
    /// </summary>
    internal sealed class Definitions : OptionGroup
    {
        public readonly RankOptions Rank = new();
        public readonly Option<string?> RingConfig = Opt.Text("--ring-config", "FILE",
            "This rank's ring file (mistral.rs JSON) [default: the RING_CONFIG environment variable]");
        public readonly Option<string?> Preset = ComputeOptions.Preset();
        public readonly Option<string> HttpHost = Opt.Text("--http-host", "ADDR", "Address rank 0's HTTP API listens on", "127.0.0.1");
        public readonly Option<int> HttpPort = Opt.Int("--http-port", "Port of rank 0's HTTP API; 0 picks a free one", 8080, 0, 65535, "PORT");
        public readonly Option<string?> ModelId = Opt.Text("--model-id", "NAME", "The model's id in the API [default: the model directory's name]");
        public readonly Option<string?> ApiKey = Opt.Text("--api-key", "KEY",
            $"Require 'Authorization: Bearer KEY' on every HTTP request but /health [default: the {ApiKeyEnvironmentVariable} environment variable]");
        public readonly Option<string?> ChatTemplate = Opt.Text("--chat-template", "FILE", "A Jinja chat template to use instead of the model's own");
        public readonly Option<bool> Interactive = Opt.Flag("--interactive",
            "Rank 0 reads prompts from the terminal (or one per line from a pipe) and prints the completions; no HTTP API unless --http-port is given");
        public readonly PromptOptions Prompt = new();
        public readonly SamplingCliOptions Sampling = new();
        public readonly Option<string?> Bind = Opt.Text("--bind", "ADDR", "Address the ring and control listeners bind [default: 0.0.0.0]");
        public readonly Option<string?> Advertise = Opt.Text("--advertise", "HOST", "Name this rank's control endpoint gives itself [default: rank 0: master_ip; a worker: its address that routes to rank 0]");
        public readonly Option<int> ControlPort = Opt.Int("--control-port", "A worker's Akka.Remote port; 0 picks a free one", 0, 0, 65535, "PORT");
        public readonly Option<int?> Threads = Opt.Int("--threads", "Compute threads of this rank; use cores / ranks on this machine [default: libtorch's own threading]", 1, 1024);
        public readonly IntListOption Cores = Opt.IntList("--cores", "C0,C1,...",
            "Pin this rank (its compute thread and helpers, in order) to these CPU cores");
        public readonly Option<int> ReadyTimeout = Opt.Int("--ready-timeout", "Seconds to wait for every rank to join and load", 600, 1, 86_400, "SECONDS");
        public readonly Option<bool> NoPrefixCache = Opt.Flag("--no-prefix-cache",
            "Turn off the prefix cache (full KV blocks of earlier prompts shared by later prompts that start the same way)");
        public readonly Option<int> RecoveryTimeout = Opt.Int("--recovery-timeout",
            "Seconds the requests in flight wait for a lost rank to come back before they fail naming it; 0 fails them at once", 30, 0, 86_400, "SECONDS");
        public readonly Option<bool> Verbose = Opt.Flag("--verbose", "Log debug detail");
        public readonly Option<bool> Quiet = Opt.Flag("--quiet", "Log warnings and errors only");
        public readonly Option<int?> HttpTimeout = Opt.Int("--http-timeout",
            "Seconds a client may take to send its headers or stay idle on a kept-alive connection (and the body's minimum rate window) [default: 10]", 1, 3600, "SECONDS");
        public readonly Option<string?> TlsCert = Opt.Text("--tls-cert", "FILE.pfx",
            "Encrypt the control plane with mutual TLS pinned to this PKCS#12 certificate (the same file on every rank)");
        public readonly Option<string?> TlsCertPassword = Opt.Text("--tls-cert-password", "P",
            "Password of --tls-cert [default: the ACTORRING_TLS_PASSWORD environment variable]");
        public readonly Option<bool> InsecureShortSecret = Opt.Flag("--insecure-short-secret",
            "Accept an ACTORRING_SECRET shorter than 16 bytes (tests and demos only)");
    }

    /// <summary>Parses serve's arguments (after the verb), for code that builds a rank in process.</summary>
    public static ServeOptions Parse(string[] args)
    {
        var definitions = new Definitions();
        var command = new Command(Verb);
        definitions.AddTo(command);
        return From(definitions, CommandLine.ParseVerb(command, args));
    }

    internal static ServeOptions From(Definitions o, ParseResult cli)
    {
        T? Get<T>(Option<T> option) => cli.GetValue(option);
        bool Has(Option option) => cli.GetResult(option) is { Implicit: false };
        o.Prompt.EnsureOneOf(cli);
        bool interactive = Get(o.Interactive);
        bool oneShot = o.Prompt.Given(cli);
        string? preset = Get(o.Preset);
        if (preset is not null && (Has(o.Rank.Model) || Has(o.Prompt.Prompt) || interactive))
            throw new UsageException("--preset builds a random model with no tokenizer: drop --model, and give prompts with --prompt-ids");
        if (interactive && oneShot)
            throw new UsageException("--interactive reads prompts from stdin; drop --prompt/--prompt-ids");

        string modelDir = Get(o.Rank.Model) ?? (preset is not null ? "" : ModelDirectory.DefaultBundledPath());
        var defaults = preset is not null ? GenerationDefaults.None : o.Rank.LoadGenerationDefaults(cli, modelDir);
        var sampling = o.Sampling.Resolve(cli, defaults);
        if (o.Cores.Get(cli) is { } cores)
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
        if (Get(o.Bind) is { } b && !IPAddress.TryParse(b, out bind!))
            throw new UsageException($"option --bind expects an IP address such as 0.0.0.0 or 10.0.0.5, got '{b}'");
        string? apiKey = Get(o.ApiKey) ?? Environment.GetEnvironmentVariable(ApiKeyEnvironmentVariable);
        if (apiKey is { Length: 0 }) throw new UsageException($"option --api-key (or {ApiKeyEnvironmentVariable}) is empty; give a key or leave it unset");
        if (Get(o.HttpHost) is { Length: 0 }) throw new UsageException("option --http-host is empty; give an address such as 127.0.0.1 or 0.0.0.0");
        if (oneShot && Has(o.HttpPort))
            throw new UsageException("--prompt runs one request and exits; it serves no HTTP API, so drop --http-port");
        var (quant, quantHead) = o.Rank.QuantChoice(cli);
        if (Has(o.TlsCertPassword) && !Has(o.TlsCert))
            throw new UsageException("--tls-cert-password is the password of --tls-cert FILE.pfx; give --tls-cert too, or drop it");
        return new ServeOptions
        {
            ModelDir = modelDir,
            HttpHost = Get(o.HttpHost)!,
            HttpPort = Get(o.HttpPort),
            Http = !oneShot && (!interactive || Has(o.HttpPort)),
            ModelId = Get(o.ModelId) ?? preset ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir))),
            TlsCertificatePath = Get(o.TlsCert),
            TlsCertificatePassword = Get(o.TlsCertPassword) ?? Environment.GetEnvironmentVariable(ActorRing.Actors.Security.ControlPlaneTls.PasswordEnvironmentVariable),
            HttpTimeout = Get(o.HttpTimeout) is int httpTimeout ? TimeSpan.FromSeconds(httpTimeout) : ActorRing.Host.Http.HttpLimits.DefaultTimeout,
            ApiKey = apiKey,
            ChatTemplatePath = Get(o.ChatTemplate),
            Preset = preset,
            RingConfigPath = Get(o.RingConfig),
            Interactive = interactive,
            Prompt = Get(o.Prompt.Prompt),
            PromptIds = o.Prompt.PromptIds.Get(cli),
            Json = Get(o.Prompt.Json),
            Sampling = sampling,
            GenerationDefaults = defaults,
            BindAddress = bind,
            Advertise = Get(o.Advertise),
            ControlPort = Get(o.ControlPort),
            Load = new ModelLoadOptions
            {
                ContextLength = Get(o.Rank.Context),
                Threads = Get(o.Threads),
                Cores = o.Cores.Get(cli),
                DType = o.Rank.DType.Get(cli),
                KvDType = o.Rank.KvDType.Get(cli),
                KvCacheTokens = Get(o.Rank.KvCacheTokens),
                Quant = quant,
                QuantizeLmHead = quantHead,
                SyncDType = o.Rank.SyncDType.Get(cli),
                Log = Console.Error.WriteLine,
            },
            Scheduling = new ActorRing.Actors.Serving.SchedulerOptions(
                MaxBatch: Get(o.Rank.MaxBatch),
                PrefillChunk: Get(o.Rank.PrefillChunk),
                PrefixCaching: !Get(o.NoPrefixCache)),
            ReadyTimeout = TimeSpan.FromSeconds(Get(o.ReadyTimeout)),
            RecoveryTimeout = TimeSpan.FromSeconds(Get(o.RecoveryTimeout)),
            Verbose = Get(o.Verbose),
            Quiet = Get(o.Quiet),
            InsecureShortSecret = Get(o.InsecureShortSecret),
        };
    }
}

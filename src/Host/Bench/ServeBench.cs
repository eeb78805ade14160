using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ActorRing.Actors;
using ActorRing.Actors.Client;
using ActorRing.Actors.Hosting;
using ActorRing.Host.Cli;
using ActorRing.Model.Quantization;
using ActorRing.Host.Serve;
using ActorRing.Transport;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench serve</c>: a real cluster on loopback (ranks 1..N-1 as <c>serve</c> processes, rank 0
/// hosted in this process exactly as <c>serve</c> builds it) driven by C concurrent streamed requests through
/// the coordinator's client API, as a front end would. Each of the C streams sends its requests back to back;
/// prompts are random ids of the preset's vocabulary (the preset has no tokenizer, so no EOS: every request
/// runs max_tokens). With <c>--shared-prefix-tokens S</c> every prompt starts with the same S tokens (a long system
/// prompt or chat history) before its own P; <c>--no-prefix-cache</c> runs the same without the prefix cache, for
/// the time-to-first-token comparison. Prints one JSON line: output tokens per second over the measured wall
/// time, time to first token and inter-token latency percentiles, and the prefix cache's hit rate (cached prompt
/// tokens over prompt tokens of the measured requests).
/// <para>
/// <c>--concurrency 1,8,16</c> measures several levels on the same cluster, in the same minutes, <c>--rounds</c>
/// times, the order reversed every other round (1, 8, 16, then 16, 8, 1) so that a machine drifting between a fast
/// and a slow memory state weighs on every level alike. Each pass prints its line (with its <c>round</c>); a last
/// line gives each level's medians over the rounds and its ratios against the first level.
/// </para>
/// </summary>
internal static class ServeBench
{
    /// <summary>bench serve's options; a field declared here is an option.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<string?> Preset = ComputeOptions.Preset();
        public readonly Option<int> WorldSize = Opt.Int("--world-size", "Ranks (rank 0 in this process, the others serve processes)", 1, 1, 64);
        public readonly IntListOption Concurrency = Opt.IntList("--concurrency", "C[,C...]",
            "Streams sending requests at once; a list (1,8,16) measures each level on the same cluster and ends with their ratios [default: 1]");
        public readonly Option<int> Rounds = Opt.Int("--rounds", "Passes over the --concurrency levels, alternating their order", 1, 1, 1000);
        public readonly Option<int> MaxTokens = Opt.Int("--max-tokens", "Tokens each request generates", 64, 1, 1 << 20);
        public readonly Option<int> PromptTokens = Opt.Int("--prompt-tokens", "Random prompt ids per request", 16, 1, 1 << 20);
        public readonly Option<int?> Requests = Opt.Int("--requests", "Requests in all, per level and round [default: 2 x --concurrency]", 1, 1 << 20);
        public readonly Option<int?> Threads = Opt.Int("--threads", "Compute threads per rank [default: cores / world size]", 1, 1024);
        public readonly ChoiceOption<Model.ComputeDType> DType = ComputeOptions.DType();
        public readonly ChoiceOption<Model.ComputeDType?> KvDType = ComputeOptions.KvDType();
        public readonly ChoiceOption<WeightQuantization> Quant = ComputeOptions.Quant();
        public readonly Option<bool> QuantLmHead = ComputeOptions.QuantLmHead();
        public readonly Option<int?> MaxBatch = Opt.Int("--max-batch", "Most requests decoded together [default: the larger of 16 and --concurrency]", 1, 4096);
        public readonly Option<int> SharedPrefixTokens = Opt.Int("--shared-prefix-tokens",
            "Ids every prompt starts with (a shared system prompt or history), before its own --prompt-tokens", 0, 0, 1 << 20);
        public readonly Option<bool> NoPrefixCache = Opt.Flag("--no-prefix-cache", "Run the cluster without the prefix cache (the TTFT baseline)");
    }

    public static Command Create()
    {
        var options = new Options();
        var command = new Command("serve", "Throughput and latency of a real cluster under C concurrent streamed requests");
        options.AddTo(command);
        command.SetAction((cli, _) => RunAsync(options, cli));
        return command;
    }

    private static async Task<int> RunAsync(Options o, ParseResult cli)
    {
        int worldSize = cli.GetValue(o.WorldSize);
        var (preset, config) = DecodeBench.PresetOption(cli, o.Preset, "serve", worldSize);
        int[] levels = o.Concurrency.Get(cli) ?? [1];
        if (levels.Length == 0 || levels.Any(c => c < 1 || c > 4096))
            throw new UsageException($"option --concurrency expects one or more levels from 1 to 4096, got '{string.Join(',', levels)}'");
        int rounds = cli.GetValue(o.Rounds);
        int maxTokens = cli.GetValue(o.MaxTokens);
        int promptTokens = cli.GetValue(o.PromptTokens);
        int? requestsOption = cli.GetValue(o.Requests);
        int threads = cli.GetValue(o.Threads) ?? Math.Max(1, Environment.ProcessorCount / worldSize);
        int maxBatch = cli.GetValue(o.MaxBatch) ?? Math.Max(16, levels.Max());
        int sharedPrefix = cli.GetValue(o.SharedPrefixTokens);
        bool noPrefixCache = cli.GetValue(o.NoPrefixCache);
        var dtype = o.DType.Get(cli);
        var kvDtype = o.KvDType.Get(cli) ?? dtype;
        var (quant, quantHead) = ComputeOptions.QuantChoice(cli, o.Quant, o.QuantLmHead);

        string[] shared =
        [
            "--preset", preset, "--threads", threads.ToString(CultureInfo.InvariantCulture), "--dtype", ComputeOptions.DTypeName(dtype),
            "--kv-dtype", ComputeOptions.DTypeName(kvDtype), "--quant", quant.Name(), .. (string[])(quantHead ? ["--quant-lm-head"] : []),
            "--quiet", "--max-batch", maxBatch.ToString(CultureInfo.InvariantCulture), .. (string[])(noPrefixCache ? ["--no-prefix-cache"] : []),
        ];
        using var launcher = RankProcessLauncher.Start(worldSize,
            rank => ["serve", .. shared, .. RankProcessLauncher.CoreArguments(rank, worldSize, threads)],
            onOutput: (rank, isStdErr, line) => { if (isStdErr) Console.Error.WriteLine($"[rank {rank}] {line}"); },
            skipRank0: true);

        // Rank 0 in this process, built exactly as `serve` builds it.
        Environment.SetEnvironmentVariable(RingOptions.SecretEnvironmentVariable, launcher.Secret);
        // Any free HTTP port: the bench drives the coordinator directly, and must not collide with a server on 8080.
        var options = ServeOptions.Parse([.. shared, "--ring-config", launcher.ConfigPath(0), "--http-port", "0",
            .. RankProcessLauncher.CoreArguments(0, worldSize, threads)]);
        if (!ServeCommand.TryPrepare(options, out var setup, out int failure)) return failure;
        using var host = ServeCommand.Build(options, setup!, TextWriter.Null);
        await host.StartAsync();
        try
        {
            var client = new CoordinatorClient(host.Services.GetRequiredService<Akka.Actor.ActorSystem>(),
                await host.Services.GetRequiredService<ActorRegistry>().GetAsync<CoordinatorActor>());
            await client.WaitReadyAsync(TimeSpan.FromMinutes(10), s => Console.Error.WriteLine($"[cluster] {s.Detail}"), CancellationToken.None);

            var rng = new Random(11);
            var history = Enumerable.Range(0, sharedPrefix).Select(_ => rng.Next(1, config.VocabSize)).ToArray();
            int[] Prompt() => [.. history, .. Enumerable.Range(0, promptTokens).Select(_ => rng.Next(1, config.VocabSize))];
            // Warm-up (JIT, first-touch of the KV cache), not measured: one request per stream of the highest level,
            // concurrently, for as many steps as bench decode's untimed ones: .NET optimizes a method only after about
            // 30 calls, in the background, so with fewer steps the per-step code (planning, sampling, delivery) would
            // still run unoptimized, and be recompiled on a thread that competes with the compute threads, while measured.
            await Task.WhenAll(Enumerable.Range(0, levels.Max()).Select(i => RunOne(client, $"warm{i}", Prompt(), DecodeBench.WarmupSteps)));

            var port = host.Services.GetRequiredService<ActorRing.Actors.Serving.ServingPort>();
            var passes = new List<(int Concurrency, Dictionary<string, object?> Json)>();
            for (int round = 1; round <= rounds; round++)
            {
                foreach (int concurrency in round % 2 == 1 ? levels : Enumerable.Reverse(levels))
                {
                    int requests = requestsOption ?? 2 * concurrency;
                    var prompts = Enumerable.Range(0, requests).Select(_ => Prompt()).ToArray();
                    var pass = await MeasurePass(client, port, $"r{round}c{concurrency}", concurrency, prompts, maxTokens);
                    if (pass is null) return 1;
                    var json = new Dictionary<string, object?>
                    {
                        ["preset"] = preset,
                        ["world_size"] = worldSize,
                        ["dtype"] = ComputeOptions.DTypeName(dtype),
                        ["kv_dtype"] = ComputeOptions.DTypeName(kvDtype),
                        ["quant"] = quant.Name() + (quantHead ? "+lm_head" : ""),
                        ["concurrency"] = concurrency,
                        ["round"] = round,
                        ["shared_prefix_tokens"] = sharedPrefix,
                        ["prompt_tokens"] = sharedPrefix + promptTokens,
                        ["prefix_cache"] = !noPrefixCache,
                        ["requests"] = requests,
                    };
                    foreach (var (key, value) in pass) json[key] = value;
                    Console.Out.WriteLine(JsonSerializer.Serialize(json));
                    passes.Add((concurrency, json));
                }
            }
            if (levels.Length > 1 || rounds > 1) Console.Out.WriteLine(JsonSerializer.Serialize(Summary(preset, worldSize, rounds, levels, passes)));
            return 0;
        }
        finally
        {
            try
            {
                var client = new CoordinatorClient(host.Services.GetRequiredService<Akka.Actor.ActorSystem>(),
                    host.Services.GetRequiredService<ActorRegistry>().Get<CoordinatorActor>());
                await client.ShutdownAsync("bench serve finished", TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is TimeoutException or Akka.Actor.AskTimeoutException or InvalidOperationException)
            {
                Console.Error.WriteLine($"warning: could not stop the other ranks cleanly: {e.Message}");
            }
            await host.StopAsync();
        }
    }

    /// <summary>
    /// One measured pass: <paramref name="concurrency"/> streams send <paramref name="prompts"/> back to back. Gives
    /// the throughput and latency figures and where rank 0's steps went, or null (after printing why) when a
    /// request failed.
    /// </summary>
    private static async Task<Dictionary<string, object?>?> MeasurePass(CoordinatorClient client, ActorRing.Actors.Serving.ServingPort port,
        string idPrefix, int concurrency, int[][] prompts, int maxTokens)
    {
        var stepsBefore = port.Steps;
        var gcBefore = GcTotals.Now();
        int next = -1;
        var results = new List<RequestTiming>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < prompts.Length)
            {
                var timing = await RunOne(client, $"{idPrefix}-{i}", prompts[i], maxTokens);
                timing = timing with { PromptTokens = prompts[i].Length };
                lock (results) results.Add(timing);
            }
        }));
        double wallS = clock.Elapsed.TotalSeconds;
        var steps = port.Steps;
        var gc = GcTotals.Now() - gcBefore;

        var failed = results.Where(r => r.Error is not null).ToList();
        if (failed.Count > 0)
        {
            Console.Error.WriteLine($"error: {failed.Count} of {prompts.Length} requests failed at concurrency {concurrency}; first: {failed[0].Error}");
            return null;
        }
        var ttft = results.Select(r => r.TtftMs).Order().ToArray();
        var itl = results.SelectMany(r => r.GapsMs).Order().ToArray();
        long tokens = results.Sum(r => (long)r.Tokens);
        double hitRate = (double)results.Sum(r => (long)r.CachedTokens) / results.Sum(r => (long)r.PromptTokens);
        var json = new Dictionary<string, object?>
        {
            ["output_tok_per_s"] = Math.Round(tokens / wallS, 2),
            ["ttft_ms_p50"] = Math.Round(Percentile(ttft, 0.5), 2),
            ["ttft_ms_p90"] = Math.Round(Percentile(ttft, 0.9), 2),
            ["itl_ms_p50"] = Math.Round(Percentile(itl, 0.5), 3),
            ["itl_ms_p90"] = Math.Round(Percentile(itl, 0.9), 3),
            ["prefix_hit_rate"] = Math.Round(hitRate, 4),
        };
        // Where rank 0's steps spent their time over the measured requests (the /metrics split, per step), so a
        // slow run shows whether the kernel, the ring or the loop around them grew.
        long stepCount = steps.Steps - stepsBefore.Steps;
        double PerStep(Func<ActorRing.Actors.Serving.StepTotals, double> part) =>
            stepCount == 0 ? 0 : Math.Round((part(steps) - part(stepsBefore)) / stepCount, 3);
        json["steps"] = stepCount;
        json["step_ms_mean"] = PerStep(t => t.WallMs);
        json["compute_ms_per_step"] = PerStep(t => t.ComputeMs);
        json["allreduce_ms_per_step"] = PerStep(t => t.AllReduceMs);
        json["gather_ms_per_step"] = PerStep(t => t.GatherMs);
        json["control_ms_per_step"] = PerStep(t => t.ControlMs);
        // This process (rank 0's loop and the bench's own clients): what it allocated per step, and the garbage
        // collections that paused it, since a pause stops the step loop's thread too.
        json["alloc_kb_per_step"] = stepCount == 0 ? 0 : Math.Round(gc.AllocatedBytes / 1024.0 / stepCount, 1);
        json["gc_gen0_gen1_gen2"] = new[] { gc.Gen0, gc.Gen1, gc.Gen2 };
        json["gc_pause_ms"] = Math.Round(gc.PauseMs, 1);
        return json;
    }

    /// <summary>
    /// The last line of a multi-level run: per level, the medians over the rounds of throughput, median
    /// inter-token latency and median time to first token, and the first two against the first level's medians
    /// (the "c8 at least 5x c1" and "ITL at c8 within 1.5x of c1" read straight off it).
    /// </summary>
    private static Dictionary<string, object?> Summary(string preset, int worldSize, int rounds, int[] levels,
        List<(int Concurrency, Dictionary<string, object?> Json)> passes)
    {
        double Median(int concurrency, string key)
        {
            var values = passes.Where(p => p.Concurrency == concurrency).Select(p => Convert.ToDouble(p.Json[key], CultureInfo.InvariantCulture)).Order().ToArray();
            return values.Length % 2 == 1 ? values[values.Length / 2] : (values[values.Length / 2 - 1] + values[values.Length / 2]) / 2;
        }
        double firstThroughput = Median(levels[0], "output_tok_per_s"), firstItl = Median(levels[0], "itl_ms_p50");
        return new Dictionary<string, object?>
        {
            ["preset"] = preset,
            ["world_size"] = worldSize,
            ["rounds"] = rounds,
            ["levels"] = levels.Distinct().Select(c =>
            {
                double throughput = Median(c, "output_tok_per_s"), itl = Median(c, "itl_ms_p50");
                return new Dictionary<string, object?>
                {
                    ["concurrency"] = c,
                    ["output_tok_per_s"] = Math.Round(throughput, 2),
                    ["itl_ms_p50"] = Math.Round(itl, 3),
                    ["ttft_ms_p50"] = Math.Round(Median(c, "ttft_ms_p50"), 2),
                    ["throughput_vs_first"] = firstThroughput == 0 ? 0 : Math.Round(throughput / firstThroughput, 3),
                    ["itl_vs_first"] = firstItl == 0 ? 0 : Math.Round(itl / firstItl, 3),
                };
            }).ToArray(),
        };
    }

    private readonly record struct GcTotals(long AllocatedBytes, int Gen0, int Gen1, int Gen2, double PauseMs)
    {
        public static GcTotals Now() => new(GC.GetTotalAllocatedBytes(precise: false), GC.CollectionCount(0), GC.CollectionCount(1),
            GC.CollectionCount(2), GC.GetTotalPauseDuration().TotalMilliseconds);

        public static GcTotals operator -(GcTotals a, GcTotals b) => new(a.AllocatedBytes - b.AllocatedBytes, a.Gen0 - b.Gen0,
            a.Gen1 - b.Gen1, a.Gen2 - b.Gen2, a.PauseMs - b.PauseMs);
    }

    private sealed record RequestTiming(double TtftMs, List<double> GapsMs, int Tokens, string? Error, int CachedTokens = 0, int PromptTokens = 0);

    private static async Task<RequestTiming> RunOne(CoordinatorClient client, string id, int[] prompt, int maxTokens)
    {
        var request = new GenerateRequest(id, 0, prompt, 0, new SamplingSpec(MaxTokens: maxTokens));
        var clock = Stopwatch.StartNew();
        double ttft = 0, last = 0;
        var gaps = new List<double>();
        int tokens = 0;
        await foreach (var m in client.GenerateAsync(request))
        {
            double now = clock.Elapsed.TotalMilliseconds;
            switch (m)
            {
                case TokenGenerated:
                    if (tokens == 0) ttft = now;
                    else gaps.Add(now - last);
                    last = now;
                    tokens++;
                    break;
                case GenerationCompleted c:
                    return new RequestTiming(ttft, gaps, tokens, null, c.CachedPromptTokens);
                case GenerationFailed f:
                    return new RequestTiming(ttft, gaps, tokens, f.Reason);
            }
        }
        return new RequestTiming(ttft, gaps, tokens, null);
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Floor(p * sorted.Length))];
}

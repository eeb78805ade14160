using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ActorRing.Actors;
using ActorRing.Actors.Client;
using ActorRing.Actors.Hosting;
using ActorRing.Host.Cli;
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
/// </summary>
internal static class ServeBench
{
    public static async Task<int> RunAsync(string[] args)
    {
        var cli = CliArgs.Parse(args, "no-prefix-cache");
        cli.EnsureOnly("preset", "world-size", "concurrency", "max-tokens", "prompt-tokens", "requests", "threads", "dtype", "max-batch",
            "shared-prefix-tokens", "no-prefix-cache");
        int worldSize = cli.Int("world-size", 1, 64) ?? 1;
        var (preset, config) = DecodeBench.PresetOption(cli, "serve", worldSize);
        int concurrency = cli.Int("concurrency", 1, 4096) ?? 1;
        int maxTokens = cli.Int("max-tokens", 1, 1 << 20) ?? 64;
        int promptTokens = cli.Int("prompt-tokens", 1, 1 << 20) ?? 16;
        int requests = cli.Int("requests", 1, 1 << 20) ?? 2 * concurrency;
        int threads = cli.Int("threads", 1, 1024) ?? Math.Max(1, Environment.ProcessorCount / worldSize);
        int maxBatch = cli.Int("max-batch", 1, 4096) ?? Math.Max(16, concurrency);
        int sharedPrefix = cli.Int("shared-prefix-tokens", 0, 1 << 20) ?? 0;
        bool noPrefixCache = cli.Flag("no-prefix-cache");
        var dtype = cli.DType();

        string[] shared =
        [
            "--preset", preset, "--threads", threads.ToString(CultureInfo.InvariantCulture), "--dtype", CliArgs.DTypeName(dtype),
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
            // Warm-up (JIT, first-touch of the KV cache), not measured: one request per stream, concurrently.
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(i => RunOne(client, $"warm{i}", Prompt(), Math.Min(8, maxTokens))));

            var prompts = Enumerable.Range(0, requests).Select(_ => Prompt()).ToArray();
            int next = -1;
            var results = new List<RequestTiming>();
            var clock = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < requests)
                {
                    var timing = await RunOne(client, $"r{i}", prompts[i], maxTokens);
                    timing = timing with { PromptTokens = prompts[i].Length };
                    lock (results) results.Add(timing);
                }
            }));
            double wallS = clock.Elapsed.TotalSeconds;

            var failed = results.Where(r => r.Error is not null).ToList();
            if (failed.Count > 0)
            {
                Console.Error.WriteLine($"error: {failed.Count} of {requests} requests failed; first: {failed[0].Error}");
                return 1;
            }
            var ttft = results.Select(r => r.TtftMs).Order().ToArray();
            var itl = results.SelectMany(r => r.GapsMs).Order().ToArray();
            long tokens = results.Sum(r => (long)r.Tokens);
            double hitRate = (double)results.Sum(r => (long)r.CachedTokens) / results.Sum(r => (long)r.PromptTokens);
            var json = new Dictionary<string, object?>
            {
                ["preset"] = preset,
                ["world_size"] = worldSize,
                ["concurrency"] = concurrency,
                ["shared_prefix_tokens"] = sharedPrefix,
                ["prompt_tokens"] = sharedPrefix + promptTokens,
                ["prefix_cache"] = !noPrefixCache,
                ["requests"] = requests,
                ["output_tok_per_s"] = Math.Round(tokens / wallS, 2),
                ["ttft_ms_p50"] = Math.Round(Percentile(ttft, 0.5), 2),
                ["ttft_ms_p90"] = Math.Round(Percentile(ttft, 0.9), 2),
                ["itl_ms_p50"] = Math.Round(Percentile(itl, 0.5), 3),
                ["itl_ms_p90"] = Math.Round(Percentile(itl, 0.9), 3),
                ["prefix_hit_rate"] = Math.Round(hitRate, 4),
            };
            Console.Out.WriteLine(JsonSerializer.Serialize(json));
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

using System.Globalization;
using System.Runtime.InteropServices;
using System.CommandLine;
using System.Diagnostics;
using System.Numerics.Tensors;
using System.Text.Json;
using ActorRing.Host.Cli;
using ActorRing.Host.Commands;
using ActorRing.Model;
using ActorRing.Model.Quantization;
using ActorRing.Transport;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench decode</c>: decode speed of a preset-shaped model with seeded random fp32 weights,
/// against the machine's memory-bandwidth limit (decode reads every weight once per token).
/// </summary>
internal static class DecodeBench
{
    internal static ModelConfig Preset(string name) => ModelPresets.Find(name)
        ?? throw new UsageException($"option --preset expects {string.Join(", ", ModelPresets.Names.SkipLast(1))} or {ModelPresets.Names[^1]}, got '{name}'");

    /// <summary>
    /// The shape <c>--preset</c> names, refused (as a usage error) before anything loads when its heads cannot
    /// be split over <paramref name="worldSize"/> ranks.
    /// </summary>
    internal static (string Name, ModelConfig Config) PresetOption(ParseResult cli, Option<string?> preset, string bench, int worldSize)
    {
        string name = cli.GetValue(preset) ?? throw new UsageException($"bench {bench} needs --preset {string.Join("|", ModelPresets.Names)}");
        var config = Preset(name);
        UsageException.FromUserErrors(() => ShardPlan.Create(config, 0, worldSize));
        return (name, config);
    }

    /// <summary>Every rank steps in lockstep, so a token costs what its slowest rank's step costs (ms per token).</summary>
    internal static double[] Lockstep(double[][] stepMsPerRank) =>
        Enumerable.Range(0, stepMsPerRank[0].Length).Select(i => stepMsPerRank.Max(r => r[i])).ToArray();

    private sealed record RankReport(double[] StepMs, double[] CpuMs, double PrefillMs, double AllReduceMs, double GatherMs, double ControlMs, long WeightBytes, double SentBytes);

    /// <summary>bench decode's options; a field declared here is an option.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<string?> Preset = ComputeOptions.Preset();
        public readonly Option<int> WorldSize = Opt.Int("--world-size", "Ranks (threads of this process, or serve processes with --runtime actors)", 1, 1, 64);
        public readonly Option<int> Threads = Opt.Int("--threads", "Compute threads per rank", 1, 1, 256);
        public readonly Option<int> Tokens = Opt.Int("--tokens", "Decode steps to time", 32, 1, 4096);
        public readonly Option<int> PromptTokens = Opt.Int("--prompt-tokens", "Positions already in each sequence's cache when the timed steps start (llama-bench's tg64 starts at 1); the prefill figure stays a 128-token one", DecodeSteps.PromptLength, 1, 4096, "P");
        public readonly Option<int> Batch = Opt.Int("--batch", "Sequences each decode step feeds (one row each, through the serving loop's batched step; --runtime threads)", 1, 1, 64, "B");
        public readonly Option<string> Runtime = Opt.Text("--runtime", "threads|actors",
            "threads: ranks as threads of this process; actors: serve processes, as users run them", "threads");
        public readonly ChoiceOption<ComputeDType> DType = ComputeOptions.DType();
        public readonly ChoiceOption<ComputeDType?> KvDType = ComputeOptions.KvDType();
        public readonly ChoiceOption<WeightQuantization> Quant = ComputeOptions.Quant();
        public readonly Option<bool> QuantLmHead = ComputeOptions.QuantLmHead();
        public readonly ChoiceOption<SyncPayload> SyncDType = ComputeOptions.SyncDType();
    }

    public static Command Create()
    {
        var options = new Options();
        var command = new Command("decode", "Decode speed of a preset-shaped model with seeded random weights, with the memory bandwidth it gets");
        options.AddTo(command);
        command.SetAction((cli, _) => RunAsync(options, cli));
        return command;
    }

    private static async Task<int> RunAsync(Options o, ParseResult cli)
    {
        int worldSize = cli.GetValue(o.WorldSize);
        var (presetName, config) = PresetOption(cli, o.Preset, "decode", worldSize);
        int threads = cli.GetValue(o.Threads);
        int tokens = cli.GetValue(o.Tokens);
        int batch = cli.GetValue(o.Batch);
        int promptTokens = cli.GetValue(o.PromptTokens);
        var dtype = o.DType.Get(cli);
        var kvDtype = o.KvDType.Get(cli) ?? dtype;
        var (quant, quantHead) = ComputeOptions.QuantChoice(cli, o.Quant, o.QuantLmHead);
        var sync = o.SyncDType.Get(cli);

        string runtime = cli.GetValue(o.Runtime)!;
        if (runtime == "actors" && sync != SyncPayload.F32) throw new UsageException("--sync-dtype is measured with --runtime threads");
        if (runtime == "actors" && kvDtype != dtype) throw new UsageException("--kv-dtype is measured with --runtime threads; 'bench serve --kv-dtype' runs serve processes with it");
        if (runtime == "actors" && promptTokens != DecodeSteps.PromptLength) throw new UsageException("--prompt-tokens is measured with --runtime threads");
        if (runtime == "actors" && batch != 1) throw new UsageException($"--batch {batch} is measured with --runtime threads; 'bench serve --concurrency C' batches through serve processes");
        if (runtime == "actors") return await RunThroughActorsAsync(presetName, worldSize, threads, tokens, dtype, quant, quantHead);
        if (runtime != "threads") throw new UsageException($"option --runtime expects threads or actors, got '{runtime}'");

        var comms = await LocalRanks.ConnectAsync(worldSize, threads, CancellationToken.None);
        // The memory probe runs before the model exists and again after the ranks finish (so its 1 GiB never
        // shows in the model's RSS); the better of the two is the machine's one-thread read bandwidth, which a
        // neighbour's burst of load would otherwise understate.
        double memBefore = MemoryProbe.OneThreadGBps();
        double memAllCores = MemoryProbe.AllCoresGBps();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        long rssLoaded = 0;
        using var loaded = new Barrier(worldSize, _ => rssLoaded = Process.GetCurrentProcess().WorkingSet64);
        var reports = RankThreads.Run(worldSize, rank =>
        {
            using var comm = comms[rank];
            using var model = ShardedLlama.CreateRandom(config, seed: 42, comm,
                new ModelLoadOptions
                {
                    ContextLength = Math.Max(DecodeSteps.ContextFor(WarmupSteps), promptTokens + tokens + 8),
                    Slots = batch,
                    Threads = threads,
                    DType = dtype,
                    KvDType = kvDtype,
                    Quant = quant,
                    QuantizeLmHead = quantHead,
                    SyncDType = sync,
                    // Every rank runs on this machine: one core per thread when they fit (see CorePinning).
                    Cores = CorePinning.CoresFor(rank, worldSize, threads),
                });
            loaded.SignalAndWait();
            return Measure(model, comm, tokens, batch, promptTokens);
        }, "bench-rank");

        double memGBps = Math.Max(memBefore, MemoryProbe.OneThreadGBps());

        var perToken = Lockstep(reports.Select(r => r.StepMs).ToArray()).OrderBy(x => x).ToArray();
        double median = perToken[tokens / 2];
        double tokPerS = 1000 * batch / median;
        var cpuPerStep = Lockstep(reports.Select(r => r.CpuMs).ToArray()).OrderBy(x => x).ToArray();
        long bytesPerToken = reports.Sum(r => r.WeightBytes);
        double limit = memGBps * 1e9 / bytesPerToken;
        var r0 = reports[0];
        double allReduce = reports.Average(r => r.AllReduceMs), gather = reports.Average(r => r.GatherMs), control = reports.Average(r => r.ControlMs);
        var json = new Dictionary<string, object>
        {
            ["preset"] = presetName,
            ["world_size"] = worldSize,
            ["threads_per_rank"] = threads,
            ["dtype"] = ComputeOptions.DTypeName(dtype),
            ["kv_dtype"] = ComputeOptions.DTypeName(kvDtype),
            ["quant"] = quant.Name() + (quantHead ? "+lm_head" : ""),
            ["sync_dtype"] = sync.Name(),
            ["params"] = config.ParameterCount,
            ["batch"] = batch,
            ["prompt_tokens"] = promptTokens,
            ["kernels"] = ShardedLlama.BatchedKernels,
            // A step decodes one token of each of the batch's sequences.
            ["ms_per_step_median"] = Math.Round(median, 3),
            ["ms_per_token_median"] = Math.Round(median / batch, 3),
            // The busiest rank thread's CPU time in a step (ring busy-polling included): unlike the wall time it
            // hardly moves when other processes share the cores, so it compares kernels on a busy host.
            ["cpu_ms_per_step_median"] = Math.Round(cpuPerStep[tokens / 2], 3),
            ["tok_per_s"] = Math.Round(tokPerS, 2),
            ["prefill_128_ms"] = Math.Round(reports.Max(r => r.PrefillMs), 2),
            // Ranks are threads of this process: its resident set once every rank has loaded, divided by N.
            ["rss_mb_per_rank"] = Math.Round(rssLoaded / (1024.0 * 1024) / worldSize, 1),
            ["bytes_per_token"] = bytesPerToken,
            ["mem_read_GBps"] = Math.Round(memGBps, 2),
            // The same read on every core at once (each its own share of 1 GiB), summed: what several ranks or helper
            // threads on this machine can stream together, so all_cores / one core bounds their speed-up.
            ["mem_read_all_cores_GBps"] = Math.Round(memAllCores, 2),
            ["limit_tok_per_s"] = Math.Round(limit, 2),
            ["bw_efficiency"] = Math.Round(tokPerS / limit, 3),
            // Distributed overhead per step (a token at --batch 1), averaged over ranks: all-reduce (2 per layer), logits gather,
            // control (rank 0's token broadcast), and the rest is compute.
            ["compute_ms_per_token"] = Math.Round(median - allReduce - gather - control, 3),
            ["allreduce_ms_per_token"] = Math.Round(allReduce, 3),
            ["gather_ms_per_token"] = Math.Round(gather, 3),
            ["control_ms_per_token"] = Math.Round(control, 3),
            // Payload bytes each rank sent to its neighbour per decode step through the ring's all-reduce and
            // all-gather (the --sync-dtype traffic; the logits gather to rank 0 is not counted), the most any rank sent.
            ["bytes_sent_per_rank_per_token"] = Math.Round(reports.Max(r => r.SentBytes)),
        };
        Console.Out.WriteLine(JsonSerializer.Serialize(json));
        return 0;
    }

    /// <summary>
    /// <c>--runtime actors</c>: the same shapes served the way users run them, by N <c>serve</c> processes on
    /// loopback (Coordinator, ShardWorkers, Akka.Remote control messages), one 128-token prompt and
    /// <paramref name="tokens"/> decode steps. Rank 0 reports its timing as JSON, including the control-plane
    /// share: the part of each decode step's wall time outside the slowest rank's compute and collectives.
    /// </summary>
    private static async Task<int> RunThroughActorsAsync(string preset, int worldSize, int threads, int tokens, ComputeDType dtype, WeightQuantization quant, bool quantHead)
    {
        var rng = new Random(7);
        var promptIds = Enumerable.Range(0, 128).Select(_ => rng.Next(1, 32000));
        string[] shared =
        [
            "serve", "--preset", preset, "--threads", threads.ToString(CultureInfo.InvariantCulture),
            "--dtype", ComputeOptions.DTypeName(dtype), "--quant", quant.Name(), .. quantHead ? ["--quant-lm-head"] : Array.Empty<string>(), "--quiet",
        ];
        string[] request = ["--prompt-ids", string.Join(',', promptIds), "--max-tokens", tokens.ToString(CultureInfo.InvariantCulture), "--json"];
        string? result = null;
        using var launcher = RankProcessLauncher.Start(worldSize,
            rank => [.. shared, .. rank == 0 ? request : [], .. RankProcessLauncher.CoreArguments(rank, worldSize, threads)],
            onOutput: (rank, isStdErr, line) =>
            {
                if (rank == 0 && !isStdErr && line.StartsWith('{')) result = line;
                else if (isStdErr) Console.Error.WriteLine($"[rank {rank}] {line}");
            });
        var codes = await launcher.WaitForExitAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(15));
        if (codes[0] != 0 || result is null)
        {
            Console.Error.WriteLine($"error: the serve ranks failed (exit codes {string.Join(", ", codes)})");
            return 1;
        }
        using var doc = JsonDocument.Parse(result);
        var r = doc.RootElement;
        double msPerToken = r.GetProperty("ms_per_token").GetDouble();
        var json = new Dictionary<string, object>
        {
            ["preset"] = preset,
            ["runtime"] = "actors",
            ["world_size"] = worldSize,
            ["threads_per_rank"] = threads,
            ["dtype"] = ComputeOptions.DTypeName(dtype),
            ["quant"] = quant.Name() + (quantHead ? "+lm_head" : ""),
            ["tokens"] = r.GetProperty("ids").GetArrayLength(),
            // The mean over every decode step of the request, the first (not yet optimized) ones included.
            ["ms_per_token_mean"] = msPerToken,
            ["tok_per_s"] = Math.Round(1000 / msPerToken, 2),
            ["prefill_128_ms"] = r.GetProperty("prefill_ms").GetDouble(),
            ["control_plane_share"] = r.GetProperty("control_share").GetDouble(),
        };
        Console.Out.WriteLine(JsonSerializer.Serialize(json));
        return 0;
    }

    /// <summary>
    /// Untimed decode steps before the timed ones. .NET compiles a method for speed only after about 30 calls
    /// (tiered compilation; the first steps run 2–5× slower), and those slow steps would otherwise swell the
    /// averaged overhead breakdown.
    /// </summary>
    internal const int WarmupSteps = 40;

    private static RankReport Measure(ShardedLlama model, ICollectives comm, int tokens, int batch, int promptTokens)
    {
        var steps = new DecodeSteps(model, comm, batch);
        double prefillMs = steps.Prefill();
        steps.Run(WarmupSteps);
        // The timed steps start with promptTokens positions cached, whatever the warm-up left: attention reads every
        // cached position, so the starting context is part of what is measured.
        steps.Restart(promptTokens);
        model.ResetCommunicationTime();
        long sentBefore = (comm as RingCommunicator)?.PayloadBytesSent ?? 0;
        var timing = steps.Run(tokens);
        double n = tokens;
        long sent = ((comm as RingCommunicator)?.PayloadBytesSent ?? 0) - sentBefore;
        return new RankReport(timing.StepMs, timing.CpuMs, prefillMs,
            model.AllReduceTime.TotalMilliseconds / n, model.GatherTime.TotalMilliseconds / n,
            timing.ControlMs / n, model.WeightBytesPerToken, sent / n);
    }

    /// <summary>
    /// One rank's side of the benchmark's generation: a 128-token prefill of a seeded random prompt, then greedy
    /// decode steps as <c>generate</c> runs them (rank 0 picks the token and broadcasts it, every rank steps).
    /// With <paramref name="batch"/> B &gt; 1, slots 0..B-1 each hold a prompt of their own and every step decodes
    /// one token of each, as B rows of one batched step (the model needs B slots). The prompts differ so the rows
    /// do: with the same prompt every row of a mixture of experts picked the same experts, and a batch cost what one
    /// sequence costs. Every rank of a ring must call the same methods in the same order.
    /// </summary>
    internal sealed class DecodeSteps(ShardedLlama model, ICollectives comm, int batch = 1)
    {
        public const int PromptLength = 128;
        private IReadOnlyList<float[]>? _logits;

        /// <summary>Positions a run of <paramref name="decodeSteps"/> steps after the prefill needs.</summary>
        public static int ContextFor(int decodeSteps) => PromptLength + decodeSteps + 8;

        /// <summary>Warms up with a short prompt, then times the 128-token prefill (ms).</summary>
        public double Prefill()
        {
            int[] prompt = SeededPrompt(PromptLength);
            model.Forward(0, prompt.AsSpan(0, 8), 0);
            model.ResetSlot(0);
            comm.Barrier();
            var clock = Stopwatch.StartNew();
            var first = model.Forward(0, prompt, 0);
            double ms = clock.Elapsed.TotalMilliseconds;
            // The other slots' prompts are untimed: the figure stays one 128-token prefill at any batch.
            var logits = new List<float[]?> { first };
            for (int slot = 1; slot < batch; slot++) logits.Add(model.Forward(slot, SeededPrompt(PromptLength, slot), 0));
            _logits = first is null ? null : logits.Select(l => l!).ToArray();
            return ms;
        }

        /// <summary>Slot <paramref name="slot"/>'s prompt: the same seeded random ids on every rank and in every run.</summary>
        private int[] SeededPrompt(int length, int slot = 0)
        {
            var rng = new Random(7 + slot);
            return Enumerable.Range(0, length).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        }

        /// <summary>Empties every slot and prefills the first <paramref name="promptTokens"/> tokens of the prompt into
        /// each (untimed), so the next <see cref="Run"/> decodes from that context.</summary>
        public void Restart(int promptTokens)
        {
            var logits = new float[]?[batch];
            for (int slot = 0; slot < batch; slot++)
            {
                model.ResetSlot(slot);
                logits[slot] = model.Forward(slot, SeededPrompt(promptTokens, slot), 0);
            }
            _logits = logits[0] is null ? null : logits.Select(l => l!).ToArray();
        }

        /// <summary>Runs <paramref name="count"/> steps: each one's wall time (ms), this thread's CPU time in it (ms),
        /// and the part of the wall time spent picking and broadcasting tokens.</summary>
        public (double[] StepMs, double[] CpuMs, double ControlMs) Run(int count)
        {
            Span<int> next = stackalloc int[batch];
            var steps = new double[count];
            var cpu = new double[count];
            long controlTicks = 0;
            for (int i = 0; i < count; i++)
            {
                comm.Barrier(); // lines the ranks up so each step's time is its own
                long t0 = Stopwatch.GetTimestamp();
                double cpu0 = ThreadCpuTime.Milliseconds();
                if (_logits is not null)
                    for (int b = 0; b < batch; b++) next[b] = TensorPrimitives.IndexOfMax(_logits[b]);
                if (comm.WorldSize > 1) comm.Broadcast(next, 0);
                long t1 = Stopwatch.GetTimestamp();
                var logits = model.DecodeSlots(next);
                _logits = logits.Count == 0 ? null : logits; // only rank 0 gets logits
                steps[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                cpu[i] = ThreadCpuTime.Milliseconds() - cpu0;
                controlTicks += t1 - t0;
            }
            return (steps, cpu, controlTicks * 1000.0 / Stopwatch.Frequency);
        }
    }
}

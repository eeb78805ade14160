using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ActorRing.Host.Cli;
using ActorRing.Host.Commands;
using ActorRing.Model;
using ActorRing.Model.Quantization;
using ActorRing.Transport;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench scaling</c>: how much faster decode gets with N ranks of one thread, or one rank of T
/// threads, than with one rank of one thread, on this machine. Why a benchmark of its own: on a shared host the
/// memory bandwidth a core gets swings by 2× within minutes, and decode runs at memory speed, so three
/// separate <c>bench decode</c> runs a minute apart compare three different machines. Here all three
/// configurations stay loaded in one process and take turns, a short round each, so every ratio compares
/// rounds measured seconds apart.
/// </summary>
internal static class ScalingBench
{
    /// <summary>bench scaling's options; a field declared here is an option.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<string?> Preset = ComputeOptions.Preset();
        public readonly Option<int> WorldSize = Opt.Int("--world-size", "Ranks of the tensor-parallel configuration", 2, 2, 64);
        public readonly Option<int> Threads = Opt.Int("--threads", "Threads of the one-rank multi-threaded configuration", 2, 2, 256);
        public readonly Option<int> Rounds = Opt.Int("--rounds", "Rounds; each configuration decodes once per round", 10, 1, 1000);
        public readonly Option<int> Tokens = Opt.Int("--tokens", "Decode steps per round", 16, 1, 4096);
        public readonly ChoiceOption<ComputeDType> DType = ComputeOptions.DType();
        public readonly ChoiceOption<WeightQuantization> Quant = ComputeOptions.Quant();
        public readonly Option<bool> QuantLmHead = ComputeOptions.QuantLmHead();
    }

    public static Command Create()
    {
        var options = new Options();
        var command = new Command("scaling", "1 rank x 1 thread against N ranks x 1 thread and 1 rank x T threads, in turns within one process");
        options.AddTo(command);
        command.SetAction((cli, _) => RunAsync(options, cli));
        return command;
    }

    private static async Task<int> RunAsync(Options o, ParseResult cli)
    {
        int worldSize = cli.GetValue(o.WorldSize);
        var (presetName, config) = DecodeBench.PresetOption(cli, o.Preset, "scaling", worldSize);
        int threads = cli.GetValue(o.Threads);
        int rounds = cli.GetValue(o.Rounds);
        int tokens = cli.GetValue(o.Tokens);
        var dtype = o.DType.Get(cli);
        var quant = ComputeOptions.QuantChoice(cli, o.Quant, o.QuantLmHead);

        double memOne = MemoryProbe.OneThreadGBps();
        double memAll = MemoryProbe.AllCoresGBps();
        int context = DecodeBench.DecodeSteps.ContextFor(DecodeBench.WarmupSteps + rounds * tokens);
        var shapes = new (string Name, int WorldSize, int Threads)[] { ("1x1", 1, 1), ($"{worldSize}x1", worldSize, 1), ($"1x{threads}", 1, threads) };
        var configurations = new List<LoadedConfiguration>();
        try
        {
            foreach (var (name, n, t) in shapes)
            {
                Console.Error.WriteLine($"loading {presetName} as {name} ({n} rank{(n == 1 ? "" : "s")} × {t} thread{(t == 1 ? "" : "s")}) and warming up…");
                configurations.Add(await LoadedConfiguration.StartAsync(name, config, n, t, context, dtype, quant));
            }

            // round × configuration: the median milliseconds per token of that round
            var ms = new double[rounds, shapes.Length];
            // Each round also reads memory on one core and on every core, just before its decode steps: what the
            // host lets this machine stream changes from minute to minute, and it bounds each round's speed-up.
            var bandwidthScaling = new double[rounds];
            using var probe = new MemoryProbe(Environment.ProcessorCount, 256L << 20);
            for (int round = 0; round < rounds; round++)
            {
                bandwidthScaling[round] = probe.ReadGBps(probe.Threads, passes: 3) / probe.ReadGBps(1, passes: 3);
                // Rotate who goes first, so no configuration always follows the same neighbour.
                for (int k = 0; k < shapes.Length; k++)
                {
                    int c = (round + k) % shapes.Length;
                    ms[round, c] = Median(configurations[c].RunRound(tokens));
                }
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {round + 1}/{rounds}: {shapes[0].Name} {ms[round, 0]:F2} ms, {shapes[1].Name} {ms[round, 1]:F2} ms ({ms[round, 0] / ms[round, 1]:F2}×), {shapes[2].Name} {ms[round, 2]:F2} ms ({ms[round, 0] / ms[round, 2]:F2}×); all cores read {bandwidthScaling[round]:F2}× one core"));
            }
            memOne = Math.Max(memOne, MemoryProbe.OneThreadGBps());

            double[] Column(int c) => Enumerable.Range(0, rounds).Select(r => ms[r, c]).ToArray();
            double[] Speedups(int c) => Enumerable.Range(0, rounds).Select(r => ms[r, 0] / ms[r, c]).ToArray();
            var json = new Dictionary<string, object>
            {
                ["preset"] = presetName,
                ["dtype"] = ComputeOptions.DTypeName(dtype),
                ["quant"] = quant.Quant.Name() + (quant.LmHead ? "+lm_head" : ""),
                ["rounds"] = rounds,
                ["tokens_per_round"] = tokens,
                ["ms_per_token_median"] = shapes.Select((s, c) => (s.Name, Median(Column(c)))).ToDictionary(p => p.Name, p => Math.Round(p.Item2, 3)),
                // Per round, 1x1's time over the configuration's, then the median and the best over rounds.
                ["speedup_median"] = new Dictionary<string, double>
                {
                    [shapes[1].Name] = Math.Round(Median(Speedups(1)), 3),
                    [shapes[2].Name] = Math.Round(Median(Speedups(2)), 3),
                },
                ["speedup_best"] = new Dictionary<string, double>
                {
                    [shapes[1].Name] = Math.Round(Speedups(1).Max(), 3),
                    [shapes[2].Name] = Math.Round(Speedups(2).Max(), 3),
                },
                ["mem_read_GBps"] = Math.Round(memOne, 2),
                ["mem_read_all_cores_GBps"] = Math.Round(memAll, 2),
                // Decode streams weights, so all cores' read rate over one core's bounds any speed-up here: the
                // median and best of the per-round probes, and each configuration's speed-up over its round's bound.
                ["bandwidth_scaling_median"] = Math.Round(Median(bandwidthScaling), 3),
                ["bandwidth_scaling_best"] = Math.Round(bandwidthScaling.Max(), 3),
                ["speedup_over_bandwidth_scaling_median"] = new Dictionary<string, double>
                {
                    [shapes[1].Name] = Math.Round(Median(Speedups(1).Select((x, r) => x / bandwidthScaling[r]).ToArray()), 3),
                    [shapes[2].Name] = Math.Round(Median(Speedups(2).Select((x, r) => x / bandwidthScaling[r]).ToArray()), 3),
                },
            };
            Console.Out.WriteLine(JsonSerializer.Serialize(json));
            double typical = Median(bandwidthScaling);
            if (typical < 1.5)
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"note: in the median round all {Environment.ProcessorCount} cores together read only {typical:F2}× what one core reads, so speed-ups near {typical:F2}× are the most to expect from this run; on a shared host, run again later"));
            return 0;
        }
        finally
        {
            foreach (var c in configurations) c.Dispose();
        }
    }

    private static double Median(double[] values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>
    /// One configuration's ranks as threads with their model loaded, prefilled and warmed up, idle until
    /// asked for a round of decode steps.
    /// </summary>
    private sealed class LoadedConfiguration : IDisposable
    {
        private readonly string _name;
        private readonly int _worldSize;
        private readonly SemaphoreSlim[] _go;
        private readonly CountdownEvent _ready;
        private readonly double[][] _stepMs;
        private Task _ranks = Task.CompletedTask;
        private int _roundSteps;
        private volatile bool _stopping;

        private LoadedConfiguration(string name, int worldSize)
        {
            _name = name;
            _worldSize = worldSize;
            _go = Enumerable.Range(0, worldSize).Select(_ => new SemaphoreSlim(0)).ToArray();
            _ready = new CountdownEvent(worldSize);
            _stepMs = new double[worldSize][];
        }

        public static async Task<LoadedConfiguration> StartAsync(string name, ModelConfig config, int worldSize, int threads, int context, ComputeDType dtype, (WeightQuantization Quant, bool LmHead) quant)
        {
            var comms = await LocalRanks.ConnectAsync(worldSize, threads, CancellationToken.None);
            var loaded = new LoadedConfiguration(name, worldSize);
            loaded._ranks = Task.Factory.StartNew(
                () => RankThreads.Run(worldSize, rank => loaded.RankLoop(rank, comms[rank], config, threads, context, dtype, quant), $"scaling-{name}"),
                TaskCreationOptions.LongRunning);
            loaded.WaitForRanks();
            return loaded;
        }

        private int RankLoop(int rank, ICollectives comm, ModelConfig config, int threads, int context, ComputeDType dtype, (WeightQuantization Quant, bool LmHead) quant)
        {
            try
            {
                using var _ = comm;
                using var model = ShardedLlama.CreateRandom(config, seed: 42, comm, new ModelLoadOptions
                {
                    ContextLength = context,
                    Threads = threads,
                    DType = dtype,
                    Quant = quant.Quant,
                    QuantizeLmHead = quant.LmHead,
                    // The configurations take turns, so each may have the machine's first cores to itself.
                    Cores = CorePinning.CoresFor(rank, _worldSize, threads),
                });
                var steps = new DecodeBench.DecodeSteps(model, comm);
                steps.Prefill();
                steps.Run(DecodeBench.WarmupSteps);
                while (true)
                {
                    _ready.Signal();
                    _go[rank].Wait();
                    if (_stopping) return 0;
                    _stepMs[rank] = steps.Run(_roundSteps).StepMs;
                }
            }
            catch
            {
                // Let the other ranks of this configuration leave their wait rather than wait for a round forever.
                _stopping = true;
                foreach (var go in _go) go.Release();
                throw;
            }
        }

        /// <summary>Waits until every rank is idle again, surfacing a rank's failure instead of waiting for ever.</summary>
        private void WaitForRanks()
        {
            while (!_ready.Wait(TimeSpan.FromMilliseconds(200)))
            {
                if (_ranks.IsCompleted)
                {
                    _ranks.GetAwaiter().GetResult(); // a rank failed: rethrow its error
                    throw new InvalidOperationException($"the {_name} ranks stopped before finishing a round");
                }
            }
        }

        /// <summary>Runs <paramref name="steps"/> decode steps: ms per token (see <see cref="DecodeBench.Lockstep"/>).</summary>
        public double[] RunRound(int steps)
        {
            _roundSteps = steps;
            _ready.Reset();
            foreach (var go in _go) go.Release();
            WaitForRanks();
            return DecodeBench.Lockstep(_stepMs);
        }

        public void Dispose()
        {
            _stopping = true;
            foreach (var go in _go) go.Release();
            try
            {
                _ranks.Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // Already reported by the round that failed.
            }
            foreach (var go in _go) go.Dispose();
            _ready.Dispose();
        }
    }
}

using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using ActorRing.Host.Cli;
using ActorRing.Model;
using ActorRing.Transport;
using Microsoft.Extensions.Logging;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench allreduce --world-size N [--sizes 16KiB,256KiB,4MiB,64MiB] [--dtype f32|bf16|f16]
/// [--iters K] [--algorithm auto|latency|ring]</c>: starts N rank processes on loopback, each all-reduces
/// buffers of every size, verifies every result, and rank 0 prints one JSON line per size (nccl-tests
/// conventions: busbw = algbw × 2(N−1)/N).
/// </summary>
public static class AllReduceBench
{
    public const string RankSubVerb = "allreduce-rank";

    private sealed record Settings(int WorldSize, long[] Sizes, DType DType, int? Iters, AllReduceAlgorithm Algorithm, int TimeoutSeconds, int? ChunkBytes, int? SmallMaxBytes);

    /// <summary>The options of allreduce and of its per-rank half (which gets the same ones). A field declared here is an option.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<int?> WorldSize = Opt.Int("--world-size", "Ranks (processes on loopback); required", 1, 64);
        public readonly Option<string> Sizes = Opt.Text("--sizes", "SIZE,...", "Buffer sizes to all-reduce", "16KiB,256KiB,4MiB,64MiB");
        public readonly ChoiceOption<DType> DType = Opt.Choice("--dtype", "f32|bf16|f16", "Element type", "f32", text => text switch
        {
            "f32" => Transport.DType.F32,
            "bf16" => Transport.DType.BF16,
            "f16" => Transport.DType.F16,
            var other => throw new UsageException($"option --dtype must be f32, bf16 or f16, got '{other}'"),
        });
        public readonly Option<int?> Iters = Opt.Int("--iters", "Timed iterations per size [default: 2000, 100 or 12, smaller sizes more]", 1, 1_000_000);
        public readonly ChoiceOption<AllReduceAlgorithm> Algorithm = Opt.Choice("--algorithm", "auto|latency|ring",
            "auto picks by message size; latency passes full vectors (N-1 hops); ring is reduce-scatter + all-gather", "auto", text => text switch
            {
                "auto" => AllReduceAlgorithm.Auto,
                "latency" => AllReduceAlgorithm.Latency,
                "ring" => AllReduceAlgorithm.Ring,
                var other => throw new UsageException($"option --algorithm must be auto, latency or ring, got '{other}'"),
            });
        public readonly Option<int> Timeout = Opt.Int("--timeout", "Seconds before the whole run is killed", 600, 1, 86400, "SECONDS");
        public readonly Option<long?> Chunk = Opt.ByteSize("--chunk", "Pipelining chunk of the ring algorithm [default: the communicator's]");
        public readonly Option<long?> SmallMax = Opt.ByteSize("--small-max", "Largest message auto sends with the latency algorithm [default: the communicator's]");

        public Settings ToSettings(ParseResult cli)
        {
            int worldSize = cli.GetValue(WorldSize) ?? throw new UsageException("option --world-size N is required (N ≥ 1)");
            string sizesText = cli.GetValue(Sizes)!;
            var sizes = sizesText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => Opt.ParseByteSize("--sizes", s)).ToArray();
            if (sizes.Length == 0) throw new UsageException($"option --sizes lists no sizes: '{sizesText}'");
            var dtype = DType.Get(cli);
            foreach (long s in sizes)
            {
                if (s % dtype.SizeInBytes() != 0 || s > (long)int.MaxValue * dtype.SizeInBytes())
                    throw new UsageException($"option --sizes: {s} bytes is not a whole number of {cli.GetValue(DType)} elements (or too large)");
            }
            int? chunk = cli.GetValue(Chunk) is long c ? (int)Math.Clamp(c, 1, 1 << 30) : null;
            int? smallMax = cli.GetValue(SmallMax) is long m ? (int)Math.Clamp(m, 0, 1 << 30) : null;
            return new Settings(worldSize, sizes, dtype, cli.GetValue(Iters), Algorithm.Get(cli), cli.GetValue(Timeout), chunk, smallMax);
        }
    }

    public static IEnumerable<Command> Create()
    {
        var options = new Options();
        var command = new Command("allreduce", "All-reduce bandwidth and latency over N rank processes on loopback (nccl-tests conventions)");
        options.AddTo(command);
        command.SetAction((cli, _) => RunAsync(options.ToSettings(cli), options.GivenArguments(cli).ToArray()));
        yield return command;

        var rankOptions = new Options();
        var rank = new Command(RankSubVerb, "One rank of bench allreduce") { Hidden = true };
        rankOptions.AddTo(rank);
        rank.SetAction((cli, _) => RunRankAsync(rankOptions.ToSettings(cli)));
        yield return rank;
    }

    /// <summary>The parent: validates options, starts the ranks, relays rank 0's JSON lines to stdout.</summary>
    private static async Task<int> RunAsync(Settings settings, string[] args)
    {
        using var launcher = RankProcessLauncher.Start(settings.WorldSize, _ => ["bench", RankSubVerb, .. args],
            (rank, isErr, line) =>
            {
                if (rank == 0 && !isErr && line.StartsWith('{')) Console.Out.WriteLine(line);
                else Console.Error.WriteLine($"[rank {rank}] {line}");
            });
        var codes = await launcher.WaitForExitAsync(TimeSpan.FromSeconds(settings.TimeoutSeconds), TimeSpan.FromSeconds(30));
        if (codes.All(c => c == 0)) return 0;
        Console.Error.WriteLine($"error: bench failed; rank exit codes: {string.Join(", ", codes.Select((c, i) => $"rank {i}={(c == -1 ? "killed" : c.ToString(CultureInfo.InvariantCulture))}"))}");
        return 1;
    }

    /// <summary>One rank: forms the ring from RING_CONFIG / ACTORRING_SECRET and runs every size.</summary>
    private static async Task<int> RunRankAsync(Settings settings)
    {
        RankProcessLauncher.ExitWhenParentDies();
        try
        {
            return await RunRankCoreAsync(settings);
        }
        catch (Exception e) when (e is RingConfigException or CollectiveException or InvalidOperationException)
        {
            // A user-fixable or ring problem: one clear line, no stack trace.
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static async Task<int> RunRankCoreAsync(Settings settings)
    {
        using var loggerFactory = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => o.SingleLine = true)
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .SetMinimumLevel(LogLevel.Warning));
        var config = RingConfig.LoadFromEnvironment();
        // Every rank runs on this machine: one core each when they fit, as generate does (see CorePinning).
        if (CorePinning.CoresFor(config.Rank, config.WorldSize, 1) is [int core]) CorePinning.PinCurrentThread(core);
        var options = RingOptions.FromEnvironment() with { Algorithm = settings.Algorithm };
        if (settings.ChunkBytes is int chunk) options = options with { ChunkBytes = chunk };
        if (settings.SmallMaxBytes is int smallMax) options = options with { SmallMessageMaxBytes = smallMax };
        using var ring = await RingCommunicator.ConnectAsync(config, options, loggerFactory.CreateLogger("ring"), CancellationToken.None);
        foreach (long bytes in settings.Sizes)
        {
            string? line = RunSize(ring, settings, bytes);
            if (line is not null) Console.Out.WriteLine(line);
        }
        ring.Barrier();
        return 0;
    }

    private static unsafe string? RunSize(RingCommunicator ring, Settings settings, long bytes)
    {
        int n = ring.WorldSize, rank = ring.Rank, es = settings.DType.SizeInBytes();
        int count = (int)(bytes / es);
        // Small integers: every sum is exact in all three dtypes, so verification is an exact comparison.
        var input = new float[count];
        var expected = new float[count];
        for (int i = 0; i < count; i++)
        {
            input[i] = Value(rank, i);
            for (int r = 0; r < n; r++) expected[i] += Value(r, i);
        }
        byte[] pristine = Encode(input, settings.DType), want = Encode(expected, settings.DType);

        int iters = settings.Iters ?? (count <= 65536 ? 2000 : count <= 1048576 ? 100 : 12);
        // Timed like the OSU/MPI anchor: all-reduces run back to back, and a batch's time divided by its
        // length is one sample. Each operation of a batch works on its own copy of the input, prepared before
        // the batch and checked after it, so nothing but all-reduce runs inside the timed region (an in-place
        // all-reduce overwrites its input, and restoring or checking it between operations would be timed, or
        // would let the peer's data arrive during untimed work). A barrier starts each batch; its exit skew
        // (one wake-up) is spread over the batch. Batches hold at most 256 MiB of copies.
        int batch = (int)Math.Clamp((256L << 20) / Math.Max(1, bytes), 1, Math.Min(50, iters));
        int batches = (iters + batch - 1) / batch;
        int warmupBatches = Math.Max(1, batches / 10);
        var copies = new byte[batch][];
        for (int k = 0; k < batch; k++) copies[k] = GC.AllocateUninitializedArray<byte>(pristine.Length, pinned: true);
        var times = new double[batches];
        for (int b = -warmupBatches; b < batches; b++)
        {
            foreach (var copy in copies) pristine.CopyTo(copy, 0);
            ring.Barrier();
            long t0 = Stopwatch.GetTimestamp();
            foreach (var copy in copies)
            {
                fixed (byte* p = copy) ring.AllReduceSum(p, count, settings.DType);
            }
            long t1 = Stopwatch.GetTimestamp();
            for (int k = 0; k < batch; k++)
            {
                if (copies[k].AsSpan().SequenceEqual(want)) continue;
                int bad = FirstDifference(copies[k], want) / es;
                throw new InvalidOperationException(
                    $"rank {rank}: wrong all-reduce result for {bytes} bytes ({settings.DType}) at element {bad} in batch {b}, operation {k}");
            }
            if (b >= 0) times[b] = (t1 - t0) * 1e6 / Stopwatch.Frequency / batch;
        }
        iters = batches * batch;
        if (rank != 0) return null;
        Array.Sort(times);
        double median = Percentile(times, 0.5), p90 = Percentile(times, 0.9);
        double algbw = bytes / (median * 1e-6) / 1e9;
        double busbw = algbw * 2.0 * (n - 1) / n;
        var result = new Dictionary<string, object>
        {
            ["op"] = "allreduce",
            ["world_size"] = n,
            ["dtype"] = settings.DType.ToString().ToLowerInvariant(),
            ["bytes"] = bytes,
            ["iters"] = iters,
            ["us_median"] = Math.Round(median, 1),
            ["us_p90"] = Math.Round(p90, 1),
            ["algbw_GBps"] = Math.Round(algbw, 3),
            ["busbw_GBps"] = Math.Round(busbw, 3),
            ["algorithm"] = settings.Algorithm == AllReduceAlgorithm.Auto
                ? (ring.UsesLatencyPath(bytes) ? "auto:latency" : "auto:ring")
                : settings.Algorithm.ToString().ToLowerInvariant(),
            ["verified"] = true,
        };
        return JsonSerializer.Serialize(result);
    }

    private static float Value(int rank, int i) => ((i * 7 + rank * 3) % 17) - 8;

    private static byte[] Encode(float[] v, DType dtype)
    {
        switch (dtype)
        {
            case DType.F32:
                return MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
            case DType.BF16:
                return MemoryMarshal.AsBytes(v.Select(BFloat16.FromSingle).ToArray().AsSpan()).ToArray();
            default:
                return MemoryMarshal.AsBytes(v.Select(x => (Half)x).ToArray().AsSpan()).ToArray();
        }
    }

    private static int FirstDifference(byte[] a, byte[] b)
    {
        for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) return i;
        return -1;
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
}

using ActorRing.Transport;

namespace ActorRing.Transport.Tests;

/// <summary>
/// Collectives over real loopback sockets, one thread per rank. Each test forms one ring and runs many cases
/// on it (forming rings is the slow part). Small chunks make the pipelined path cut even modest messages
/// into many frames, so chunk boundaries and uneven segments are exercised without huge buffers.
/// </summary>
public class CollectiveTests
{
    private static readonly DType[] AllDTypes = [DType.F32, DType.BF16, DType.F16];

    private static long[] Counts(int n) =>
        new long[] { 0, 1, Math.Max(0, n - 1), 2L * n + 1, 1000 + n - 1, 3 * 4096 + 5, 120_007 }.Distinct().ToArray();

    public static TheoryData<int> WorldSizes => new() { 1, 2, 3, 4, 5, 8 };

    [Theory]
    [MemberData(nameof(WorldSizes))]
    public async Task AllReduceIsExactAndBitIdenticalOnBothPaths(int n)
    {
        var ranks = await RingHarness.FormAsync(n, RingHarness.Options(chunkBytes: 4096));
        try
        {
            foreach (var algorithm in new[] { AllReduceAlgorithm.Latency, AllReduceAlgorithm.Ring, AllReduceAlgorithm.Auto })
            foreach (var dtype in AllDTypes)
            foreach (long count in Counts(n))
            {
                foreach (var r in ranks) r.AlgorithmOverride = algorithm;
                // Small integers: every partial sum is exact in f32, bf16 and f16, so the result must equal
                // the locally computed sum bit for bit, whatever the order of addition.
                var inputs = RandomInputs(n, count, seed: (int)count * 31 + n, integers: true);
                var outputs = RunAllReduce(ranks, inputs, dtype);
                var expected = ExactSum(inputs, count);
                for (int r = 0; r < n; r++)
                {
                    var got = ToFloats(outputs[r], dtype);
                    for (long i = 0; i < count; i++)
                    {
                        if (got[i] != expected[i])
                            Assert.Fail($"{algorithm} {dtype} N={n} count={count}: rank {r} element {i} = {got[i]}, expected {expected[i]}");
                    }
                }
            }
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Theory]
    [MemberData(nameof(WorldSizes))]
    public async Task AllReduceOfRandomRealsIsAccurateAndBitIdenticalAcrossRanks(int n)
    {
        var ranks = await RingHarness.FormAsync(n, RingHarness.Options(chunkBytes: 8192));
        try
        {
            foreach (var algorithm in new[] { AllReduceAlgorithm.Latency, AllReduceAlgorithm.Ring })
            foreach (var dtype in AllDTypes)
            {
                foreach (var r in ranks) r.AlgorithmOverride = algorithm;
                long count = 50_003;
                var inputs = RandomInputs(n, count, seed: 1000 + n, integers: false);
                // Inputs are what each rank actually holds, i.e. already rounded to the dtype.
                var held = inputs.Select(v => ToFloats(FromFloats(v, dtype), dtype)).ToArray();
                var outputs = RunAllReduce(ranks, inputs, dtype);
                for (int r = 1; r < n; r++)
                    Assert.True(outputs[0].AsSpan().SequenceEqual(outputs[r]), $"{algorithm} {dtype} N={n}: rank {r} differs from rank 0");
                var got = ToFloats(outputs[0], dtype);
                for (long i = 0; i < count; i++)
                {
                    double exact = 0, magnitude = 0;
                    for (int r = 0; r < n; r++)
                    {
                        exact += held[r][i];
                        magnitude += Math.Abs(held[r][i]);
                    }
                    // float32 accumulation error is tiny; 16-bit results are rounded once, so they are within
                    // half an ulp of the dtype plus that. Rounding at every hop would exceed this bound.
                    double tolerance = n * magnitude * 1.2e-7 + dtype switch
                    {
                        // Half an ulp: bf16 keeps 8 significant bits, f16 11 (subnormal f16 ulp is 2^-24).
                        DType.BF16 => Math.Abs(exact) * Math.Pow(2, -8),
                        DType.F16 => Math.Max(Math.Abs(exact) * Math.Pow(2, -11), Math.Pow(2, -25)),
                        _ => 0,
                    } * 1.01;
                    if (Math.Abs(got[i] - exact) > tolerance)
                        Assert.Fail($"{algorithm} {dtype} N={n}: element {i} = {got[i]}, exact {exact}, tolerance {tolerance}");
                }
            }
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task LargeAllReduceWithDefaultChunksAndPointerOverload()
    {
        const int n = 3;
        var ranks = await RingHarness.FormAsync(n);
        try
        {
            const long count = (3L << 20) + 7; // 12 MiB of f32: several default-size chunks per segment
            var buffers = new float[n][];
            for (int r = 0; r < n; r++)
            {
                buffers[r] = new float[count];
                for (long i = 0; i < count; i++) buffers[r][i] = (i % 97) - 48 + r;
            }
            RingHarness.OnAllRanks(ranks, c =>
            {
                unsafe
                {
                    fixed (float* p = buffers[c.Rank]) c.AllReduceSum(p, count, DType.F32);
                }
            });
            for (int r = 0; r < n; r++)
            for (long i = 0; i < count; i += 1)
            {
                float expected = 3 * ((i % 97) - 48) + 3;
                if (buffers[r][i] != expected) Assert.Fail($"rank {r} element {i} = {buffers[r][i]}, expected {expected}");
            }
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Theory]
    [MemberData(nameof(WorldSizes))]
    public async Task AllGatherGatherBroadcastAndBarrier(int n)
    {
        var ranks = await RingHarness.FormAsync(n, RingHarness.Options(chunkBytes: 1024));
        try
        {
            // Uneven counts including empty contributions, small (inline) and large (pipelined) totals.
            foreach (int scale in new[] { 1, 3000 })
            {
                var counts = Enumerable.Range(0, n).Select(r => r % 3 == 1 ? 0 : (r + 1) * scale + r).ToArray();
                int total = counts.Sum();
                var offsets = new int[n];
                for (int r = 1; r < n; r++) offsets[r] = offsets[r - 1] + counts[r - 1];
                int Value(int r, int i) => r * 1_000_000 + i;

                var gathered = new int[n][];
                RingHarness.OnAllRanks(ranks, c =>
                {
                    var local = Enumerable.Range(0, counts[c.Rank]).Select(i => Value(c.Rank, i)).ToArray();
                    var output = new int[total];
                    c.AllGather<int>(local, output, counts);
                    gathered[c.Rank] = output;
                });
                var expected = Enumerable.Range(0, n).SelectMany(r => Enumerable.Range(0, counts[r]).Select(i => Value(r, i))).ToArray();
                for (int r = 0; r < n; r++) Assert.Equal(expected, gathered[r]);

                foreach (int root in Enumerable.Range(0, n))
                {
                    var atRoot = Array.Empty<int>();
                    RingHarness.OnAllRanks(ranks, c =>
                    {
                        var local = Enumerable.Range(0, counts[c.Rank]).Select(i => Value(c.Rank, i)).ToArray();
                        var output = c.Rank == root ? new int[total] : Array.Empty<int>();
                        c.Gather<int>(local, output, counts, root);
                        if (c.Rank == root) atRoot = output;
                    });
                    Assert.Equal(expected, atRoot);

                    var received = new double[n][];
                    RingHarness.OnAllRanks(ranks, c =>
                    {
                        var data = new double[scale * 7 + 1];
                        if (c.Rank == root) for (int i = 0; i < data.Length; i++) data[i] = root + i * 0.5;
                        c.Broadcast<double>(data, root);
                        received[c.Rank] = data;
                    });
                    var sent = Enumerable.Range(0, scale * 7 + 1).Select(i => root + i * 0.5).ToArray();
                    for (int r = 0; r < n; r++) Assert.Equal(sent, received[r]);
                }
            }

            // Barrier: nobody leaves before the last rank (which arrives 300 ms late) has entered.
            var entered = new long[n];
            var left = new long[n];
            var clock = System.Diagnostics.Stopwatch.StartNew();
            RingHarness.OnAllRanks(ranks, c =>
            {
                if (c.Rank == n - 1) Thread.Sleep(300);
                entered[c.Rank] = clock.ElapsedTicks;
                c.Barrier();
                left[c.Rank] = clock.ElapsedTicks;
            });
            Assert.All(left, l => Assert.True(l >= entered.Max(), "a rank left the barrier before the last one entered"));
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task InvalidArgumentsAreRejectedBeforeAnyTraffic()
    {
        var configs = RingConfig.ForLoopback(1);
        using var c = await RingCommunicator.ConnectAsync(configs[0], RingHarness.Options(), null, CancellationToken.None);
        Assert.Throws<ArgumentException>(() => c.AllGather<int>(new int[2], new int[2], [1]));
        Assert.Throws<ArgumentException>(() => c.AllGather<int>(new int[1], new int[2], [1, 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Broadcast<int>(new int[1], 1));
        // World size 1: collectives are local and correct without sockets.
        var data = new float[] { 1.5f, -2 };
        c.AllReduceSum(data);
        Assert.Equal([1.5f, -2], data);
        var gathered = new int[3];
        c.AllGather<int>(new[] { 7, 8, 9 }, gathered, [3]);
        Assert.Equal([7, 8, 9], gathered);
        c.Barrier();
    }

    [Fact]
    public async Task AutoPicksThePathByMeasuredCrossover()
    {
        foreach (int n in new[] { 2, 3 })
        {
            var ranks = await RingHarness.FormAsync(n);
            try
            {
                int crossover = RingOptions.MeasuredCrossoverBytes(n);
                Assert.True(ranks[0].UsesLatencyPath(16 * 1024));
                Assert.True(ranks[0].UsesLatencyPath(crossover));
                Assert.False(ranks[0].UsesLatencyPath(crossover + 1));
                Assert.False(ranks[0].UsesLatencyPath(4 << 20));
                ranks[0].AlgorithmOverride = AllReduceAlgorithm.Ring;
                Assert.False(ranks[0].UsesLatencyPath(16));
                ranks[0].AlgorithmOverride = AllReduceAlgorithm.Latency;
                Assert.True(ranks[0].UsesLatencyPath(8 << 20));
            }
            finally
            {
                RingHarness.DisposeAll(ranks);
            }
        }
        Assert.Equal(64 * 1024, RingOptions.MeasuredCrossoverBytes(2));
        Assert.Equal(1000, new RingOptions { SmallMessageMaxBytes = 1000 }.SmallMessageMaxBytesFor(4));
    }

    [Fact]
    public async Task Ring_sockets_are_not_left_in_the_runtimes_epoll_set()
    {
        if (!OperatingSystem.IsLinux()) return;
        var ranks = await RingHarness.FormAsync(2);
        try
        {
            var ringFds = ranks.SelectMany(r => r.DataSockets).Select(s => (int)s.SafeHandle.DangerousGetHandle()).ToHashSet();
            Assert.Equal(4, ringFds.Count);
            // Every descriptor any epoll instance of this process watches, from /proc/self/fdinfo ("tfd: N").
            var watched = new HashSet<int>();
            foreach (var entry in new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos())
            {
                if (entry.LinkTarget != "anon_inode:[eventpoll]") continue;
                foreach (string line in File.ReadLines($"/proc/self/fdinfo/{entry.Name}"))
                {
                    if (line.StartsWith("tfd:", StringComparison.Ordinal))
                        watched.Add(int.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
                }
            }
            Assert.Empty(watched.Intersect(ringFds));
            // And the ring still works without them.
            var sums = new float[2];
            RingHarness.OnAllRanks(ranks, r =>
            {
                var v = new float[] { r.Rank + 1 };
                r.AllReduceSum(v.AsSpan());
                sums[r.Rank] = v[0];
            });
            Assert.Equal([3f, 3f], sums);
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    // ------------------------------------------------------------ helpers

    private static float[][] RandomInputs(int n, long count, int seed, bool integers)
    {
        var inputs = new float[n][];
        for (int r = 0; r < n; r++)
        {
            var rng = new Random(seed * 17 + r);
            inputs[r] = new float[count];
            for (long i = 0; i < count; i++)
                inputs[r][i] = integers ? rng.Next(-8, 9) : (float)(rng.NextDouble() * 2 - 1) * (float)Math.Pow(2, rng.Next(-4, 5));
        }
        return inputs;
    }

    private static float[] ExactSum(float[][] inputs, long count)
    {
        var sum = new float[count];
        foreach (var v in inputs)
            for (long i = 0; i < count; i++) sum[i] += v[i];
        return sum;
    }

    /// <summary>Runs one all-reduce on every rank; returns each rank's result as raw bytes.</summary>
    private static byte[][] RunAllReduce(RingCommunicator[] ranks, float[][] inputs, DType dtype)
    {
        var outputs = new byte[ranks.Length][];
        RingHarness.OnAllRanks(ranks, c =>
        {
            byte[] buf = FromFloats(inputs[c.Rank], dtype);
            switch (dtype)
            {
                case DType.F32: c.AllReduceSum(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(buf.AsSpan())); break;
                case DType.BF16: c.AllReduceSum(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, BFloat16>(buf.AsSpan())); break;
                default: c.AllReduceSum(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(buf.AsSpan())); break;
            }
            outputs[c.Rank] = buf;
        });
        return outputs;
    }

    private static byte[] FromFloats(float[] v, DType dtype)
    {
        var bytes = new byte[v.Length * dtype.SizeInBytes()];
        for (int i = 0; i < v.Length; i++)
        {
            switch (dtype)
            {
                case DType.F32: BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), v[i]); break;
                case DType.BF16: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), BFloat16.FromSingle(v[i]).Bits); break;
                default: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), (Half)v[i]); break;
            }
        }
        return bytes;
    }

    private static float[] ToFloats(byte[] bytes, DType dtype)
    {
        int es = dtype.SizeInBytes();
        var v = new float[bytes.Length / es];
        for (int i = 0; i < v.Length; i++)
        {
            v[i] = dtype switch
            {
                DType.F32 => BitConverter.ToSingle(bytes, i * 4),
                DType.BF16 => new BFloat16(BitConverter.ToUInt16(bytes, i * 2)).ToSingle(),
                _ => (float)BitConverter.ToHalf(bytes, i * 2),
            };
        }
        return v;
    }
}

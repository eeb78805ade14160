using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using ActorRing.Model;

namespace ActorRing.Host.Bench;

/// <summary>
/// How fast this machine streams memory right now: a vectorized float32 sum on one thread, or on every core at
/// once (each over its own buffer), in GB/s. Decode reads every weight once per token, so these rates bound
/// it: one core's rate bounds one thread, and all cores' over one core's bounds what several ranks or helper
/// threads can gain.
/// </summary>
internal sealed unsafe class MemoryProbe : IDisposable
{
    private readonly nint[] _buffers;
    private readonly int _count;

    /// <param name="bytesPerThread">Far beyond any cache; the buffers live until the probe is disposed.</param>
    public MemoryProbe(int threads, long bytesPerThread)
    {
        _count = (int)(bytesPerThread / sizeof(float));
        _buffers = new nint[threads];
        try
        {
            for (int t = 0; t < threads; t++)
            {
                // Native memory, freed at once on Dispose: a managed array of this size stays committed long after
                // it is garbage and would be counted in a model's resident set. Huge pages like the model's
                // weights (see HugePages), so the rate is the best this memory can stream.
                float* data = (float*)NativeMemory.AlignedAlloc((nuint)_count * sizeof(float), 2 << 20);
                _buffers[t] = (nint)data;
                HugePages.Advise(data, (long)_count * sizeof(float));
                new Span<float>(data, _count).Fill(1f);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Threads => _buffers.Length;

    /// <summary>One thread's read over 1 GiB, best of four passes.</summary>
    public static double OneThreadGBps()
    {
        using var probe = new MemoryProbe(1, 1L << 30);
        return probe.ReadGBps(1, passes: 4);
    }

    /// <summary>Every core reading at once, 1 GiB shared out but at least 128 MiB each, best of four passes.</summary>
    public static double AllCoresGBps()
    {
        int cores = Environment.ProcessorCount;
        using var probe = new MemoryProbe(cores, Math.Max(128L << 20, (1L << 30) / cores));
        return probe.ReadGBps(cores, passes: 4);
    }

    /// <summary>
    /// The first <paramref name="threads"/> buffers summed by as many threads at once: the best of
    /// <paramref name="passes"/> passes of their summed rate (a pass lasts as long as its slowest thread).
    /// </summary>
    public double ReadGBps(int threads, int passes)
    {
        if (threads < 1 || threads > _buffers.Length) throw new ArgumentOutOfRangeException(nameof(threads));
        double best = 0;
        for (int pass = 0; pass < passes; pass++)
        {
            using var start = new Barrier(threads);
            var seconds = new double[threads];
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                var clock = Stopwatch.StartNew();
                float sink = TensorPrimitives.Sum<float>(new ReadOnlySpan<float>((float*)_buffers[t], _count));
                seconds[t] = clock.Elapsed.TotalSeconds;
                GC.KeepAlive(sink);
            })).ToArray();
            foreach (var w in workers) w.Start();
            foreach (var w in workers) w.Join();
            best = Math.Max(best, (double)_count * sizeof(float) * threads / seconds.Max() / 1e9);
        }
        return best;
    }

    public void Dispose()
    {
        for (int t = 0; t < _buffers.Length; t++)
        {
            if (_buffers[t] != 0) NativeMemory.AlignedFree((void*)_buffers[t]);
            _buffers[t] = 0;
        }
    }
}

using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace ActorRing.Model;

/// <summary>
/// Helper threads of one rank for splitting a matrix product by output rows. A matrix-vector product runs on
/// one core, so a rank that owns several cores uses them by handing each helper its own block of rows. Part 0
/// runs on the calling (compute) thread.
/// Hand-off is a generation counter that idle helpers busy-wait on for a short while (see
/// <see cref="ModelLoadOptions.HelperSpin"/>) before they sleep on a semaphore, and completion is a counter the
/// caller busy-waits on for as long: with events alone, each of a decode step's ~50 products paid two thread
/// wake-ups (20–50 µs each on a VM), which ate most of the second core's gain on llama-160m.
/// </summary>
internal sealed class SplitWorkers : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _asleep;
    private readonly ManualResetEventSlim _done = new(false, spinCount: 1);
    private readonly long _spinTicks;
    private readonly TimeSpan _partDeadline;
    private Action<int>? _work;
    private Exception? _error;
    private long _generation;
    private int _pending;
    private volatile bool _stopping;
    private string? _fault;

    public int Parts { get; }

    /// <param name="cores">Core of each part (part 0 is the caller's); null pins nothing.</param>
    /// <param name="partDeadline">How long <see cref="Run"/> waits for the helpers once its own part is done
    /// (default <see cref="DefaultPartDeadline"/>).</param>
    public SplitWorkers(int parts, TimeSpan spin, int[]? cores = null, TimeSpan? partDeadline = null)
    {
        Parts = parts;
        _partDeadline = partDeadline ?? DefaultPartDeadline;
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _threads = new Thread[parts - 1];
        _wake = new SemaphoreSlim[parts - 1];
        _asleep = new int[parts - 1];
        for (int i = 0; i < parts - 1; i++)
        {
            int part = i + 1;
            _wake[i] = new SemaphoreSlim(0);
            int? core = cores is not null && part < cores.Length ? cores[part] : null;
            _threads[i] = new Thread(() => Loop(part, core)) { IsBackground = true, Name = $"split-{part}" };
            _threads[i].Start();
        }
    }

    private void Loop(int part, int? core)
    {
        if (core is int c) CorePinning.PinCurrentThread(c);
        // Each helper is one core's worth of work: keep libtorch from fanning out underneath it.
        TorchSharp.torch.set_num_threads(1);
        using var noGrad = TorchSharp.torch.no_grad();
        long seen = 0;
        while (true)
        {
            seen = WaitForGeneration(part - 1, seen);
            if (_stopping) return;
            try
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                _work!(part);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }

    /// <summary>Returns the first generation after <paramref name="seen"/>: spinning first, then sleeping.</summary>
    private long WaitForGeneration(int helper, long seen)
    {
        long spinUntil = Stopwatch.GetTimestamp() + _spinTicks;
        while (true)
        {
            long now = Volatile.Read(ref _generation);
            if (now != seen) return now;
            if (Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(20);
                continue;
            }
            // Announce the sleep, then re-check: Run bumps the generation before it reads _asleep, so either
            // we see the new generation here or Run sees us asleep and releases the semaphore. A stale
            // release only makes a later wait return early, and the loop re-checks. The announcement must be a
            // full fence (Interlocked), not a volatile write: x86 lets a load pass an earlier store, so with a
            // plain store the re-check could read the old generation while Run still read _asleep as 0, and
            // both then slept for good (SplitWorkersTests: products timed to start as the helpers stop spinning
            // hung within 6,000-15,000 of them).
            Interlocked.Exchange(ref _asleep[helper], 1);
            if (Volatile.Read(ref _generation) == seen) _wake[helper].Wait();
            Volatile.Write(ref _asleep[helper], 0);
            spinUntil = Stopwatch.GetTimestamp() + _spinTicks;
        }
    }

    /// <summary>
    /// A helper's part is one share of one matrix product: milliseconds, seconds for a long prefill of a large model.
    /// A minute without it means a lost hand-off or a stuck helper, and a rank that waited on it for ever would hang
    /// its whole ring with no word; the step fails loudly instead (the ring is then re-formed).
    /// </summary>
    public static readonly TimeSpan DefaultPartDeadline = TimeSpan.FromMinutes(1);

    /// <summary>Runs work(0..Parts-1) in parallel and returns when all are done.</summary>
    /// <exception cref="TimeoutException">A helper did not finish its part within the deadline after the caller's.</exception>
    public void Run(Action<int> work)
    {
        // After a timeout a helper may still be in the old product, and would count itself out of the next one.
        if (_fault is not null) throw new InvalidOperationException($"the split helpers of this rank are unusable: {_fault}");
        _work = work;
        _error = null;
        _done.Reset();
        Volatile.Write(ref _pending, Parts - 1);
        Interlocked.Increment(ref _generation);
        WakeSleepers();
        try
        {
            work(0);
        }
        finally
        {
            long spinUntil = Stopwatch.GetTimestamp() + _spinTicks;
            while (Volatile.Read(ref _pending) != 0 && Stopwatch.GetTimestamp() < spinUntil) Thread.SpinWait(20);
            // The last helper of a run sets _done after its decrement; when this thread saw the zero first (by
            // spinning) that Set can land after the next run's Reset, and would end the next run's wait while its
            // helpers still work (a product used before all its rows were written; KernelTests caught a part
            // missing). So the count, not the event, ends the wait: a stale Set only costs one more look.
            long deadline = 0; // set on the first wait: the spin above usually ends the product
            while (Volatile.Read(ref _pending) != 0)
            {
                if (deadline == 0) deadline = Stopwatch.GetTimestamp() + (long)(_partDeadline.TotalSeconds * Stopwatch.Frequency);
                var left = TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                if (left <= TimeSpan.Zero || !_done.Wait(left) && Volatile.Read(ref _pending) != 0)
                {
                    _fault = $"{Volatile.Read(ref _pending)} of {Parts - 1} split helpers had not finished their part of a product {_partDeadline.TotalSeconds:0.#} s after this thread finished its own; the step fails rather than wait for ever";
                    throw new TimeoutException(_fault);
                }
                _done.Reset();
            }
            _work = null;
        }
        if (_error is { } e) ExceptionDispatchInfo.Capture(e).Throw();
    }

    private void WakeSleepers()
    {
        for (int i = 0; i < _wake.Length; i++)
        {
            if (Volatile.Read(ref _asleep[i]) == 1) _wake[i].Release();
        }
    }

    public void Dispose()
    {
        _stopping = true;
        Interlocked.Increment(ref _generation);
        foreach (var w in _wake) w.Release();
        foreach (var t in _threads) t.Join();
        foreach (var w in _wake) w.Dispose();
        _done.Dispose();
    }
}

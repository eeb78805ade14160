using System.Runtime.ExceptionServices;

namespace ActorRing.Model;

/// <summary>
/// Helper threads of one rank for splitting a matrix product by output columns. libtorch runs a
/// matrix-vector product on one core whatever its thread setting, so a rank that owns several cores uses
/// them by handing each helper its own column block. Part 0 runs on the calling (compute) thread.
/// </summary>
internal sealed class SplitWorkers : IDisposable
{
    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly CountdownEvent _done;
    private Action<int>? _work;
    private Exception? _error;
    private volatile bool _stopping;

    public int Parts { get; }

    public SplitWorkers(int parts)
    {
        Parts = parts;
        _threads = new Thread[parts - 1];
        _start = new ManualResetEventSlim[parts - 1];
        _done = new CountdownEvent(parts - 1);
        for (int i = 0; i < parts - 1; i++)
        {
            int part = i + 1;
            _start[i] = new ManualResetEventSlim(false, spinCount: 2000);
            _threads[i] = new Thread(() => Loop(part)) { IsBackground = true, Name = $"split-{part}" };
            _threads[i].Start();
        }
    }

    private void Loop(int part)
    {
        // Each helper is one core's worth of work: keep libtorch from fanning out underneath it.
        TorchSharp.torch.set_num_threads(1);
        using var noGrad = TorchSharp.torch.no_grad();
        var start = _start[part - 1];
        while (true)
        {
            start.Wait();
            start.Reset();
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
            _done.Signal();
        }
    }

    /// <summary>Runs work(0..Parts-1) in parallel and returns when all are done.</summary>
    public void Run(Action<int> work)
    {
        _work = work;
        _error = null;
        _done.Reset();
        foreach (var s in _start) s.Set();
        try
        {
            work(0);
        }
        finally
        {
            _done.Wait();
            _work = null;
        }
        if (_error is { } e) ExceptionDispatchInfo.Capture(e).Throw();
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var s in _start) s.Set();
        foreach (var t in _threads) t.Join();
        foreach (var s in _start) s.Dispose();
        _done.Dispose();
    }
}

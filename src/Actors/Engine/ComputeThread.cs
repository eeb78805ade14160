using System.Collections.Concurrent;

namespace ActorRing.Actors.Engine;

/// <summary>
/// One dedicated thread that runs work items in order. The ShardWorker puts model loading and forward passes
/// here so its mailbox never blocks; TorchSharp's dispose scopes and no-grad mode are per thread, so keeping
/// every call of one engine on one thread also keeps that state consistent.
/// </summary>
public sealed class ComputeThread : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;

    public ComputeThread(string name)
    {
        _thread = new Thread(Loop) { Name = name, IsBackground = true };
        _thread.Start();
    }

    public int ManagedThreadId => _thread.ManagedThreadId;

    public Task<T> Run<T>(Func<T> work)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            _queue.Add(() =>
            {
                try { tcs.SetResult(work()); }
                catch (Exception e) { tcs.SetException(e); }
            });
        }
        catch (InvalidOperationException)
        {
            tcs.SetException(new ObjectDisposedException(nameof(ComputeThread), "the compute thread has stopped"));
        }
        return tcs.Task;
    }

    private void Loop()
    {
        foreach (var item in _queue.GetConsumingEnumerable()) item();
    }

    /// <summary>Stops taking work and waits a bounded time for the current item. A forward pass blocked in a
    /// collective is released by closing the ring, which the owner does before disposing this.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        if (Thread.CurrentThread != _thread) _thread.Join(TimeSpan.FromSeconds(5));
    }
}

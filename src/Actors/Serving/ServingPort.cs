using System.Collections.Concurrent;

namespace ActorRing.Actors.Serving;

/// <summary>
/// The in-process queue between rank 0's Coordinator (any thread) and the step loop on rank 0's compute
/// thread: requests and cancellations go in, the loop takes them between steps. It outlives any one loop,
/// so requests that arrive while the ring is forming or re-forming simply wait here for the next loop, and so
/// does the scheduler of a loop that lost its ring, with every request that was running (<see cref="Suspend"/>).
/// </summary>
public sealed class ServingPort
{
    private readonly ConcurrentQueue<object> _inbox = new();
    private readonly SemaphoreSlim _signal = new(0);
    private volatile int _running, _waiting;
    private readonly object _gate = new();
    private Scheduler? _suspended;
    private string? _givenUp;

    public void Submit(ServingRequest request) => Put(request);

    public void Cancel(string requestId) => Put(new CancelRequest(requestId));

    /// <summary>Sequences running and waiting in the loop's scheduler, as of its last step (for status).</summary>
    public (int Running, int Waiting) Load => (_running, _waiting + _inbox.Count);

    internal void Report(int running, int waiting)
    {
        _running = running;
        _waiting = waiting;
    }

    private volatile int _kvUsed, _kvTotal;
    private readonly object _stepsGate = new();
    private StepTotals _steps;

    /// <summary>KV blocks reserved by the loop's sequences and the cache's size, as of its last step (for /metrics).</summary>
    public (int Used, int Total) KvCache => (_kvUsed, _kvTotal);

    /// <summary>Every step rank 0's loops ran, and where their time went (for /metrics).</summary>
    public StepTotals Steps
    {
        get { lock (_stepsGate) return _steps; }
    }

    internal void ReportKvCache((int Used, int Total) blocks) => (_kvUsed, _kvTotal) = blocks;

    internal void ReportStep(double wallMs, Model.Batching.StepResult result)
    {
        lock (_stepsGate) _steps = _steps.Add(wallMs, result);
    }

    /// <summary>Requests held by a loop that lost its ring (running and waiting), until a new loop takes them on.</summary>
    public int Suspended
    {
        get { lock (_gate) return _suspended is { } s ? s.Running + s.Waiting : 0; }
    }

    /// <summary>
    /// Fails every request still queued or suspended, and every request a lost ring suspends from now on until
    /// <see cref="Resume"/>: the cluster failed for good, is shutting down, or its ring did not come back within
    /// the recovery timeout, so no loop will take them.
    /// </summary>
    public void FailQueued(string reason)
    {
        Scheduler? suspended;
        lock (_gate)
        {
            _givenUp = reason;
            suspended = _suspended;
            _suspended = null;
        }
        if (suspended is not null) Deliver(suspended.FailAll(reason));
        while (_inbox.TryDequeue(out var item))
            if (item is ServingRequest r) r.Client.OnFailed(new GenerationFailed(r.RequestId, reason));
    }

    /// <summary>The cluster serves again: a ring lost from now on suspends its requests instead of failing them.</summary>
    public void Resume()
    {
        lock (_gate) _givenUp = null;
    }

    /// <summary>
    /// Called by a step loop whose ring failed, with its <see cref="Scheduler.Suspend"/>ed scheduler: it waits here,
    /// with every request in it, for the next loop (<see cref="TakeSuspended"/>). If the requests may no longer wait
    /// (<see cref="FailQueued"/>), they fail at once.
    /// </summary>
    internal void Suspend(Scheduler scheduler)
    {
        string? reason;
        lock (_gate)
        {
            reason = _givenUp;
            if (reason is null) _suspended = scheduler;
        }
        if (reason is not null) Deliver(scheduler.FailAll(reason));
    }

    /// <summary>The scheduler a lost ring left behind, for the next loop to continue (null if there is none).</summary>
    internal Scheduler? TakeSuspended()
    {
        lock (_gate)
        {
            var suspended = _suspended;
            _suspended = null;
            return suspended;
        }
    }

    private static void Deliver(IReadOnlyList<ServingEvent> events)
    {
        foreach (var e in events) e.Deliver();
    }

    internal sealed record CancelRequest(string RequestId);

    private IReadOnlyList<ServingRequest>? _warmUp;

    /// <summary>
    /// Requests the next step loop runs to the end on a scratch scheduler before it serves anything (see
    /// <see cref="StepLoop"/>): they exercise the loop's whole path once, so that no client's request pays its
    /// first-call costs. Their blocks and prefix entries live only in the scratch scheduler's book.
    /// </summary>
    public void WarmUpWith(IReadOnlyList<ServingRequest> requests) => Volatile.Write(ref _warmUp, requests);

    internal IReadOnlyList<ServingRequest> TakeWarmUp() => Interlocked.Exchange(ref _warmUp, null) ?? [];

    private void Put(object item)
    {
        _inbox.Enqueue(item);
        _signal.Release();
    }

    internal bool TryTake(out object item) => _inbox.TryDequeue(out item!);

    /// <summary>Waits until something is queued (true) or the timeout passes (false).</summary>
    internal bool WaitForWork(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!_inbox.IsEmpty) return true;
        try
        {
            return _signal.Wait(timeout, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}

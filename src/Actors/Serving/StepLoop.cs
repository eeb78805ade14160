using System.Diagnostics;
using ActorRing.Actors.Engine;
using ActorRing.Model.Batching;
using ActorRing.Transport;

namespace ActorRing.Actors.Serving;

/// <summary>
/// The serving engine's one step loop (vLLM's schedule → execute → update), run on rank 0's compute thread:
/// the <see cref="Scheduler"/> plans a step, the plan goes to every rank over the ring as one small frame
/// (<see cref="PlanChannel"/>), every rank runs the batched forward, rank 0 samples each sequence from the
/// gathered logits, and the scheduler hands each request's events straight to its client. No actor message
/// is on the per-token path. Other ranks run <see cref="Follow"/>.
/// </summary>
public sealed class StepLoop(IShardEngine engine, ICollectives comm, Scheduler scheduler, ServingPort port, TimeSpan? deliveryInterval = null)
{
    /// <summary>Longest a follower waits for a plan while rank 0 is idle: an empty plan goes out this often,
    /// well inside the ring's operation deadline, so an idle cluster is not mistaken for a dead one.</summary>
    public static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(1);

    private readonly PlanChannel _channel = new(comm);
    private readonly EventOutbox _outbox = new(deliveryInterval ?? EventOutbox.DefaultInterval);

    /// <summary>
    /// Runs until <paramref name="stop"/> is cancelled (the server stops: every request fails, the followers are told
    /// to stop), <paramref name="suspend"/> is cancelled (the ring is being closed because a rank was lost), or the
    /// ring fails. After a lost or failed ring the scheduler, with every request in it, waits in the port for the
    /// next loop (<see cref="Scheduler.Suspend"/>), which rebuilds their caches and continues them; the ring's
    /// error is rethrown. Any other error fails every request and is rethrown.
    /// </summary>
    public void Run(CancellationToken stop, CancellationToken suspend = default)
    {
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(stop, suspend);
        var end = ending.Token;
        try
        {
            WarmUp(port.TakeWarmUp(), end);
            CollectWhileIdle(GC.MaxGeneration);
            long stepStart = Stopwatch.GetTimestamp();
            double lastWallMs = double.PositiveInfinity;
            while (!end.IsCancellationRequested)
            {
                TakeQueued();
                Deliver(scheduler.TakeEvents());
                var plan = scheduler.Plan(_channel.LastStep + 1);
                port.Report(scheduler.Running, scheduler.Waiting);
                port.ReportKvCache(scheduler.KvBlocks);
                if (plan is null)
                {
                    _outbox.Flush();
                    if (port.WaitForWork(KeepAlive, end))
                    {
                        stepStart = Stopwatch.GetTimestamp(); // an idle wait is no step's time
                        continue;
                    }
                    if (end.IsCancellationRequested) break;
                    if (comm.WorldSize > 1) _channel.Send(new StepPlan(_channel.LastStep + 1, [])); // keep-alive
                    CollectWhileIdle(0);
                    stepStart = Stopwatch.GetTimestamp();
                    continue;
                }
                _outbox.BeforeStep(lastWallMs < _outbox.Interval.TotalMilliseconds / 2 && IsDecodeOnly(plan));
                _channel.Send(plan);
                var result = engine.Execute(plan);
                double wallMs = lastWallMs = Stopwatch.GetElapsedTime(stepStart).TotalMilliseconds;
                port.ReportStep(wallMs, result);
                stepStart = Stopwatch.GetTimestamp();
                Deliver(scheduler.Complete(plan, result, wallMs));
            }
        }
        catch (Exception e)
        {
            // The interrupted step sampled nothing, so suspended requests continue exactly where they were.
            if (e is CollectiveException && !stop.IsCancellationRequested) SuspendInPort();
            else Deliver(scheduler.FailAll(e is CollectiveException ? $"the ring failed: {e.Message}" : $"the step failed: {e.Message}"));
            port.Report(0, 0);
            throw;
        }
        finally
        {
            _outbox.Flush(); // tokens held for coalescing go out before anything else can happen to their requests
        }
        if (suspend.IsCancellationRequested && !stop.IsCancellationRequested)
        {
            // The ring is being closed under this loop: no stop plan (the ring may be gone), and nothing fails.
            SuspendInPort();
            port.Report(0, 0);
            return;
        }
        Deliver(scheduler.FailAll("the server is stopping"));
        port.Report(0, 0);
        if (comm.WorldSize > 1) _channel.Send(new StepPlan(_channel.LastStep + 1, [], Stop: true));
    }

    /// <summary>
    /// Runs <paramref name="requests"/> to the end on a scratch scheduler over the same KV blocks, through the same
    /// plan channel (followers see ordinary plans), before serving: each method on the loop's path is compiled on
    /// its first call (tiered compilation is off), 30-40 ms in all on the bundled model, which the first steps of
    /// the first client request paid before. Only on a fresh scheduler, whose blocks hold nothing yet.
    /// </summary>
    private void WarmUp(IReadOnlyList<ServingRequest> requests, CancellationToken end)
    {
        if (requests.Count == 0 || !scheduler.Fresh) return;
        var scratch = new Scheduler(scheduler.Options, new KvBlockPool(scheduler.KvBlocks.Total, engine.KvBlockSize), engine.ContextLength);
        // A warm-up only has to pass through every step once: its prompt is cut to what the context and the cache
        // hold (a server loaded with a short --context or a small --kv-cache-tokens still warms up).
        int room = Math.Min(engine.ContextLength, scheduler.KvBlocks.Total * engine.KvBlockSize);
        foreach (var r in requests)
        {
            int fits = Math.Max(1, room - (r.Sampling.MaxTokens - 1));
            var fitted = r.PromptTokens.Length <= fits ? r : r with { PromptTokens = r.PromptTokens[..fits] };
            if (scratch.Submit(fitted) is { } refusal) r.Client.OnFailed(new GenerationFailed(r.RequestId, refusal));
        }
        while (!end.IsCancellationRequested && scratch.Plan(_channel.LastStep + 1) is { } plan)
        {
            _channel.Send(plan);
            var result = engine.Execute(plan);
            foreach (var e in scratch.Complete(plan, result, result.ComputeMs)) e.Deliver();
        }
        foreach (var e in scratch.TakeEvents()) e.Deliver();
    }

    private static bool IsDecodeOnly(StepPlan plan)
    {
        foreach (var s in plan.Sequences)
            if (s.Tokens.Length != 1) return false;
        return true;
    }

    private void SuspendInPort()
    {
        Deliver(scheduler.TakeEvents());
        _outbox.Flush(); // every token sampled so far reaches its client before another loop can continue the request
        scheduler.Suspend();
        port.Suspend(scheduler);
    }

    private void TakeQueued()
    {
        while (port.TryTake(out var item))
        {
            switch (item)
            {
                case ServingRequest r when scheduler.Submit(r) is { } refusal:
                    r.Client.OnFailed(new GenerationFailed(r.RequestId, refusal));
                    break;
                case ServingPort.CancelRequest c:
                    scheduler.Cancel(c.RequestId);
                    break;
            }
        }
    }

    private void Deliver(IReadOnlyList<ServingEvent> events) => _outbox.Add(events);

    /// <summary>
    /// The KV blocks the loop may use: the fewest any rank has. Ranks size their caches from their own free
    /// memory, and plans name blocks by index, so rank 0's book must not exceed the smallest. Every rank calls
    /// it once before its side of the loop (one all-gather on the fresh ring).
    /// </summary>
    public static int AgreeKvBlocks(IShardEngine engine, ICollectives comm)
    {
        if (comm.WorldSize == 1) return engine.KvBlocks;
        var all = new int[comm.WorldSize];
        var counts = new int[comm.WorldSize];
        Array.Fill(counts, 1);
        comm.AllGather<int>([engine.KvBlocks], all, counts);
        return all.Min();
    }

    /// <summary>
    /// Collects garbage at a moment when no step waits for it, so a collection (which stops every thread, this
    /// one included, for 3–6 ms) is less likely to land inside a request. At the loop's start the heap still holds
    /// what loading and the warm-up left, and the first collection used to come a few hundred steps into the first
    /// request: `generate --world-size 2` on the bundled model (256 tokens, about 51 ms of decode) showed a control
    /// share above 10% in 8 of 14 runs, and in 2 of 14 with this (median about 11% against 7.5%; the machine's fast
    /// state). While idle, every keep-alive empties gen0 (microseconds when there is little in it).
    /// </summary>
    private static void CollectWhileIdle(int generation) => GC.Collect(generation);

    /// <summary>A non-zero rank's side of the loop: run every plan rank 0 sends until a stop plan. A gap in
    /// the plans' step numbers, or any ring error, throws a <see cref="CollectiveException"/>.</summary>
    public static void Follow(IShardEngine engine, ICollectives comm)
    {
        var channel = new PlanChannel(comm);
        CollectWhileIdle(GC.MaxGeneration);
        while (true)
        {
            var plan = channel.Receive();
            if (plan.Stop) return;
            if (plan.Sequences.Count > 0) engine.Execute(plan);
            else CollectWhileIdle(0); // a keep-alive: rank 0 has been idle for a while
        }
    }
}

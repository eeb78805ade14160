using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;
using ActorRing.Transport;

namespace ActorRing.Actors.Tests;

/// <summary>The step loop with the fake model: many concurrent requests, a queue beyond the batch, requests
/// joining, finishing and cancelled mid-stream; and a follower that detects a skipped plan.</summary>
public sealed class StepLoopTests
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Sixteen_concurrent_requests_beyond_the_batch_each_get_exactly_their_own_continuation()
    {
        var comm = new FakeCollectives(0, 1);
        using var permits = new SemaphoreSlim(0);
        var engine = new FakeEngine(comm) { Steps = permits };
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(MaxBatch: 4, PrefillChunk: 3), new KvBlockPool(engine.KvBlocks, engine.KvBlockSize), engine.ContextLength);
        using var stop = new CancellationTokenSource();
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port).Run(stop.Token), TaskCreationOptions.LongRunning);

        // One request streams and is cancelled mid-stream while the others join.
        var cancelled = new RecordingClient();
        port.Submit(new ServingRequest("cancel-me", [3], new SamplingSpec(MaxTokens: 40), new GreedyPickers().Create(new SamplingSpec()), cancelled));
        permits.Release();
        Assert.IsType<TokenGenerated>(cancelled.Next(T));
        var clients = new RecordingClient[16];
        for (int i = 0; i < 16; i++)
        {
            clients[i] = new RecordingClient();
            // Different prompt lengths (1 to 8 tokens) and lengths (1 to 6 tokens).
            var prompt = Enumerable.Range(i, 1 + i % 8).ToArray();
            port.Submit(new ServingRequest($"r{i}", prompt, new SamplingSpec(MaxTokens: 1 + i % 6),
                new GreedyPickers().Create(new SamplingSpec()), clients[i]));
        }
        port.Cancel("cancel-me");
        permits.Release(10_000);

        for (int i = 0; i < 16; i++)
        {
            var events = clients[i].UntilDone(T);
            var done = Assert.IsType<GenerationCompleted>(events[^1]);
            int last = i + i % 8; // the prompt's last token; the fake model continues last + 1, + 2, ...
            var expected = Enumerable.Range(1, 1 + i % 6).Select(k => (last + k) % FakeEngine.Vocab).ToArray();
            Assert.Equal(expected, done.TokenIds);
            Assert.Equal(expected, events.OfType<TokenGenerated>().Select(t => t.TokenId));
            Assert.Equal(Enumerable.Range(0, expected.Length), events.OfType<TokenGenerated>().Select(t => t.Index));
            Assert.Equal("length", done.FinishReason);
        }
        var end = Assert.IsType<GenerationCompleted>(cancelled.UntilDone(T)[^1]);
        Assert.Equal("cancelled", end.FinishReason);
        Assert.InRange(end.TokenIds.Length, 1, 39);

        // At most 4 sequences ever shared a step, and every step was one plan with the next number.
        List<StepPlan> plans;
        lock (engine.Calls) plans = engine.Calls.Select(c => c.Plan).ToList();
        Assert.All(plans, p => Assert.InRange(p.Sequences.Count, 1, 4));
        Assert.Contains(plans, p => p.Sequences.Count == 4);
        Assert.Equal(plans.Select(p => p.Step), plans.Select(p => p.Step).Order());
        stop.Cancel();
        await loop.WaitAsync(T);
    }

    [Fact]
    public async Task Warm_up_requests_run_to_the_end_before_any_client_request_and_leave_no_prefix_behind()
    {
        var comm = new FakeCollectives(0, 1);
        var engine = new FakeEngine(comm);
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(engine.KvBlocks, engine.KvBlockSize), engine.ContextLength);
        var warm = new RecordingClient();
        // Two full blocks of the fake's block size (4): a warm-up prefix the client request below would hit if it leaked.
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8];
        port.WarmUpWith([new ServingRequest("warm", prompt, new SamplingSpec(MaxTokens: 2), new GreedyPickers().Create(new SamplingSpec()), warm)]);
        var client = new RecordingClient();
        port.Submit(new ServingRequest("client", prompt, new SamplingSpec(MaxTokens: 3), new GreedyPickers().Create(new SamplingSpec()), client));
        using var stop = new CancellationTokenSource();
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port).Run(stop.Token), TaskCreationOptions.LongRunning);

        var warmDone = Assert.IsType<GenerationCompleted>(warm.UntilDone(T)[^1]);
        Assert.Equal(new[] { 9, 10 }, warmDone.TokenIds);
        var done = Assert.IsType<GenerationCompleted>(client.UntilDone(T)[^1]);
        Assert.Equal(new[] { 9, 10, 11 }, done.TokenIds);
        Assert.Equal(0, done.CachedPromptTokens); // the warm-up's blocks were registered in a scratch book only

        // The warm-up's steps came first, and the plans' numbers run on without a gap (followers see ordinary plans).
        List<StepPlan> plans;
        lock (engine.Calls) plans = engine.Calls.Select(c => c.Plan).ToList();
        Assert.Equal(Enumerable.Range(1, plans.Count).Select(i => (long)i), plans.Select(p => p.Step));
        int firstClientStep = plans.FindIndex(p => p.Sequences.Count > 0 && p.Sequences[0].StartPosition == 0 && p.Step > 1);
        Assert.Equal(2, firstClientStep); // warm-up: prefill, one decode; then the client's prefill
        Assert.Equal(0, scheduler.KvBlocks.Used);
        stop.Cancel();
        await loop.WaitAsync(T);
    }

    [Fact]
    public async Task A_warm_up_prompt_longer_than_the_context_is_cut_to_fit_and_still_runs()
    {
        var comm = new FakeCollectives(0, 1);
        var engine = new FakeEngine(comm) { ContextLength = 6 };
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(engine.KvBlocks, engine.KvBlockSize), engine.ContextLength);
        var warm = new RecordingClient();
        port.WarmUpWith([new ServingRequest("warm", Enumerable.Range(1, 32).ToArray(), new SamplingSpec(MaxTokens: 2), new GreedyPickers().Create(new SamplingSpec()), warm)]);
        using var stop = new CancellationTokenSource();
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port).Run(stop.Token), TaskCreationOptions.LongRunning);

        // 6 positions hold 5 prompt tokens and the one generated token that is fed back.
        var done = Assert.IsType<GenerationCompleted>(warm.UntilDone(T)[^1]);
        Assert.Equal(new[] { 6, 7 }, done.TokenIds);
        stop.Cancel();
        await loop.WaitAsync(T);
    }

    [Fact]
    public void A_follower_that_sees_a_skipped_plan_fails_the_ring_loudly()
    {
        var comm = new FakeCollectives(1, 2);
        var engine = new FakeEngine(comm);
        comm.SendPlan(new StepPlan(1, [new SequenceStep(0, 0, [1, 2], [0], true)]));
        comm.SendPlan(new StepPlan(3, []));
        var e = Assert.Throws<CollectiveException>(() => StepLoop.Follow(engine, comm));
        Assert.Equal("rank 1: received step plan 3 but expected 2; a plan was lost or duplicated, so the ranks are out of step", e.Message);
        Assert.Single(engine.Calls); // plan 1 ran; plan 3 never did
    }

    [Fact]
    public async Task A_ring_failure_suspends_the_requests_and_the_next_loop_rebuilds_their_caches_and_continues_them_exactly()
    {
        var comm = new FakeCollectives(0, 2);
        var engine = new FakeEngine(comm);
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(PrefillChunk: 4), new KvBlockPool(64, 4), 64);
        var client = new RecordingClient();
        using var permits = new SemaphoreSlim(0);
        engine.Steps = permits;
        port.Submit(new ServingRequest("r", [1, 2, 3], new SamplingSpec(MaxTokens: 12), new GreedyPickers().Create(new SamplingSpec()), client));
        // No coalescing: the test blocks the fifth step and reads the four tokens before it one by one.
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port, TimeSpan.Zero).Run(CancellationToken.None), TaskCreationOptions.LongRunning);
        permits.Release(4); // the prompt, then 3 decodes: tokens 4, 5, 6, 7
        for (int i = 0; i < 4; i++) Assert.Equal(4 + i, Assert.IsType<TokenGenerated>(client.Next(T)).TokenId);
        comm.FailWith = "all-reduce #9: right neighbour rank 1 closed the connection";
        permits.Release();
        await Assert.ThrowsAsync<CollectiveException>(() => loop.WaitAsync(T));
        // Nothing failed: the request waits in the port with its tokens.
        Assert.False(client.Events.TryTake(out var early, TimeSpan.FromMilliseconds(100)), $"unexpected {early}");
        Assert.Equal(1, port.Suspended);

        // The ring is back (a new communicator): the next loop takes the suspended scheduler and carries on.
        var comm2 = new FakeCollectives(0, 2);
        var engine2 = new FakeEngine(comm2);
        var resumed = port.TakeSuspended()!;
        Assert.Equal(0, port.Suspended);
        using var stop = new CancellationTokenSource();
        var loop2 = Task.Factory.StartNew(() => new StepLoop(engine2, comm2, resumed, port).Run(stop.Token), TaskCreationOptions.LongRunning);
        var events = client.UntilDone(T);
        var done = Assert.IsType<GenerationCompleted>(events[^1]);
        Assert.Equal(Enumerable.Range(4, 12).ToArray(), done.TokenIds);
        Assert.Equal(Enumerable.Range(4, 12).ToArray()[4..], events.OfType<TokenGenerated>().Select(t => t.TokenId));
        Assert.Equal(Enumerable.Range(4, 8), events.OfType<TokenGenerated>().Select(t => t.Index)); // no index repeated or skipped
        Assert.Equal(3 + 12 - 1, done.PositionAfter);

        // The rebuild replayed the prompt and every generated token but the last (positions 0-5, in chunks of 4,
        // sampling nothing), then decoded the last one at position 6.
        List<StepPlan> plans;
        lock (engine2.Calls) plans = engine2.Calls.Select(c => c.Plan).ToList();
        var first = plans.Take(3).Select(p => p.Sequences.Single()).Select(q => (q.StartPosition, string.Join(",", q.Tokens), q.NeedsLogits));
        Assert.Equal(new[] { (0, "1,2,3,4", false), (4, "5,6", false), (6, "7", true) }, first);
        stop.Cancel();
        await loop2.WaitAsync(T);
    }

    [Fact]
    public async Task Suspended_requests_fail_with_the_reason_when_the_ring_does_not_come_back_and_later_suspensions_fail_at_once()
    {
        var port = new ServingPort();
        var comm = new FakeCollectives(0, 2);
        var engine = new FakeEngine(comm);
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        var client = new RecordingClient();
        port.Submit(new ServingRequest("r", [1], new SamplingSpec(MaxTokens: 40), new GreedyPickers().Create(new SamplingSpec()), client));
        using var suspend = new CancellationTokenSource();
        using var permits = new SemaphoreSlim(0);
        engine.Steps = permits;
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port).Run(CancellationToken.None, suspend.Token), TaskCreationOptions.LongRunning);
        permits.Release();
        Assert.IsType<TokenGenerated>(client.Next(T));
        suspend.Cancel(); // the coordinator closes the ring under the loop
        permits.Release(100);
        await loop.WaitAsync(T);
        Assert.Equal(1, port.Suspended);

        port.FailQueued("rank 1 did not come back within the recovery timeout of 30 s (rank 1 is gone)");
        var failed = Assert.IsType<GenerationFailed>(client.UntilDone(T)[^1]);
        Assert.Equal("rank 1 did not come back within the recovery timeout of 30 s (rank 1 is gone)", failed.Reason);
        Assert.Equal(0, port.Suspended);

        // Until the cluster serves again, a loop that loses its ring fails its requests at once.
        var late = new RecordingClient();
        var s2 = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        Assert.Null(s2.Submit(new ServingRequest("late", [1], new SamplingSpec(MaxTokens: 4), new GreedyPickers().Create(new SamplingSpec()), late)));
        port.Suspend(s2);
        Assert.Equal("rank 1 did not come back within the recovery timeout of 30 s (rank 1 is gone)",
            Assert.IsType<GenerationFailed>(late.Next(T)).Reason);
        port.Resume();
        var later = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        port.Suspend(later);
        Assert.Same(later, port.TakeSuspended());
    }

    [Fact]
    public async Task A_step_error_that_is_not_the_rings_still_fails_every_request()
    {
        var comm = new FakeCollectives(0, 2);
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        var client = new RecordingClient();
        port.Submit(new ServingRequest("r", [1], new SamplingSpec(MaxTokens: 4), new GreedyPickers().Create(new SamplingSpec()), client));
        var loop = Task.Factory.StartNew(() => new StepLoop(new BrokenEngine(), comm, scheduler, port).Run(CancellationToken.None), TaskCreationOptions.LongRunning);
        // Replaying would only fail again: a model error is the request's end, not the ring's.
        var failed = Assert.IsType<GenerationFailed>(client.UntilDone(T)[^1]);
        Assert.Equal("the step failed: token id 1 is outside the vocabulary", failed.Reason);
        Assert.Equal(0, port.Suspended);
        await Assert.ThrowsAsync<InvalidDataException>(() => loop.WaitAsync(T));
    }

    private sealed class BrokenEngine : Engine.IShardEngine
    {
        public StepResult Execute(StepPlan plan) => throw new InvalidDataException("token id 1 is outside the vocabulary");
        public int KvBlocks => 64;
        public int KvBlockSize => 4;
        public int ContextLength => 64;
        public void Dispose() { }
    }
}

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
    public async Task A_ring_failure_fails_every_running_request_with_the_rings_error()
    {
        var comm = new FakeCollectives(0, 2);
        var engine = new FakeEngine(comm);
        var port = new ServingPort();
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        var client = new RecordingClient();
        using var permits = new SemaphoreSlim(0);
        engine.Steps = permits;
        port.Submit(new ServingRequest("r", [1], new SamplingSpec(MaxTokens: 40), new GreedyPickers().Create(new SamplingSpec()), client));
        var loop = Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, port).Run(CancellationToken.None), TaskCreationOptions.LongRunning);
        permits.Release();
        Assert.IsType<TokenGenerated>(client.Next(T));
        comm.FailWith = "all-reduce #9: right neighbour rank 1 closed the connection";
        permits.Release(100);
        var failed = Assert.IsType<GenerationFailed>(client.UntilDone(T)[^1]);
        Assert.Equal("the ring failed: all-reduce #9: right neighbour rank 1 closed the connection", failed.Reason);
        await Assert.ThrowsAsync<CollectiveException>(() => loop.WaitAsync(T));
    }
}

using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;

namespace ActorRing.Actors.Tests;

/// <summary>The scheduler alone: admission order and limits, the per-step token budget, KV reservation and
/// refusals, and every stop check.</summary>
public sealed class SchedulerTests
{
    private static ServingRequest Request(string id, int[] prompt, int maxTokens = 4, int[]? stop = null, RecordingClient? client = null) =>
        new(id, prompt, new SamplingSpec(MaxTokens: maxTokens, StopTokenIds: stop), new GreedyPickers().Create(new SamplingSpec()), client ?? new RecordingClient());

    /// <summary>A result whose logits make each sampled sequence pick <paramref name="pick"/>(its sequence id).</summary>
    private static StepResult Picks(StepPlan plan, Func<SequenceStep, int> pick) =>
        new(plan.Sequences.Where(s => s.NeedsLogits).Select(s =>
        {
            var l = new float[32];
            l[pick(s)] = 1;
            return l;
        }).ToArray(), 1);

    private static IReadOnlyList<ServingEvent> Run(Scheduler scheduler, StepPlan plan, int token = 7) =>
        scheduler.Complete(plan, Picks(plan, _ => token), 1);

    [Fact]
    public void Admits_in_arrival_order_up_to_max_batch_and_the_next_waits_for_a_finished_one()
    {
        var s = new Scheduler(new SchedulerOptions(MaxBatch: 2), new KvBlockPool(100, 4), 64);
        Assert.Null(s.Submit(Request("a", [1, 2], maxTokens: 1)));
        Assert.Null(s.Submit(Request("b", [3], maxTokens: 2)));
        Assert.Null(s.Submit(Request("c", [4], maxTokens: 1)));
        var p1 = s.Plan(1)!;
        Assert.Equal(new[] { 0, 1 }, p1.Sequences.Select(q => q.SequenceId));
        Assert.Equal((2, 1), (s.Running, s.Waiting));
        var events = Run(s, p1);
        // "a" reached max_tokens with its first token; "b" needs one more.
        Assert.Equal(new[] { "a", "a", "b" }, events.Select(e => e.Request.RequestId));
        Assert.Equal("length", Assert.IsType<GenerationCompleted>(events[1].Message).FinishReason);
        var p2 = s.Plan(2)!;
        // b decodes (its sampled token, at position 1); c is admitted and prefills its prompt.
        Assert.Equal(new[] { (1, 1, 7), (2, 0, 4) }, p2.Sequences.Select(q => (q.SequenceId, q.StartPosition, q.Tokens[0])));
    }

    [Fact]
    public void A_step_takes_every_decode_first_then_prompt_chunks_within_the_token_budget()
    {
        var s = new Scheduler(new SchedulerOptions(MaxBatch: 4, PrefillChunk: 4, StepTokens: 6), new KvBlockPool(100, 4), 64);
        s.Submit(Request("short", [1], maxTokens: 10));
        var p1 = s.Plan(1)!;
        Run(s, p1);
        s.Submit(Request("long", Enumerable.Range(1, 10).ToArray(), maxTokens: 2));
        s.Submit(Request("next", [5, 6, 7], maxTokens: 2));
        var p2 = s.Plan(2)!;
        // 1 decode + a 4-token chunk of "long" + 1 token of "next": 6 tokens, the budget.
        Assert.Equal(new[] { (0, 1), (1, 4), (2, 1) }, p2.Sequences.Select(q => (q.SequenceId, q.Tokens.Length)));
        Assert.Equal(new[] { true, false, false }, p2.Sequences.Select(q => q.NeedsLogits));
        Run(s, p2);
        var p3 = s.Plan(3)!;
        Assert.Equal(new[] { (0, 2, 1), (1, 4, 4), (2, 1, 1) }, p3.Sequences.Select(q => (q.SequenceId, q.StartPosition, q.Tokens.Length)));
        Run(s, p3);
        var p4 = s.Plan(4)!;
        // The last 2 tokens of "long" end its prompt: that chunk is sampled; "next" finishes its prompt too.
        Assert.Equal(new[] { (0, 3, 1, true), (1, 8, 2, true), (2, 2, 1, true) },
            p4.Sequences.Select(q => (q.SequenceId, q.StartPosition, q.Tokens.Length, q.NeedsLogits)));
        // Each plan carries only the blocks its positions reach.
        Assert.Equal(3, p4.Sequences[1].BlockTable.Length);
    }

    [Fact]
    public void Reserves_kv_blocks_at_admission_keeps_the_head_first_and_refuses_what_can_never_fit()
    {
        var pool = new KvBlockPool(4, 4);
        var s = new Scheduler(new SchedulerOptions(MaxBatch: 8), pool, 64);
        // 5 prompt tokens + 8 - 1 = 12 positions: 3 blocks, reserved at once.
        s.Submit(Request("big", [1, 2, 3, 4, 5], maxTokens: 8));
        s.Submit(Request("bigger", [1, 2, 3, 4, 5], maxTokens: 4)); // 2 blocks: must wait
        s.Submit(Request("small", [1], maxTokens: 1));              // 1 block would fit, but may not overtake
        var p1 = s.Plan(1)!;
        Assert.Single(p1.Sequences);
        Assert.Equal(1, pool.Free);
        Assert.Equal(2, s.Waiting);
        string? refusal = s.Submit(Request("huge", new int[10], maxTokens: 10));
        Assert.Equal("the request needs 5 KV blocks (19 positions: 10 prompt tokens + max_tokens 10 - 1, in blocks of 4) but the whole cache has 4 blocks (16 positions); lower max_tokens or give the server a larger --kv-cache-tokens", refusal);
        Assert.Equal("the prompt has 65 tokens but the context holds 64; shorten the prompt or load with a longer --context",
            s.Submit(Request("long", new int[65])));
        s.Cancel("big");
        s.Plan(2);
        Assert.Equal(4 - 2 - 1, pool.Free); // big's blocks came back; bigger and small were admitted in order
        Assert.Equal(0, s.Waiting);
    }

    [Fact]
    public void Stops_on_a_stop_id_a_stop_rule_max_tokens_a_full_context_and_cancellation()
    {
        var s = new Scheduler(new SchedulerOptions(), new KvBlockPool(100, 4), contextLength: 6);
        s.Submit(Request("eos", [1], maxTokens: 9, stop: [7]));
        s.Submit(Request("rule", [1], maxTokens: 9) with { StopRule = new StopAt(7) });
        s.Submit(Request("context", [1, 2, 3, 4], maxTokens: 9, stop: [99]));
        s.Submit(Request("waiting-cancelled", [1]));
        s.Cancel("waiting-cancelled");
        var p1 = s.Plan(1)!;
        var finished = s.TakeEvents().Select(e => e.Message).OfType<GenerationCompleted>().Single();
        Assert.Equal(("waiting-cancelled", "cancelled", 0), (finished.RequestId, finished.FinishReason, finished.TokenIds.Length));

        var events = Run(s, p1, token: 7).Select(e => e.Message).OfType<GenerationCompleted>().ToDictionary(c => c.RequestId);
        Assert.Equal("stop", events["eos"].FinishReason);
        Assert.Equal("stop", events["rule"].FinishReason);
        Assert.Equal(new[] { 7 }, events["eos"].TokenIds);
        // "context": 4 prompt tokens; tokens 2 and 3 go in at positions 4 and 5, then the context (6) is full.
        Run(s, s.Plan(2)!, token: 8);
        var last = Run(s, s.Plan(3)!, token: 9).Select(e => e.Message).OfType<GenerationCompleted>().Single();
        Assert.Equal(("context", "length", 3), (last.RequestId, last.FinishReason, last.TokenIds.Length));
        Assert.True(s.Idle);

        s.Submit(Request("running-cancelled", [1], maxTokens: 9));
        Run(s, s.Plan(4)!);
        s.Cancel("running-cancelled");
        Assert.Null(s.Plan(5));
        var cancelled = s.TakeEvents().Select(e => e.Message).OfType<GenerationCompleted>().Single();
        Assert.Equal(("cancelled", 1), (cancelled.FinishReason, cancelled.TokenIds.Length));
    }

    [Fact]
    public void Every_cancellation_ends_its_request_however_often_it_is_asked_and_wherever_it_lands()
    {
        // Plan only looks for cancelled sequences while some are pending, so each path that settles one must count
        // it exactly once: asked twice, ended by Plan, ended by Complete (cancelled mid-step), or failed.
        var s = new Scheduler(new SchedulerOptions(), new KvBlockPool(100, 4), 64);
        string? Cancelled() => s.TakeEvents().Select(e => e.Message).OfType<GenerationCompleted>().SingleOrDefault(c => c.FinishReason == "cancelled")?.RequestId;

        s.Submit(Request("twice", [1], maxTokens: 9));
        s.Cancel("twice");
        s.Cancel("twice");
        Assert.Null(s.Plan(1));
        Assert.Equal("twice", Cancelled());

        s.Submit(Request("mid-step", [1], maxTokens: 9));
        var p2 = s.Plan(2)!;
        s.Cancel("mid-step");
        var ended = Run(s, p2).Select(e => e.Message).OfType<GenerationCompleted>().Single();
        Assert.Equal(("mid-step", "cancelled"), (ended.RequestId, ended.FinishReason));

        s.Submit(Request("failed", [1], maxTokens: 9));
        s.Cancel("failed");
        s.FailAll("the ring failed");

        s.Submit(Request("later", [1], maxTokens: 9));
        Run(s, s.Plan(3)!);
        s.Cancel("later");
        s.Cancel("unknown");
        Assert.Null(s.Plan(4));
        Assert.Equal("later", Cancelled());
        Assert.True(s.Idle);
    }

    private sealed class StopAt(int token) : IStopRule
    {
        public bool Stops(int t) => t == token;
    }
}

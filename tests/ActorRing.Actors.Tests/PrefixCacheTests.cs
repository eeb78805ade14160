using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;

namespace ActorRing.Actors.Tests;

/// <summary>The prefix cache: the pool's refcounts, keys and LRU eviction, and the scheduler's hits (which blocks
/// a request shares, where its prefill starts, what it reports).</summary>
public sealed class PrefixCacheTests
{
    private static ServingRequest Request(string id, int[] prompt, int maxTokens = 2) =>
        new(id, prompt, new SamplingSpec(MaxTokens: maxTokens), new GreedyPickers().Create(new SamplingSpec()), new RecordingClient());

    private static IReadOnlyList<ServingEvent> Run(Scheduler scheduler, StepPlan plan) =>
        scheduler.Complete(plan, new StepResult(plan.Sequences.Where(s => s.NeedsLogits).Select(_ =>
        {
            var l = new float[32];
            l[7] = 1;
            return l;
        }).ToArray(), 1), 1);

    /// <summary>Runs steps until nothing is left; returns every plan and the completions by request id.</summary>
    private static (List<StepPlan> Plans, Dictionary<string, GenerationCompleted> Done) Drain(Scheduler s, ref long step)
    {
        var plans = new List<StepPlan>();
        var done = new Dictionary<string, GenerationCompleted>();
        while (s.Plan(++step) is { } plan)
        {
            plans.Add(plan);
            foreach (var e in Run(s, plan)) if (e.Message is GenerationCompleted c) done[c.RequestId] = c;
        }
        foreach (var e in s.TakeEvents()) if (e.Message is GenerationCompleted c) done[c.RequestId] = c;
        return (plans, done);
    }

    private static readonly int[] Ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

    [Fact]
    public void A_prompt_that_starts_with_cached_full_blocks_shares_them_and_prefills_only_the_rest()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(new SchedulerOptions(PrefillChunk: 64), pool, 64);
        long step = 0;
        s.Submit(Request("first", Ten));
        var (plans, done) = Drain(s, ref step);
        var firstBlocks = plans[0].Sequences[0].BlockTable;
        Assert.Equal(0, done["first"].CachedPromptTokens);
        // 10 prompt tokens and one fed generated token: positions 0..10, so blocks 0 and 1 are full and cached.
        Assert.Equal(2, pool.Cached);
        Assert.Equal(16, pool.Free);

        s.Submit(Request("second", [1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 52]));
        (plans, done) = Drain(s, ref step);
        var prefill = plans[0].Sequences[0];
        Assert.Equal(8, prefill.StartPosition);
        Assert.Equal(new[] { 50, 51, 52 }, prefill.Tokens);
        Assert.Equal(firstBlocks[..2], prefill.BlockTable[..2]);
        Assert.Equal(8, done["second"].CachedPromptTokens);

        // The same 8 tokens as the whole prompt: the last token must be fed for its logits, so one block is shared.
        s.Submit(Request("exact", Ten[..8]));
        (plans, done) = Drain(s, ref step);
        Assert.Equal((4, 4), (plans[0].Sequences[0].StartPosition, done["exact"].CachedPromptTokens));

        // Same tokens in the second block after a different first block: a different prefix, no hit.
        s.Submit(Request("other-start", [9, 9, 9, 9, 5, 6, 7, 8, 1]));
        (plans, done) = Drain(s, ref step);
        Assert.Equal((0, 0), (plans[0].Sequences[0].StartPosition, done["other-start"].CachedPromptTokens));
    }

    [Fact]
    public void Generated_tokens_fill_cached_blocks_too_so_a_chats_next_turn_hits_its_answer()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(new SchedulerOptions(), pool, 64);
        long step = 0;
        s.Submit(Request("turn1", [1, 2, 3, 4, 5, 6], maxTokens: 5)); // generates 7 7 7 7 7; positions 0..9 are written
        var (_, done) = Drain(s, ref step);
        Assert.Equal(new[] { 7, 7, 7, 7, 7 }, done["turn1"].TokenIds);
        s.Submit(Request("turn2", [1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 20, 21]));
        var (plans, done2) = Drain(s, ref step);
        Assert.Equal(8, plans[0].Sequences[0].StartPosition);
        Assert.Equal(8, done2["turn2"].CachedPromptTokens);
    }

    [Fact]
    public void Running_requests_share_blocks_and_the_blocks_come_back_only_when_both_let_go()
    {
        var pool = new KvBlockPool(8, 4);
        var s = new Scheduler(new SchedulerOptions(), pool, 64);
        s.Submit(Request("a", Ten, maxTokens: 6)); // 15 positions: 4 blocks
        Run(s, s.Plan(1)!);                       // a's prompt is in: blocks 0 and 1 are cached
        s.Submit(Request("b", Ten, maxTokens: 6)); // shares 2, takes 2 of its own
        var p2 = s.Plan(2)!;
        Assert.Equal(2, s.Running);
        Assert.Equal(p2.Sequences[0].BlockTable[..2], p2.Sequences[1].BlockTable[..2]);
        Assert.Equal(8 - 4 - 2, pool.Free);
        Run(s, p2);
        s.Cancel("a");
        Run(s, s.Plan(3)!);
        Assert.Equal(1, s.Running);
        Assert.Equal(8 - 4, pool.Free); // a's own two blocks are back; the shared two are still b's
        s.Cancel("b");
        Assert.Null(s.Plan(4));
        Assert.Equal(8, pool.Free);
        Assert.True(pool.Cached >= 2);
    }

    [Fact]
    public void A_lost_ring_forgets_every_cached_prefix_and_the_rebuild_rewrites_and_registers_the_shared_blocks()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(new SchedulerOptions(PrefillChunk: 64), pool, 64);
        s.Submit(Request("a", Ten, maxTokens: 6));
        Run(s, s.Plan(1)!);                        // a's prompt is in: blocks 0 and 1 are cached
        s.Submit(Request("b", Ten, maxTokens: 6)); // b shares them
        var p2 = s.Plan(2)!;
        Assert.Equal(8, p2.Sequences[1].StartPosition);
        Run(s, p2);
        Assert.Equal(2, pool.Cached);

        // The ring breaks: a restarted rank holds nothing, so no cached prefix may be handed out any more.
        Assert.Equal(2, s.Suspend());
        Assert.Equal(0, pool.Cached);
        s.Submit(Request("c", Ten));
        var rebuild = s.Plan(3)!;
        // Both running sequences replay from position 0 (prompt and the token each fed since), into their own
        // tables, which still share blocks 0 and 1; c finds nothing cached and prefills its whole prompt.
        Assert.Equal(new[] { (0, 0, 11), (1, 0, 10), (2, 0, 10) },
            rebuild.Sequences.Select(q => (q.SequenceId, q.StartPosition, q.Tokens.Length)));
        Assert.Equal(rebuild.Sequences[0].BlockTable[..2], rebuild.Sequences[1].BlockTable[..2]);
        Assert.NotEqual(rebuild.Sequences[0].BlockTable[0], rebuild.Sequences[2].BlockTable[0]);
        Run(s, rebuild);
        // Written again, the blocks are cached again, for requests after the recovery.
        Assert.Equal(2, pool.Cached);
        s.Submit(Request("d", Ten));
        var p4 = s.Plan(4)!;
        Assert.Equal(8, p4.Sequences.Single(q => q.SequenceId == 3).StartPosition);
    }

    [Fact]
    public void Without_prefix_caching_every_prompt_is_prefilled_from_the_start()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(new SchedulerOptions(PrefixCaching: false), pool, 64);
        long step = 0;
        s.Submit(Request("first", Ten));
        Drain(s, ref step);
        s.Submit(Request("again", Ten));
        var (plans, done) = Drain(s, ref step);
        Assert.Equal(0, plans[0].Sequences[0].StartPosition);
        Assert.Equal(0, done["again"].CachedPromptTokens);
        Assert.Equal(0, pool.Cached);
    }

    [Fact]
    public void The_pool_evicts_the_least_recently_released_cached_blocks_and_only_when_no_block_is_free()
    {
        var pool = new KvBlockPool(4, 2);
        var a = pool.TryAllocate(2)!;
        var chain = pool.Register(KvBlockPool.PrefixChain.Empty, a[0], [1, 2])!.Value;
        pool.Register(chain, a[1], [3, 4]);
        var b = pool.TryAllocate(1)!;
        pool.Register(KvBlockPool.PrefixChain.Empty, b[0], [5, 6]);
        pool.Release(a); // a's tail goes first in line, then its head
        pool.Release(b); // released last: evicted last
        Assert.Equal((4, 3), (pool.Free, pool.Cached));

        // One free block is left, so taking it evicts nothing.
        var c = pool.TryAllocate(1)!;
        Assert.Equal(3, pool.Cached);
        // The next allocation evicts the least recently released: a's second block, then a's first.
        var d = pool.TryAllocate(1)!;
        Assert.Equal(a[1], d[0]);
        var (hit, _) = pool.AcquirePrefix([1, 2, 3, 4], maxBlocks: 2);
        Assert.Equal(new[] { a[0] }, hit); // [1, 2] still cached, [3, 4] gone
        Assert.Equal(1, pool.Free);        // b's cached block is all that is left to take
        var e = pool.TryAllocate(1)!;
        Assert.Equal(b[0], e[0]);
        Assert.Empty(pool.AcquirePrefix([5, 6], 1).Blocks);
        Assert.Null(pool.TryAllocate(1));

        var ex = Assert.Throws<InvalidOperationException>(() => pool.Release([c[0], c[0]]));
        Assert.Equal($"block {c[0]} was released twice", ex.Message);
    }

    [Fact]
    public void A_held_cached_block_is_never_evicted_and_forgetting_the_cache_frees_the_unheld_ones()
    {
        var pool = new KvBlockPool(2, 2);
        var a = pool.TryAllocate(1)!;
        pool.Register(KvBlockPool.PrefixChain.Empty, a[0], [1, 2]);
        var (held, chain) = pool.AcquirePrefix([1, 2, 9], maxBlocks: 1);
        Assert.Equal(a, held);
        Assert.Equal(1, chain.Blocks);
        pool.Release(a);                 // still held through the hit
        Assert.Equal(1, pool.Free);
        Assert.Null(pool.TryAllocate(2)); // the held cached block cannot be taken
        pool.Release(held);
        Assert.Equal(2, pool.Free);
        pool.ForgetCached();
        Assert.Equal((2, 0), (pool.Free, pool.Cached));
        Assert.Empty(pool.AcquirePrefix([1, 2, 9], 1).Blocks);
        Assert.Equal(new[] { 0, 1 }, pool.TryAllocate(2));
    }
}

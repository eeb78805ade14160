using ActorRing.Model.Tests.Support;

namespace ActorRing.Model.Tests;

/// <summary>The KV cache sized from free memory: the share, the cap, the refusal with the figures, and a real load.</summary>
public sealed class KvMemoryBudgetTests
{
    private const long Mib = 1 << 20;

    [Fact]
    public void Takes_its_share_of_free_memory_up_to_the_cap()
    {
        var budget = new KvMemoryBudget(0.5, MaxTokens: 100_000, MinTokens: 512);
        // Half of 100 MiB at 1 KiB a position: 51200 positions, under the cap.
        Assert.Equal((51_200, "51200 positions (50 MiB; 0.5 of MemAvailable 100 MiB holds 51200 positions at 1024 bytes each)"),
            budget.Resolve(1024, 100 * Mib));
        var (capped, description) = budget.Resolve(1024, 1000 * Mib);
        Assert.Equal(100_000, capped);
        Assert.EndsWith("capped at 100000)", description);
    }

    [Fact]
    public void Too_little_free_memory_for_one_full_context_is_refused_with_the_figures()
    {
        var budget = new KvMemoryBudget(0.5, MaxTokens: 100_000, MinTokens: 4096);
        var e = Assert.Throws<ModelLoadException>(() => budget.Resolve(4096, 10 * Mib));
        Assert.Equal("the KV cache is too small for one sequence of the full context: 0.5 of MemAvailable 10 MiB holds 1280 positions at 4096 bytes each, and the context is 4096 positions; free memory, load with a shorter --context, or give --kv-cache-tokens 4096 or more", e.Message);
        e = Assert.Throws<ModelLoadException>(() => budget.Resolve(4096, null));
        Assert.StartsWith("cannot read free memory (MemAvailable in /proc/meminfo)", e.Message);
    }

    [Fact]
    public void A_rank_sizes_its_cache_once_its_weights_are_in_and_says_so()
    {
        Assert.NotNull(KvMemoryBudget.ReadAvailableBytes()); // Linux
        var said = new List<string>();
        InProcessGroup.Run(1, comm =>
        {
            using var model = ShardedLlama.Load(TestPaths.Hf, comm, new ModelLoadOptions
            {
                ContextLength = 64, Threads = 1, KvCacheFromMemory = new KvMemoryBudget(0.5, MaxTokens: 4 * 64, MinTokens: 64), Log = said.Add,
            });
            Assert.Equal(4 * 64 / ShardedLlama.KvBlockSize, model.KvBlocks);
            return 0;
        });
        Assert.Contains(said, line => line.StartsWith("rank 0: KV cache: 256 positions (", StringComparison.Ordinal) && line.EndsWith("capped at 256)", StringComparison.Ordinal));
    }
}

using ActorRing.Host.Cli;
using ActorRing.Transport;

namespace ActorRing.Host.Commands;

/// <summary>
/// Communicators for N ranks as threads of this process. One rank needs no peers: every collective is the
/// identity. (Several ranks run over the loopback ring transport.)
/// </summary>
internal static class LocalRanks
{
    public static Task<ICollectives[]> ConnectAsync(int worldSize, CancellationToken ct)
    {
        if (worldSize == 1) return Task.FromResult<ICollectives[]>([new SingleRankCollectives()]);
        throw new UsageException($"--world-size {worldSize} needs the ring transport, which this build does not include yet; use --world-size 1");
    }

    private sealed class SingleRankCollectives : ICollectives
    {
        public int Rank => 0;
        public int WorldSize => 1;
        public void AllReduceSum(Span<float> data) { }
        public void AllReduceSum(Span<Half> data) { }
        public void AllReduceSum(Span<BFloat16> data) { }
        public unsafe void AllReduceSum(void* data, long count, DType dtype) { }
        public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged => local.CopyTo(output);
        public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged => local.CopyTo(output);
        public void Broadcast<T>(Span<T> data, int root) where T : unmanaged { }
        public void Barrier() { }
        public void Dispose() { }
    }
}

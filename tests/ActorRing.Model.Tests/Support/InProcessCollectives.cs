using System.Runtime.InteropServices;
using ActorRing.Transport;

namespace ActorRing.Model.Tests.Support;

/// <summary>
/// Test fake of the ring: N ranks as threads of one process exchanging through shared arrays and a barrier.
/// Sums run in rank order on every rank, so all ranks get bit-identical results, like the real ring.
/// </summary>
internal sealed class InProcessGroup
{
    public readonly Barrier Barrier;
    public readonly object?[] Slots;
    public TimeSpan Deadline { get; }

    public InProcessGroup(int worldSize, TimeSpan? deadline = null)
    {
        Barrier = new Barrier(worldSize);
        Slots = new object?[worldSize];
        Deadline = deadline ?? TimeSpan.FromSeconds(60);
    }

    public int WorldSize => Slots.Length;

    public ICollectives Member(int rank) => new InProcessCollectives(this, rank);

    /// <summary>Runs <paramref name="body"/> on one dedicated thread per rank with that rank's collectives.</summary>
    public static T[] Run<T>(int worldSize, Func<ICollectives, T> body)
    {
        var group = new InProcessGroup(worldSize);
        return RankThreads.Run(worldSize, rank =>
        {
            using var comm = group.Member(rank);
            return body(comm);
        });
    }
}

internal sealed class InProcessCollectives(InProcessGroup group, int rank) : ICollectives
{
    public int Rank => rank;
    public int WorldSize => group.WorldSize;

    private void Sync()
    {
        if (!group.Barrier.SignalAndWait(group.Deadline))
            throw new CollectiveException($"rank {rank}: in-process barrier timed out");
    }

    /// <summary>Publishes this rank's data, waits for all, lets <paramref name="read"/> see every rank's data, waits again.</summary>
    private void Exchange(object mine, Action<object?[]> read)
    {
        group.Slots[rank] = mine;
        Sync();
        read(group.Slots);
        Sync();
    }

    public void AllReduceSum(Span<float> data)
    {
        var result = new float[data.Length];
        Exchange(data.ToArray(), all =>
        {
            foreach (float[] part in all.Cast<float[]>())
                for (int i = 0; i < result.Length; i++) result[i] += part[i];
        });
        result.CopyTo(data);
    }

    public void AllReduceSum(Span<Half> data)
    {
        var f = new float[data.Length];
        for (int i = 0; i < f.Length; i++) f[i] = (float)data[i];
        AllReduceSum(f);
        for (int i = 0; i < f.Length; i++) data[i] = (Half)f[i];
    }

    public void AllReduceSum(Span<BFloat16> data)
    {
        var f = new float[data.Length];
        for (int i = 0; i < f.Length; i++) f[i] = data[i].ToSingle();
        AllReduceSum(f);
        for (int i = 0; i < f.Length; i++) data[i] = BFloat16.FromSingle(f[i]);
    }

    public unsafe void AllReduceSum(void* data, long count, DType dtype)
    {
        switch (dtype)
        {
            case DType.F32: AllReduceSum(new Span<float>(data, checked((int)count))); break;
            case DType.F16: AllReduceSum(new Span<Half>(data, checked((int)count))); break;
            case DType.BF16: AllReduceSum(new Span<BFloat16>(data, checked((int)count))); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged
    {
        if (local.Length != counts[rank]) throw new CollectiveException($"rank {rank}: local length {local.Length} != counts[{rank}] {counts[rank]}");
        var result = new T[counts.ToArray().Sum()];
        Exchange(local.ToArray(), all =>
        {
            int at = 0;
            foreach (T[] part in all.Cast<T[]>())
            {
                part.CopyTo(result, at);
                at += part.Length;
            }
        });
        result.CopyTo(output);
    }

    public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged
    {
        if (rank == root)
        {
            AllGather(local, output, counts);
        }
        else
        {
            if (local.Length != counts[rank]) throw new CollectiveException($"rank {rank}: local length {local.Length} != counts[{rank}] {counts[rank]}");
            Exchange(local.ToArray(), _ => { });
        }
    }

    public void Broadcast<T>(Span<T> data, int root) where T : unmanaged
    {
        T[]? result = null;
        Exchange(data.ToArray(), all => result = (T[])all[root]!);
        result.CopyTo(data);
    }

    public void Barrier() => Sync();

    public void Dispose() { }
}

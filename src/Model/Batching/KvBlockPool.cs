namespace ActorRing.Model.Batching;

/// <summary>
/// Rank 0's book of the paged KV cache: which of the <see cref="Total"/> blocks are free. Every rank holds
/// the same number of blocks (each with its own KV heads), and plans name blocks by index, so this one free
/// list on rank 0 governs the cache of every rank. Allocation takes the lowest free blocks first, so a
/// quiet server reuses the same warm memory.
/// </summary>
public sealed class KvBlockPool
{
    private readonly SortedSet<int> _free;

    public KvBlockPool(int total, int blockSize)
    {
        if (total < 1) throw new ArgumentOutOfRangeException(nameof(total), total, "the KV cache needs at least one block");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a block holds at least one position");
        Total = total;
        BlockSize = blockSize;
        _free = new SortedSet<int>(Enumerable.Range(0, total));
    }

    public int Total { get; }
    public int BlockSize { get; }
    public int Free => _free.Count;

    /// <summary>Blocks needed to hold <paramref name="positions"/> positions.</summary>
    public int BlocksFor(int positions) => (positions + BlockSize - 1) / BlockSize;

    /// <summary><paramref name="count"/> blocks, or null (nothing taken) when fewer are free.</summary>
    public int[]? TryAllocate(int count)
    {
        if (count > _free.Count) return null;
        var blocks = new int[count];
        for (int i = 0; i < count; i++)
        {
            blocks[i] = _free.Min;
            _free.Remove(blocks[i]);
        }
        return blocks;
    }

    public void Release(IEnumerable<int> blocks)
    {
        foreach (int b in blocks)
        {
            if ((uint)b >= (uint)Total) throw new ArgumentOutOfRangeException(nameof(blocks), b, $"block {b} is outside [0, {Total})");
            if (!_free.Add(b)) throw new InvalidOperationException($"block {b} was released twice");
        }
    }
}

namespace ActorRing.Model.Batching;

/// <summary>
/// Rank 0's book of the paged KV cache: which of the <see cref="Total"/> blocks are owned, free or cached.
/// Every rank holds at least this many blocks (each with its own KV heads), and plans name blocks by index, so
/// this one book on rank 0 governs the cache of every rank: what is cached, shared or evicted is rank 0's
/// decision and reaches the others as the block tables and start positions of the plans.
/// <para>
/// Prefix caching: a FULL block that a sequence has written can be <see cref="Register"/>ed under a hash chained
/// over its token ids and its predecessor's hash, so the key of block i stands for the whole prefix up to the
/// end of block i. A later sequence whose prompt starts with the same tokens takes those blocks
/// (<see cref="AcquirePrefix"/>) and skips their prefill; shared blocks are read-only, because a sequence only
/// ever writes positions past its cached prefix. Blocks are refcounted; a cached block nobody holds stays in the
/// cache, least recently released first in line for eviction, until an allocation finds no free block.
/// Lookups compare the stored tokens and the predecessor's identity too, so a hash collision is a miss, never
/// a wrong prefix.
/// </para>
/// Allocation takes the lowest free blocks first, so a quiet server reuses the same warm memory.
/// </summary>
public sealed class KvBlockPool
{
    private readonly SortedSet<int> _free;
    private readonly int[] _refs;
    private readonly CachedBlock?[] _cached;
    private readonly Dictionary<ulong, int> _byHash;
    // Cached blocks with no holder, least recently released first; the node of each, for O(1) removal on a hit.
    private readonly LinkedList<int> _evictable = new();
    private readonly LinkedListNode<int>?[] _evictableNode;
    private long _nextContent = 1;

    /// <summary>What a cached block holds: its chained hash, a unique id of its content (so a child can name its
    /// predecessor even after the predecessor's block index is reused), the predecessor's content id (0 for a
    /// first block) and its tokens.</summary>
    private sealed record CachedBlock(ulong Hash, long Content, long Parent, int[] Tokens);

    public KvBlockPool(int total, int blockSize)
    {
        if (total < 1) throw new ArgumentOutOfRangeException(nameof(total), total, "the KV cache needs at least one block");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a block holds at least one position");
        Total = total;
        BlockSize = blockSize;
        _free = new SortedSet<int>(Enumerable.Range(0, total));
        _refs = new int[total];
        _cached = new CachedBlock?[total];
        // Sized for every block at once: a resize on the step loop's path cost ~1.3 ms (its first call is compiled
        // then, tiered compilation being off), a whole decode step's worth of time many times over.
        _byHash = new Dictionary<ulong, int>(total);
        _evictableNode = new LinkedListNode<int>?[total];
    }

    public int Total { get; }
    public int BlockSize { get; }

    /// <summary>Blocks an allocation can have: the free ones and the cached ones nobody holds (evicted on demand).</summary>
    public int Free => _free.Count + _evictable.Count;

    /// <summary>Blocks holding a registered prefix (held or not).</summary>
    public int Cached => _byHash.Count;

    /// <summary>Blocks needed to hold <paramref name="positions"/> positions.</summary>
    public int BlocksFor(int positions) => (positions + BlockSize - 1) / BlockSize;

    /// <summary><paramref name="count"/> blocks, or null (nothing taken) when fewer are free. Free blocks go first;
    /// then the least recently released cached blocks are evicted.</summary>
    public int[]? TryAllocate(int count)
    {
        if (count > Free) return null;
        var blocks = new int[count];
        for (int i = 0; i < count; i++)
        {
            int b;
            if (_free.Count > 0)
            {
                b = _free.Min;
                _free.Remove(b);
            }
            else
            {
                b = _evictable.First!.Value;
                TakeFromEvictable(b);
                var evicted = _cached[b]!;
                _byHash.Remove(evicted.Hash);
                _cached[b] = null;
            }
            _refs[b] = 1;
            blocks[i] = b;
        }
        return blocks;
    }

    /// <summary>Drops one hold on each block. A block nobody holds any more becomes free, or, when it is cached,
    /// evictable. Release a sequence's blocks in table order: later blocks are then evicted before earlier ones,
    /// which other prefixes are likelier to share.</summary>
    public void Release(IEnumerable<int> blocks)
    {
        var list = blocks as IReadOnlyList<int> ?? blocks.ToArray();
        foreach (int b in list)
            if ((uint)b >= (uint)Total) throw new ArgumentOutOfRangeException(nameof(blocks), b, $"block {b} is outside [0, {Total})");
        // Last block first, so that the LRU list evicts a sequence's tail before its head.
        for (int i = list.Count - 1; i >= 0; i--)
        {
            int b = list[i];
            if (_refs[b] == 0) throw new InvalidOperationException($"block {b} was released twice");
            if (--_refs[b] > 0) continue;
            if (_cached[b] is null) _free.Add(b);
            else _evictableNode[b] = _evictable.AddLast(b);
        }
    }

    /// <summary>
    /// Where a sequence's chain of registered blocks stands: how many of its blocks are registered (or found
    /// cached), and the content id and hash of the last, which the next block's key continues from.
    /// </summary>
    public readonly record struct PrefixChain(int Blocks, long Content, ulong Hash)
    {
        public static readonly PrefixChain Empty = new(0, 0, Seed);
    }

    /// <summary>
    /// The longest run of cached blocks that <paramref name="tokens"/> starts with, at most
    /// <paramref name="maxBlocks"/> of them, each now held by the caller (release them with the sequence's
    /// other blocks); and the chain to continue registering from.
    /// </summary>
    public (int[] Blocks, PrefixChain Chain) AcquirePrefix(ReadOnlySpan<int> tokens, int maxBlocks)
    {
        var found = new List<int>();
        var chain = PrefixChain.Empty;
        for (int i = 0; i < maxBlocks && (i + 1) * BlockSize <= tokens.Length; i++)
        {
            var blockTokens = tokens.Slice(i * BlockSize, BlockSize);
            ulong hash = Chain(chain.Hash, blockTokens);
            if (!_byHash.TryGetValue(hash, out int b)) break;
            var entry = _cached[b]!;
            if (entry.Parent != chain.Content || !blockTokens.SequenceEqual(entry.Tokens)) break; // a collision: a miss
            if (_refs[b]++ == 0) TakeFromEvictable(b);
            found.Add(b);
            chain = new PrefixChain(i + 1, entry.Content, hash);
        }
        return (found.ToArray(), chain);
    }

    /// <summary>
    /// Registers <paramref name="block"/>, which holds block number <paramref name="chain"/>.Blocks of a sequence,
    /// fully written with <paramref name="tokens"/> (<see cref="BlockSize"/> of them), as the cached successor
    /// of the chain; returns the chain one block longer. When an identical prefix is cached already (another
    /// sequence wrote the same tokens), the chain continues through that one and this block stays private.
    /// When the key is taken by a different prefix (a hash collision), the chain ends: returns null, and the
    /// sequence's later blocks are not cached.
    /// </summary>
    public PrefixChain? Register(PrefixChain chain, int block, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != BlockSize) throw new ArgumentException($"a cached block holds exactly {BlockSize} tokens, got {tokens.Length}", nameof(tokens));
        if (_refs[block] == 0) throw new InvalidOperationException($"block {block} is not held, so it cannot be cached");
        ulong hash = Chain(chain.Hash, tokens);
        if (_byHash.TryGetValue(hash, out int existing))
        {
            var entry = _cached[existing]!;
            if (entry.Parent != chain.Content || !tokens.SequenceEqual(entry.Tokens)) return null;
            return new PrefixChain(chain.Blocks + 1, entry.Content, hash);
        }
        if (_cached[block] is not null) // the block was cached under another key: it is being rewritten
            throw new InvalidOperationException($"block {block} is already cached and must not be written again");
        long content = _nextContent++;
        _cached[block] = new CachedBlock(hash, content, chain.Content, tokens.ToArray());
        _byHash[hash] = block;
        return new PrefixChain(chain.Blocks + 1, content, hash);
    }

    /// <summary>Forgets every cached prefix (the ranks' caches no longer hold what was registered, e.g. after the
    /// ring re-formed). Held blocks stay held; unheld cached blocks become free.</summary>
    public void ForgetCached()
    {
        foreach (int b in _evictable) _free.Add(b);
        _evictable.Clear();
        Array.Clear(_evictableNode);
        Array.Clear(_cached);
        _byHash.Clear();
    }

    private void TakeFromEvictable(int b)
    {
        _evictable.Remove(_evictableNode[b]!);
        _evictableNode[b] = null;
    }

    private const ulong Seed = 0xCBF2_9CE4_8422_2325; // FNV-1a's offset basis

    /// <summary>The key of a block: FNV-1a over its token ids, started from its predecessor's key, then mixed
    /// (splitmix64's finalizer) so that nearby prefixes spread over the dictionary.</summary>
    private static ulong Chain(ulong parent, ReadOnlySpan<int> tokens)
    {
        ulong h = parent;
        foreach (int t in tokens)
        {
            h ^= (uint)t;
            h *= 0x0000_0100_0000_01B3;
        }
        h ^= h >> 30;
        h *= 0xBF58_476D_1CE4_E5B9;
        h ^= h >> 27;
        h *= 0x94D0_49BB_1331_11EB;
        return h ^ (h >> 31);
    }
}

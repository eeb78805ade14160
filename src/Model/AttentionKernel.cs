using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace ActorRing.Model;

/// <summary>
/// One query head of a decode step attending over its cached keys and values. Why not TensorPrimitives per
/// cached position: a head dimension is only 64–128 floats, so a call per position per head (two per position:
/// the score and the weighted value) costs more in call overhead than in arithmetic. On llama-160m at 128–230
/// cached positions that was about 58,000 calls and 1.7 ms of a 21 ms step; these loops keep a position's
/// whole row in registers instead.
/// </summary>
internal static class AttentionKernel
{
    /// <summary>
    /// out = softmax(scale · K·q) · V over the cached positions [<paramref name="first"/>, <paramref name="length"/>)
    /// of one sequence's KV head, read through its block table: position l lives in block
    /// <c>blocks[l / blockSize]</c> at row <c>l % blockSize</c>, at byte offset <c>block · blockStride</c> from
    /// <paramref name="keys"/> (and <paramref name="values"/>), which already point at this KV head's rows
    /// within block 0. Rows are [headDim] in <typeparamref name="TCache"/>'s format. <paramref name="first"/>
    /// is 0 for full attention; a sliding window starts later. <paramref name="scores"/> has room for
    /// <paramref name="length"/> floats. The arithmetic is float32, and positions are always summed in
    /// ascending order, so the result does not depend on where the blocks sit. A positive <paramref name="softcap"/>
    /// c (Gemma 2) turns every scaled score s into c·tanh(s / c) before the softmax; 0 leaves them as they are.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Attend<TCache>(float* q, byte* keys, byte* values, int* blocks, int blockSize, long blockStride,
        int first, int length, int headDim, float scale, float softcap, float* scores, float* output)
        where TCache : struct, IWeightFormat
    {
        long row = (long)headDim * TCache.Bytes;
        int count = length - first;
        var p = new Span<float>(scores + first, count);
        if (!Vector256.IsHardwareAccelerated || headDim % Vector256<float>.Count != 0)
        {
            // Portable path for head dimensions the vector loops do not cover.
            for (int l = first; l < length; l++)
            {
                byte* key = keys + blocks[l / blockSize] * blockStride + (l % blockSize) * row;
                float dot = 0;
                for (int k = 0; k < headDim; k++) dot += q[k] * TCache.Load1(key + k * TCache.Bytes);
                scores[l] = dot * scale;
            }
            Softcap(p, softcap);
            TensorPrimitives.SoftMax(p, p);
            for (int c = 0; c < headDim; c++)
            {
                float sum = 0;
                for (int l = first; l < length; l++)
                    sum += scores[l] * TCache.Load1(values + blocks[l / blockSize] * blockStride + (l % blockSize) * row + c * TCache.Bytes);
                output[c] = sum;
            }
            return;
        }

        int eight = 8 * TCache.Bytes;
        for (int l = first; l < length;)
        {
            int inBlock = l % blockSize, end = Math.Min(length, l - inBlock + blockSize);
            byte* key = keys + blocks[l / blockSize] * blockStride + inBlock * row;
            byte* ahead = NextBlockRow(keys, blocks, l, blockSize, blockStride, length, inBlock * row);
            for (; l < end; l++, key += row, ahead += row)
            {
                Prefetch(ahead, row);
                byte* k8 = key;
                var s0 = Vector256<float>.Zero;
                var s1 = s0;
                int k = 0;
                for (; k + 16 <= headDim; k += 16, k8 += 2 * eight)
                {
                    s0 = Vector256.FusedMultiplyAdd(TCache.Load8(k8), Vector256.Load(q + k), s0);
                    s1 = Vector256.FusedMultiplyAdd(TCache.Load8(k8 + eight), Vector256.Load(q + k + 8), s1);
                }
                if (k < headDim) s0 = Vector256.FusedMultiplyAdd(TCache.Load8(k8), Vector256.Load(q + k), s0);
                scores[l] = Vector256.Sum(s0 + s1) * scale;
            }
        }
        Softcap(p, softcap);
        TensorPrimitives.SoftMax(p, p);

        // The weighted sum of value rows, 64 columns at a time held in eight registers across all positions: each
        // register's FMAs depend on its previous one (4 cycles), so eight are needed to keep two FMA pipes busy,
        // and one pass reads each 64-wide row once. Each column still sums its positions in ascending order. Head
        // dimensions that are not a multiple of 64 (none in the supported families: 64 and 128) finish 8 at a time.
        int col = 0;
        for (; col + 64 <= headDim; col += 64)
        {
            var a0 = Vector256<float>.Zero;
            Vector256<float> a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int l = first; l < length;)
            {
                int inBlock = l % blockSize, end = Math.Min(length, l - inBlock + blockSize);
                byte* v = values + blocks[l / blockSize] * blockStride + inBlock * row + col * TCache.Bytes;
                byte* ahead = NextBlockRow(values, blocks, l, blockSize, blockStride, length, inBlock * row + col * TCache.Bytes);
                for (; l < end; l++, v += row, ahead += row)
                {
                    Prefetch(ahead, 8 * eight);
                    var w = Vector256.Create(scores[l]);
                    a0 = Vector256.FusedMultiplyAdd(TCache.Load8(v), w, a0);
                    a1 = Vector256.FusedMultiplyAdd(TCache.Load8(v + eight), w, a1);
                    a2 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 2 * eight), w, a2);
                    a3 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 3 * eight), w, a3);
                    a4 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 4 * eight), w, a4);
                    a5 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 5 * eight), w, a5);
                    a6 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 6 * eight), w, a6);
                    a7 = Vector256.FusedMultiplyAdd(TCache.Load8(v + 7 * eight), w, a7);
                }
            }
            a0.Store(output + col);
            a1.Store(output + col + 8);
            a2.Store(output + col + 16);
            a3.Store(output + col + 24);
            a4.Store(output + col + 32);
            a5.Store(output + col + 40);
            a6.Store(output + col + 48);
            a7.Store(output + col + 56);
        }
        for (; col < headDim; col += 8)
        {
            var a = Vector256<float>.Zero;
            for (int l = first; l < length;)
            {
                int inBlock = l % blockSize, end = Math.Min(length, l - inBlock + blockSize);
                byte* v = values + blocks[l / blockSize] * blockStride + inBlock * row + col * TCache.Bytes;
                for (; l < end; l++, v += row) a = Vector256.FusedMultiplyAdd(TCache.Load8(v), Vector256.Create(scores[l]), a);
            }
            a.Store(output + col);
        }
    }

    /// <summary>c·tanh(s / c) over <paramref name="scores"/> when <paramref name="cap"/> is positive, in
    /// transformers' order of operations (divide, tanh, multiply).</summary>
    internal static void Softcap(Span<float> scores, float cap)
    {
        if (cap <= 0) return;
        TensorPrimitives.Divide(scores, cap, scores);
        TensorPrimitives.Tanh(scores, scores);
        TensorPrimitives.Multiply(scores, cap, scores);
    }

    /// <summary>
    /// How many blocks ahead a row is prefetched. One block (16 positions, about 150 ns of work at a 64-wide head)
    /// is barely a DRAM round trip; two gave 16 sequences at 512 positions (`bench decode --preset llama-160m
    /// --world-size 2 --batch 16 --prompt-tokens 512 --tokens 32`, alternating runs) 37.5–40.0 against 38.0–44.5 ms
    /// per step (8 of 9 pairs faster), three 38.3–42.6, and prefetching into L2 instead of L1 no better.
    /// </summary>
    private const int PrefetchBlocks = 2;

    /// <summary>
    /// The same row of the block <see cref="PrefetchBlocks"/> ahead in the sequence, to prefetch while this block is
    /// read; near the end, the last block's row (a prefetch of lines already being read costs next to nothing, and
    /// the loop stays branch-free).
    /// A sequence's blocks lie anywhere in the pool, so each 4 KB run (16 positions of a 64-wide f32 head) ends in a
    /// jump the hardware prefetcher cannot foresee; at long contexts and large batches attention reads more bytes
    /// than the weights (16 sequences of 1000 positions: 590 MB of f32 keys and values a step per llama-160m rank).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe byte* NextBlockRow(byte* pool, int* blocks, int position, int blockSize, long blockStride, int length, long offset)
    {
        int block = Math.Min(position / blockSize + PrefetchBlocks, (length - 1) / blockSize);
        return pool + blocks[block] * blockStride + offset;
    }

    /// <summary>Prefetches [at, at + bytes) a line at a time. A prefetch never faults and changes no result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch(byte* at, long bytes)
    {
        for (long b = 0; b < bytes; b += 64) Sse.Prefetch0(at + b);
    }
}

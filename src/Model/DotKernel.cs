using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model;

/// <summary>
/// The dot product that decode's matrix-vector products are made of: one weight row against the activation
/// vector. Measured on the 2-core reference VM (AMD EPYC with AVX-512), one thread over 450 MB of llama-160m
/// weights on huge pages: this 256-bit loop with four accumulators streams 27 GB/s, as fast as a plain
/// vectorized sum over the same memory, while <see cref="System.Numerics.Tensors.TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>
/// (512-bit here) streams 20–21 GB/s and a hand-written 512-bit loop 19–22. Reading several rows at once
/// (2 or 4 interleaved streams) was slower still, 13–16 GB/s: this CPU prefers one sequential stream.
/// </summary>
internal static class DotKernel
{
    public const int PanelRows = 4, PanelColumns = 8;

    /// <summary>Whether an [out, in] matrix fits the panel layout exactly.</summary>
    public static bool CanPack(long outDim, long inDim) => Vector256.IsHardwareAccelerated && outDim % PanelRows == 0 && inDim % PanelColumns == 0;

    /// <summary>
    /// Four rows' dot products from one panel: <paramref name="panel"/> holds the rows' columns interleaved
    /// in blocks of 8 (row 0's first 8, row 1's first 8, …, row 0's next 8, …), so the weights are one
    /// sequential stream and each 8 floats of x are loaded once for four rows. Measured like
    /// <see cref="Dot{TWeights}"/> in float32: 25–26 GB/s on llama-160m and tinyllama-1.1b shapes, against 21–25
    /// row by row, where rows of 2048–5632 floats streamed slowest. Weights are stored as
    /// <typeparamref name="TWeights"/>; the arithmetic is float32.
    /// </summary>
    // Optimized from the first call: a server's first request would otherwise run ~30 decode steps on
    // unoptimized (tier-0) code, 2–5× slower, before tiered compilation catches up.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Panel4<TWeights>(byte* panel, float* x, int n, float* y) where TWeights : struct, IWeightFormat
    {
        int step = PanelColumns * TWeights.Bytes;
        var s0 = Vector256<float>.Zero;
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        for (int k = 0; k < n; k += PanelColumns)
        {
            var xv = Vector256.Load(x + k);
            s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel), xv, s0);
            s1 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + step), xv, s1);
            s2 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + 2 * step), xv, s2);
            s3 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + 3 * step), xv, s3);
            panel += PanelRows * step;
        }
        y[0] = Vector256.Sum(s0);
        y[1] = Vector256.Sum(s1);
        y[2] = Vector256.Sum(s2);
        y[3] = Vector256.Sum(s3);
    }

    /// <summary>
    /// The batched decode product, the entry point every weight format implements: one panel of 4 weight rows
    /// against <paramref name="rows"/> activation vectors (row b at <c>x + b·xStride</c>, n floats), writing
    /// the panel's 4 outputs of row b to <c>y + b·yStride</c>. The panel is streamed from memory once and
    /// re-read from cache for each group of activation rows, which is why a step over B sequences costs far
    /// less than B steps. Batch invariance: every output element is accumulated exactly as
    /// <see cref="Panel4{TWeights}"/> accumulates it (one 8-lane accumulator, k ascending, then a horizontal
    /// sum), whatever <paramref name="rows"/> is and whichever group a row falls in, so a sequence's result is
    /// bit-identical in any batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Panel4Rows<TWeights>(byte* panel, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        // More than one row: the panel is re-read from cache, so the product is bound by FMA throughput, which
        // 512-bit registers double on the reference CPU (bit-identical, see DotKernel512). One row streams
        // memory, and one 256-bit stream is fastest for that.
        if (rows > 1 && DotKernel512.IsSupported)
        {
            DotKernel512.PanelRows<TWeights>(panel, x, xStride, rows, n, y, yStride);
            return;
        }
        Panel4Rows256<TWeights>(panel, x, xStride, rows, n, y, yStride);
    }

    /// <summary><see cref="Panel4Rows{TWeights}"/> in 256-bit registers (CPUs without AVX-512, and one row); the same bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Panel4Rows256<TWeights>(byte* panel, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        int b = 0;
        // Two activation rows at a time: 8 accumulators (enough independent FMAs to cover their latency on two
        // pipes), 4 weight and 1 activation register fit AVX2's 16. Four rows at a time needed 21, and the JIT kept 5
        // accumulators on the stack, each FMA then waiting on a store and a reload.
        for (; b + 2 <= rows; b += 2)
            Panel4x2<TWeights>(panel, x + b * xStride, xStride, n, y + b * yStride, yStride, panel + DotKernel512.PrefetchBytes, PanelRows * PanelColumns * TWeights.Bytes);
        if (b < rows) Panel4<TWeights>(panel, x + b * xStride, n, y + b * yStride);
    }

    /// <summary>
    /// Panels [0, <paramref name="panelCount"/>) of a packed matrix (panel p's outputs at y + 4p) against activation
    /// rows [0, rows): with several rows on AVX-512, k-blocked so the activation rows stay in L1
    /// (<see cref="DotKernel512.PanelsRows{TWeights}"/>); otherwise panel by panel. Bits as <see cref="Panel4Rows{TWeights}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void PanelsRows<TWeights>(byte* panels, long panelCount, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        if (rows > 1 && DotKernel512.IsSupported)
        {
            DotKernel512.PanelsRows<TWeights>(panels, panelCount, x, xStride, rows, n, y, yStride);
            return;
        }
        long panelBytes = (long)PanelRows * n * TWeights.Bytes;
        if (rows <= 2)
        {
            for (long p = 0; p < panelCount; p++) Panel4Rows<TWeights>(panels + p * panelBytes, x, xStride, rows, n, y + p * PanelRows, yStride);
            return;
        }
        // Several passes over each panel (a pair of activation rows each): only the first reads the panel from
        // memory, and the others compute from cache. So that memory stays busy while they do, each pass
        // prefetches its own share of the NEXT panel, evenly over its k steps. Before, all passes prefetched 8 KB
        // ahead of their own position, which only the first pass's prefetches reached as new lines: memory then
        // idled through the passes from cache and the FMAs through the first. On the AVX2-only AMD EPYC VM (Zen 1)
        // `bench decode --preset llama-160m --batch 8 --prompt-tokens 16` went from 91-110 to 77-90 ms per step at
        // one rank, and from 122-126 to 95-104 ms of compute at two ranks with --batch 16 (alternating runs).
        int passes = rows / 2; // the pair passes; a last odd row's pass prefetches nothing
        int aheadStep = (int)Math.Max(1, panelBytes / passes / (n / PanelColumns));
        long share = panelBytes / passes;
        for (long p = 0; p < panelCount; p++)
        {
            byte* panel = panels + p * panelBytes;
            float* yp = y + p * PanelRows;
            int b = 0, pass = 0;
            for (; b + 2 <= rows; b += 2, pass++)
                Panel4x2<TWeights>(panel, x + b * xStride, xStride, n, yp + b * yStride, yStride, panel + panelBytes + pass * share, aheadStep);
            if (b < rows) Panel4<TWeights>(panel, x + b * xStride, n, yp + b * yStride);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Panel4x2<TWeights>(byte* panel, float* x, long xStride, int n, float* y, long yStride, byte* ahead, int aheadStep)
        where TWeights : struct, IWeightFormat
    {
        int step = PanelColumns * TWeights.Bytes;
        float* x0 = x, x1 = x + xStride;
        var a00 = Vector256<float>.Zero;
        Vector256<float> a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        for (int k = 0; k < n; k += PanelColumns)
        {
            // One line (two for f32 rows read in one pass) of what the caller wants fetched: this panel 8 KB ahead
            // when one pass reads it, else this pass's share of the next panel (see PanelsRows). A prefetch
            // changes no result.
            Sse.Prefetch0(ahead);
            if (aheadStep > 64) Sse.Prefetch0(ahead + 64);
            ahead += aheadStep;
            var w0 = TWeights.Load8(panel);
            var w1 = TWeights.Load8(panel + step);
            var w2 = TWeights.Load8(panel + 2 * step);
            var w3 = TWeights.Load8(panel + 3 * step);
            var v = Vector256.Load(x0 + k);
            a00 = Vector256.FusedMultiplyAdd(w0, v, a00);
            a01 = Vector256.FusedMultiplyAdd(w1, v, a01);
            a02 = Vector256.FusedMultiplyAdd(w2, v, a02);
            a03 = Vector256.FusedMultiplyAdd(w3, v, a03);
            v = Vector256.Load(x1 + k);
            a10 = Vector256.FusedMultiplyAdd(w0, v, a10);
            a11 = Vector256.FusedMultiplyAdd(w1, v, a11);
            a12 = Vector256.FusedMultiplyAdd(w2, v, a12);
            a13 = Vector256.FusedMultiplyAdd(w3, v, a13);
            panel += PanelRows * step;
        }
        float* y0 = y, y1 = y + yStride;
        y0[0] = Vector256.Sum(a00); y0[1] = Vector256.Sum(a01); y0[2] = Vector256.Sum(a02); y0[3] = Vector256.Sum(a03);
        y1[0] = Vector256.Sum(a10); y1[1] = Vector256.Sum(a11); y1[2] = Vector256.Sum(a12); y1[3] = Vector256.Sum(a13);
    }

    /// <summary>One row's dot product with x (row-major weights: shapes that do not fill whole panels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe float Dot<TWeights>(byte* a, float* x, int n) where TWeights : struct, IWeightFormat
    {
        int size = TWeights.Bytes;
        float sum = 0;
        int k = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s0 = Vector256<float>.Zero;
            var s1 = s0;
            var s2 = s0;
            var s3 = s0;
            // Four independent accumulators hide the FMA latency; 32 weights per iteration.
            for (; k + 32 <= n; k += 32)
            {
                byte* at = a + k * size;
                s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(at), Vector256.Load(x + k), s0);
                s1 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 8 * size), Vector256.Load(x + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 16 * size), Vector256.Load(x + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 24 * size), Vector256.Load(x + k + 24), s3);
            }
            for (; k + 8 <= n; k += 8) s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(a + k * size), Vector256.Load(x + k), s0);
            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < n; k++) sum += TWeights.Load1(a + k * size) * x[k];
        return sum;
    }
}

/// <summary>
/// How the decode kernels read weights (or cached keys and values) of one storage type as float32: the
/// arithmetic is float32 whatever the storage, so bf16 weights halve the bytes a step streams without
/// changing the kernels. Struct type arguments make the JIT compile each kernel once per format, with
/// these calls inlined.
/// </summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per element.</summary>
    static abstract int Bytes { get; }

    /// <summary>Eight consecutive elements from <paramref name="p"/>, as float32.</summary>
    static abstract Vector256<float> Load8(byte* p);

    /// <summary>Sixteen consecutive elements as float32 (AVX-512 only: <see cref="DotKernel512"/>).</summary>
    static abstract Vector512<float> Load16(byte* p);

    static abstract float Load1(byte* p);
}

internal readonly unsafe struct F32Weights : IWeightFormat
{
    public static int Bytes => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p) => Vector512.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => *(float*)p;
}

/// <summary>Brain float: the top 16 bits of a float32, so widening is a zero-extend and a shift.</summary>
internal readonly unsafe struct BF16Weights : IWeightFormat
{
    public static int Bytes => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p)
    {
        var bits = Vector128.Load((ushort*)p);
        var wide = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(bits).AsUInt32() // one vpmovzxwd
            : Vector256.Create(Vector128.WidenLower(bits), Vector128.WidenUpper(bits));
        return Vector256.ShiftLeft(wide, 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* p) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p)), 16).AsSingle(); // vpmovzxwd, vpslld

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => BitConverter.UInt32BitsToSingle((uint)*(ushort*)p << 16);
}

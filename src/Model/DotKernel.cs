using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model;

/// <summary>
/// The decode products of packed float32/bf16 matrices, in one of two panel layouts chosen by the CPU when the
/// weights are packed (<see cref="PanelRows"/>):
/// <list type="bullet">
/// <item>With AVX-512, panels of 16 output rows stored column-major (<c>[out / 16][in][16]</c>): one 512-bit load
/// holds 16 outputs' weights at one input column, so every activation row needs one accumulator per panel, fed by a
/// broadcast of its activation value, and 16 activation rows (a decode step at concurrency 16) take ONE pass over a
/// panel. The 4-row panels took two passes of 8 rows, the second from L2: in a scratch comparison
/// (docs/bench/panel_layouts.c, both vCPUs of the Zen 5 VM at once over 128 MB of n = 768 panels) 145-194 against
/// 113-154 GFLOP/s for 16 rows, about the same for 1 and 8. Each output is one chain of FMAs over k ascending.</item>
/// <item>Otherwise, panels of 4 rows, 8 columns of each row in turn (<c>[out / 4][in / 8][4][8]</c>): one sequential
/// stream, each output in 8 lanes then <see cref="Vector256.Sum{T}(Vector256{T})"/>. On 256-bit registers the
/// 16-row layout's few accumulators per panel made batched steps 25-40% slower than these kernels.</item>
/// </list>
/// Batch invariance holds in both: an output's summation order depends on neither the batch size nor where its row
/// falls in a group, so a sequence's products are bit-identical in any batch.
/// </summary>
internal static class DotKernel
{
    /// <summary>Output rows per panel of the 16-row layout: one 512-bit register of float32.</summary>
    public const int Panel16Rows = 16;

    /// <summary>Output rows per panel of the 4-row layout.</summary>
    public const int Panel4Rows = 4, PanelColumns = 8;

    /// <summary>Whether this CPU packs float matrices in the 16-row layout (else the 4-row one).</summary>
    public static bool WidePanels => DotKernel512.IsSupported;

    /// <summary>Output rows per panel on this CPU: whole panels are what split helpers claim.</summary>
    public static int PanelRows => WidePanels ? Panel16Rows : Panel4Rows;

    /// <summary>Whether an [out, in] matrix fits this CPU's panel layout.</summary>
    public static bool CanPack(long outDim, long inDim) => WidePanels
        ? outDim % Panel16Rows == 0 && inDim > 0
        : Vector256.IsHardwareAccelerated && outDim % Panel4Rows == 0 && inDim % PanelColumns == 0;

    /// <summary>The activation rows one transposed group holds (see <see cref="Transpose"/>).</summary>
    public const int GroupRows = 16;

    /// <summary>
    /// Activation rows [0, rows) (row b at x + b·xStride, n floats) into the kernels' transposed groups: the group of
    /// rows g..g+s-1 (s = 16, or what is left for the last) is <c>[n][s]</c> at <c>xt + g·n</c>, so one k's values of
    /// a group's rows sit side by side and a kernel reaches row r's value at a constant offset. One row is its own
    /// copy (a stride of 16 for it made the one-row step 20% slower: a 64-byte line of activations per k crowded
    /// the weights out of L1). Done once per product and shared by every panel and split helper.
    /// </summary>
    public static unsafe void Transpose(float* x, long xStride, int rows, int n, float* xt)
    {
        for (int g = 0; g < rows; g += GroupRows)
        {
            int size = Math.Min(GroupRows, rows - g);
            float* to = xt + (long)g * n;
            for (int r = 0; r < size; r++)
            {
                float* from = x + (g + r) * xStride;
                for (int k = 0; k < n; k++) to[k * size + r] = from[k];
            }
        }
    }

    /// <summary>Floats <see cref="Transpose"/> writes for <paramref name="rows"/> rows of width n.</summary>
    public static long TransposedFloats(int rows, int n) => (long)rows * n;

    /// <summary>
    /// Panels [0, <paramref name="panelCount"/>) of a matrix packed for this CPU (panel p's outputs at
    /// y + p·<see cref="PanelRows"/>) against activation rows [0, rows): row b at x + b·xStride, and (for the 16-row
    /// layout) the same rows transposed by <see cref="Transpose"/> into <paramref name="xt"/>. Row b's outputs at
    /// y + b·yStride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void PanelsRows<TWeights>(byte* panels, long panelCount, float* x, long xStride, float* xt, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        if (WidePanels) Panels16Rows<TWeights>(panels, panelCount, xt, rows, n, y, yStride);
        else Panels4Rows<TWeights>(panels, panelCount, x, xStride, rows, n, y, yStride);
    }

    /// <summary>
    /// The 16-row layout: up to 16 rows stream every panel once; more rows (a prefill chunk) go in groups of 16 over
    /// chunks of panels small enough to stay in L2 for the next group.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Panels16Rows<TWeights>(byte* panels, long panelCount, float* xt, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        const int PanelRows = Panel16Rows;
        long panelBytes = (long)PanelRows * n * TWeights.Bytes;
        long chunkPanels = rows <= GroupRows ? panelCount : Math.Max(1, ChunkBytes / panelBytes);
        for (long first = 0; first < panelCount; first += chunkPanels)
        {
            long last = Math.Min(panelCount, first + chunkPanels);
            for (int g = 0; g < rows; g += GroupRows)
            {
                int size = Math.Min(GroupRows, rows - g);
                float* group = xt + (long)g * n;
                long p = first;
                if (size <= PairRows)
                    for (; p + 1 < last; p += 2)
                        DotKernel512.Panel16Pair<TWeights>(panels + p * panelBytes, panels + (p + 1) * panelBytes, group, size, n, y + g * yStride + p * PanelRows, yStride);
                for (; p < last; p++)
                    DotKernel512.Panel16<TWeights>(panels + p * panelBytes, group, size, n, y + g * yStride + p * PanelRows, yStride);
            }
        }
    }

    /// <summary>Up to this many rows, two panels go through the 512-bit kernel at once (<see cref="DotKernel512.Panel16Pair{TWeights}"/>).</summary>
    private const int PairRows = 8;

    /// <summary>Panels a group of rows takes in turn before the next group (256 KB: a quarter of a 1 MB L2).</summary>
    private const long ChunkBytes = 256 * 1024;

    /// <summary>
    /// The 4-row layout, panel by panel (CPUs without AVX-512).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Panels4Rows<TWeights>(byte* panels, long panelCount, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        const int PanelRows = Panel4Rows;
        long panelBytes = (long)PanelRows * n * TWeights.Bytes;
        if (rows <= 2)
        {
            for (long p = 0; p < panelCount; p++) Panel4Rows256<TWeights>(panels + p * panelBytes, x, xStride, rows, n, y + p * PanelRows, yStride);
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
            panel += Panel4Rows * step;
        }
        float* y0 = y, y1 = y + yStride;
        y0[0] = Vector256.Sum(a00); y0[1] = Vector256.Sum(a01); y0[2] = Vector256.Sum(a02); y0[3] = Vector256.Sum(a03);
        y1[0] = Vector256.Sum(a10); y1[1] = Vector256.Sum(a11); y1[2] = Vector256.Sum(a12); y1[3] = Vector256.Sum(a13);
    }

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
            panel += Panel4Rows * step;
        }
        y[0] = Vector256.Sum(s0);
        y[1] = Vector256.Sum(s1);
        y[2] = Vector256.Sum(s2);
        y[3] = Vector256.Sum(s3);
    }

    /// <summary>Activation rows [0, rows) against one panel of the 4-row layout: pairs of rows, then a last one alone,
    /// every output with the bits of <see cref="Panel4{TWeights}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Panel4Rows256<TWeights>(byte* panel, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        int b = 0;
        // Two activation rows at a time: 8 accumulators (enough independent FMAs to cover their latency on two
        // pipes), 4 weight and 1 activation register fit AVX2's 16. Four rows at a time needed 21, and the JIT kept 5
        // accumulators on the stack, each FMA then waiting on a store and a reload.
        for (; b + 2 <= rows; b += 2)
            Panel4x2<TWeights>(panel, x + b * xStride, xStride, n, y + b * yStride, yStride, panel + DotKernel512.PrefetchBytes, Panel4Rows * PanelColumns * TWeights.Bytes);
        if (b < rows) Panel4<TWeights>(panel, x + b * xStride, n, y + b * yStride);
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

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model;

/// <summary>
/// The batched panel products of <see cref="DotKernel.Panel4Rows{TWeights}"/> in 512-bit registers. With B
/// activation rows the panel comes from cache after its first pass, so the step is bound by FMA throughput,
/// not memory: on the reference CPU (AMD EPYC, Zen 5) a 512-bit FMA does twice the work of a 256-bit one per
/// cycle (measured 200 against 95 GFLOP/s on one core), so these kernels halve the arithmetic time.
/// <para>
/// Bit-identical to the 256-bit kernels, by construction: a panel stores, per 8 columns, weight row 0's 8
/// values then row 1's, row 2's and row 3's, so one 512-bit load holds rows 0 and 1 (or 2 and 3) side by side,
/// and the 8 activation floats are broadcast to both halves. Each lane then accumulates exactly the products
/// the 256-bit kernel's lane accumulates, in the same k order, with the same fused rounding; the horizontal
/// sum is <see cref="Vector256.Sum{T}(Vector256{T})"/> of each half, as before.
/// </para>
/// </summary>
internal static class DotKernel512
{
    /// <summary>AVX-512 F (the FMAs, the bf16 widening) and DQ (the 8-float broadcast).</summary>
    public static bool IsSupported => Avx512F.IsSupported && Avx512DQ.IsSupported;

    /// <summary>
    /// Activation rows [0, rows) against one 4-row panel, as <see cref="DotKernel.Panel4Rows{TWeights}"/>
    /// (which calls this only when <see cref="IsSupported"/>): one k block spanning the whole row, of
    /// <see cref="BlockRows{TWeights}"/> (up to 11 rows in one kernel call, more in groups, each output with the bits of
    /// <see cref="DotKernel.Panel4{TWeights}"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void PanelRows<TWeights>(byte* panel, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat =>
        BlockRows<TWeights>(panel, x, xStride, rows, n, y, yStride, carry: null, keep: null, PrefetchBytes);

    /// <summary>x[k..k+8) in both 256-bit halves: one load-port broadcast, no shuffle.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Broadcast(float* x) => Avx512DQ.BroadcastVector256ToVector512(x);

    /// <summary>
    /// How far ahead of the loads the panel is prefetched. With several activation rows the loop issues 8–16 FMAs
    /// per 64-byte line, so the out-of-order window holds too few loads to keep memory busy and the hardware
    /// prefetcher alone left a B = 8 pass over cold panels 2.4× slower than a B = 1 pass over the same bytes
    /// (measured: llama-160m shapes, 440 MB of f32 panels, n = 768 and 3072; a 4–12 KB distance brought it
    /// to 1.25–1.3×, while the same pass over cached panels took 0.75×). The Q8_0/Q4_0 panel kernels use the
    /// same distance: on an Intel Xeon (Sapphire Rapids, KVM) their B = 1 decode went from 32 to 47–59 tok/s at
    /// Q8_0 on llama-160m (4–16 KB tried; 8 KB best). A prefetch does not change any result.
    /// </summary>
    internal const int PrefetchBytes = 8 * 1024;

    /// <summary>Prefetches the 64-byte lines one k step of the panel will use <see cref="PrefetchBytes"/> later.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void PrefetchAhead<TWeights>(byte* panel, long distance) where TWeights : struct, IWeightFormat
    {
        // A k step reads 4 rows x 8 columns: 128 bytes of f32 (two lines), 64 of bf16 (one line). A prefetch
        // past the end of the weights is harmless: prefetches never fault.
        Sse.Prefetch0(panel + distance);
        if (DotKernel.PanelRows * DotKernel.PanelColumns * TWeights.Bytes > 64) Sse.Prefetch0(panel + distance + 64);
    }

    /// <summary>
    /// Panels [0, <paramref name="panelCount"/>) of a packed matrix (panel p's outputs at y + 4p) against activation
    /// rows [0, rows), rows &gt; 1. A panel pass streams its whole k range, so with a wide input (3072 for
    /// llama-160m's down projection) the activation rows of a group (8 × 12 KB) come from L2 for every panel, and
    /// a batched step ran at about a quarter of this CPU's FMA peak (measured on an Intel Xeon, Sapphire Rapids:
    /// B = 16 cost twice B = 8, the second pass over cached panels as slow as the first). So k is cut into blocks
    /// whose activation chunk stays in L1 (<see cref="ActivationBlockBytes"/>), and <see cref="PanelChunk"/> panels
    /// take turns over each chunk. Every output still accumulates in the one-row order (its lanes carried to the
    /// next block through memory, which rounds nothing), so the bits are those of <see cref="PanelRows{TWeights}"/>.
    /// Rows that fit in L1 whole skip the blocks (<see cref="WholeRowsBytes"/>), and more than
    /// <see cref="RowsInOnePass"/> rows go in groups (below).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void PanelsRows<TWeights>(byte* panels, long panelCount, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        bool groups = rows > RowsInOnePass || (rows > MaxKernelRowsAlone && (long)RowGroup * n * sizeof(float) <= WholeRowsBytes);
        if (!groups)
        {
            BlockedPanelsRows<TWeights>(panels, panelCount, x, xStride, rows, n, y, yStride);
            return;
        }
        // Many rows (a prefill chunk): in one pass their k blocks shrink to 64 columns and their carried sums
        // (16 panels x 128 rows x 128 B: 256 KB) crowd the panels out of L2. So groups of RowGroup rows take turns
        // over a chunk of PanelChunk panels instead: the chunk (48-192 KB) comes from memory for the first group
        // and from L2 for the others. Measured on the Zen 5 VM, f32 panels, GFLOP/s one pass / groups of 8: 64 rows
        // n = 768 126 / 156, n = 1536 123 / 157; 256 rows 123 / 152 and 124 / 161; 32 rows 152 / 159 and 133 / 151.
        // 12-16 rows (a decode step) go in groups too where a group's rows fit in L1 whole (WholeRowsBytes: n = 768
        // at 8 rows, three quarters of llama-160m's weights at 2 ranks), so each group streams its panels without
        // k blocks or carried sums: `bench decode --preset llama-160m --world-size 2 --batch 16`, alternating x5,
        // 25.2-35.6 -> 20.7-29.4 ms per step. Wider rows stay in one blocked pass (groups of 8 lost 6% at n = 1536,
        // groups of 4 lost at B = 8 there), and so do 9-11 rows, which one kernel call takes (MaxKernelRowsAlone).
        // Each output still has its one-row accumulation order, so the bits do not change.
        long panelBytes = (long)DotKernel.PanelRows * n * TWeights.Bytes;
        for (long first = 0; first < panelCount; first += PanelChunk)
        {
            long chunk = Math.Min(PanelChunk, panelCount - first);
            for (int b = 0; b < rows;)
            {
                int size = GroupSize(rows - b, b == 0);
                BlockedPanelsRows<TWeights>(panels + first * panelBytes, chunk, x + b * xStride, xStride, size, n,
                    y + first * DotKernel.PanelRows + b * yStride, yStride);
                b += size;
            }
        }
    }

    /// <summary>
    /// The next group's rows out of <paramref name="left"/>: RowGroup, except that the last two groups share
    /// 9-11 rows evenly (4-6 each) rather than leave 1-3 rows to a kernel call of 2-6 FMA chains, which runs at a
    /// quarter to three quarters of the rate. The first group keeps 8 rows: it reads the chunk from memory, and 8
    /// rows of arithmetic hide that read best (9 rows as 4 and 5 were no faster than as 8 and 1). Over 1 MB of
    /// n = 768 panels, GFLOP/s before / after: 17 rows 158 / 172, 25 rows 166 / 173, 33 rows 168 / 174.
    /// </summary>
    private static int GroupSize(int left, bool firstGroup) =>
        !firstGroup && left > RowGroup && left < RowGroup + MinFullRateRows ? left / 2 : Math.Min(RowGroup, left);

    /// <summary>The fewest rows whose 8 accumulators (two per row) cover the FMA latency on both pipes.</summary>
    private const int MinFullRateRows = 4;

    /// <summary>The most activation rows <see cref="PanelsRows{TWeights}"/> passes over the panels at once.</summary>
    private const int RowsInOnePass = 16;

    /// <summary>The most rows per group (see <see cref="PanelsRows{TWeights}"/>): one kernel call's (<see cref="MaxKernelRows"/>).</summary>
    private const int RowGroup = MaxKernelRows;

    /// <summary>All rows in one pass over the panels, k blocked (see <see cref="PanelsRows{TWeights}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void BlockedPanelsRows<TWeights>(byte* panels, long panelCount, float* x, long xStride, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        const int R = DotKernel.PanelRows, C = DotKernel.PanelColumns;
        long panelBytes = (long)R * n * TWeights.Bytes;
        int kBlock = Math.Max(8 * C, ActivationBlockBytes / (rows * sizeof(float)) / C * C);
        if (n <= kBlock || panelCount == 1 || (long)rows * n * sizeof(float) <= WholeRowsBytes)
        {
            for (long p = 0; p < panelCount; p++) PanelRows<TWeights>(panels + p * panelBytes, x, xStride, rows, n, y + p * R, yStride);
            return;
        }
        float* state = Aligned(ref t_carry, PanelChunk * rows * CarryFloats);
        // Rows a multiple of 4 KB apart fall in the same L1 sets (llama-160m's 3072-wide down projection at one
        // rank: 16 rows x 8 lines on 64 sets of 12 ways), so their chunks evict each other; packed side by side
        // they do not. Measured on the Zen 5 VM, B = 16 over 256 MB of n = 3072 panels: 92-95 GFLOP/s unpacked,
        // 125-132 packed (n = 768 rows, 3 KB apart, lose 5-8% to the copy and are left as they are).
        bool pack = xStride * sizeof(float) % 4096 == 0;
        float* packed = pack ? Aligned(ref t_packed, rows * kBlock) : null;
        for (long first = 0; first < panelCount; first += PanelChunk)
        {
            int chunk = (int)Math.Min(PanelChunk, panelCount - first);
            for (int k0 = 0; k0 < n; k0 += kBlock)
            {
                int kn = Math.Min(kBlock, n - k0);
                bool start = k0 == 0, end = k0 + kn == n;
                float* xs = x + k0;
                long xsStride = xStride;
                if (pack)
                {
                    for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(x + r * xStride + k0, kn).CopyTo(new Span<float>(packed + r * kn, kn));
                    xs = packed;
                    xsStride = kn;
                }
                for (int p = 0; p < chunk; p++)
                {
                    float* carry = state + p * rows * CarryFloats;
                    BlockRows<TWeights>(panels + (first + p) * panelBytes + (long)k0 * R * TWeights.Bytes, xs, xsStride, rows, kn,
                        y + (first + p) * R, yStride, start ? null : carry, end ? null : carry, PrefetchPanelsAhead * panelBytes);
                }
            }
        }
    }

    /// <summary>
    /// How many panels ahead the k-blocked loop prefetches the same k block. The loop reads 16 panels' blocks
    /// in turn, each a short run of 2 KB, so the hardware prefetcher does not follow and one panel's block takes
    /// only ~100 ns to compute at B = 16: a prefetch one panel ahead arrives late. Measured on the Zen 5 VM, B = 16
    /// over 256 MB of f32 panels, GFLOP/s at one / two / three panels ahead: n = 384 99-102 / 115-123 / 120-133,
    /// n = 768 118-121 / 113-144 / 125-132, n = 1536 113-116 / 123-124 / 136; packed n = 3072 117-118 / 101-132 /
    /// 125-132.
    /// </summary>
    private const int PrefetchPanelsAhead = 3;

    /// <summary>Panels that take turns over one activation chunk: their carried accumulators (16 rows: 32 KB) stay in L2.</summary>
    private const int PanelChunk = 16;

    /// <summary>
    /// The activation chunk of a k block (a sixth of a 48 KB L1, beside the panels' lines and the carried sums).
    /// Tried on llama-160m at 2 ranks, B = 8 / 16 ms per step: 4 KB 40–42 / 77–100, 8 KB 38–44 / 63–69,
    /// 16 KB 41 / 66–71, 32 KB 44–46 / 75–78, unblocked 45–54 / 73–94.
    /// </summary>
    private const int ActivationBlockBytes = 8 * 1024;

    /// <summary>
    /// Activation rows this small (three quarters of a 48 KB L1) stay in L1 whole, so the panels are streamed one after
    /// another, not k block by k block: cut into blocks, each panel is read in runs of 2-4 KB a panel apart, which
    /// the hardware prefetcher follows poorly, and a step with few rows is bound by that stream. Measured on the
    /// Zen 5 VM, two processes at once (as two ranks), ms per pass over 256 MB of f32 panels, k blocks / whole:
    /// 8 rows n = 768 8.1-8.6 / 7.4-7.5; 4 rows n = 768 12.0-12.2 / 7.2-9.2; 2 rows n = 1536 10.6-11.0 / 8.7-8.9,
    /// n = 3072 10.8-12.3 / 8.2-9.1; 16 rows n = 384 16.8-17.9 / 14.3. At 48 KB whole rows lost (8 rows n = 1536
    /// 9.6-10.2 / 12.4); at 36 KB they won (GFLOP/s, 24 KB limit / 36 KB: 6 rows n = 1536 56-59 / 67-70; 9 rows
    /// n = 768 in one call 109-111 / 143-144, 10 rows 89-114 / 114-135). The bits are the same either way.
    /// </summary>
    private const int WholeRowsBytes = 36 * 1024;

    /// <summary>Floats carried per activation row of a panel between k blocks: two 512-bit accumulators.</summary>
    private const int CarryFloats = 32;

    [ThreadStatic] private static float[]? t_carry, t_packed;

    /// <summary>This thread's scratch of at least <paramref name="floats"/> floats, 64-byte aligned (pinned, reused).</summary>
    private static unsafe float* Aligned(ref float[]? buffer, int floats)
    {
        if (buffer is null || buffer.Length < floats + 16) buffer = GC.AllocateArray<float>(floats + 16, pinned: true);
        nint start = (nint)Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(buffer));
        return (float*)((start + 63) & ~(nint)63);
    }

    /// <summary>
    /// One k block of one panel for every row: up to 11 rows in one kernel call, more in groups of 8 rows and then
    /// the rest in one call. Each output's
    /// lanes form one chain of FMAs, each waiting on the previous (4 cycles), so a call needs 8 chains (4 rows) to
    /// keep both FMA pipes busy; the rest used to be split into 4, 2 and 1 rows, whose 4 and 2 chains ran at half
    /// and a quarter of the rate (7 rows cost about as much as 12). Past 11 rows the first group is the full 8 on
    /// purpose: it reads the panel from memory, and a larger first group (11 + 5, 12 + 4) gained nothing with two
    /// ranks at once (README, "where concurrency 16 stands").
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void BlockRows<TWeights>(byte* panel, float* x, long xStride, int rows, int n, float* y, long yStride,
        float* carry, float* keep, long prefetch) where TWeights : struct, IWeightFormat
    {
        for (int b = 0; b < rows;)
        {
            int size = rows - b <= MaxKernelRowsAlone ? rows - b : MaxKernelRows;
            float* xb = x + b * xStride, yb = y + b * yStride, carried = At(carry, b), kept = At(keep, b);
            switch (size)
            {
                case 1: Panel4xR<TWeights, R1>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 2: Panel4xR<TWeights, R2>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 3: Panel4xR<TWeights, R3>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 4: Panel4xR<TWeights, R4>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 5: Panel4xR<TWeights, R5>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 6: Panel4xR<TWeights, R6>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 7: Panel4xR<TWeights, R7>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 8: Panel4xR<TWeights, R8>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 9: Panel4xR<TWeights, R9>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                case 10: Panel4xR<TWeights, R10>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
                default: Panel4xR<TWeights, R11>(panel, xb, xStride, n, yb, yStride, carried, kept, prefetch); break;
            }
            b += size;
        }
    }

    /// <summary>The rows of one kernel call in a group of many: 16 accumulators, two weight registers and a broadcast.</summary>
    private const int MaxKernelRows = 8;

    /// <summary>
    /// The most rows taken in one call when they are all that is left (22 accumulators): 9-11 rows as 8 and 1-3
    /// left a call of 2-6 FMA chains.
    /// </summary>
    private const int MaxKernelRowsAlone = 11;

    private static unsafe float* At(float* state, int row) => state == null ? null : state + row * CarryFloats;

    /// <summary>An activation row's accumulator <paramref name="i"/> carried from the previous k block, or zero at the first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Carried(float* carry, int i) => carry == null ? Vector512<float>.Zero : Vector512.Load(carry + 16 * i);

    /// <summary>Activation row <paramref name="row"/>'s accumulators: summed into y after the last k block, else kept for the next.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Finish(float* y, Vector512<float> rows01, Vector512<float> rows23, float* keep, int row)
    {
        if (keep == null)
        {
            Store(y, rows01, rows23);
            return;
        }
        rows01.Store(keep + row * CarryFloats);
        rows23.Store(keep + row * CarryFloats + 16);
    }

    /// <summary>One activation row's four outputs: each 256-bit half summed as the 256-bit kernel sums it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(float* y, Vector512<float> rows01, Vector512<float> rows23)
    {
        y[0] = Vector256.Sum(rows01.GetLower());
        y[1] = Vector256.Sum(rows01.GetUpper());
        y[2] = Vector256.Sum(rows23.GetLower());
        y[3] = Vector256.Sum(rows23.GetUpper());
    }

    /// <summary>A row count as a type, so each <see cref="Panel4xR{TWeights, TRows}"/> is compiled for its count with the unused rows' code removed.</summary>
    private interface IRowCount
    {
        static abstract int Count { get; }
    }

    private readonly struct R1 : IRowCount { public static int Count => 1; }
    private readonly struct R2 : IRowCount { public static int Count => 2; }
    private readonly struct R3 : IRowCount { public static int Count => 3; }
    private readonly struct R4 : IRowCount { public static int Count => 4; }
    private readonly struct R5 : IRowCount { public static int Count => 5; }
    private readonly struct R6 : IRowCount { public static int Count => 6; }
    private readonly struct R7 : IRowCount { public static int Count => 7; }
    private readonly struct R8 : IRowCount { public static int Count => 8; }
    private readonly struct R9 : IRowCount { public static int Count => 9; }
    private readonly struct R10 : IRowCount { public static int Count => 10; }
    private readonly struct R11 : IRowCount { public static int Count => 11; }

    /// <summary>
    /// <typeparamref name="TRows"/> activation rows (1-8, <paramref name="xStride"/> apart) against one k block of
    /// a 4-row panel. Per 8 columns: the block's two weight registers are loaded once, and each row's 8 floats are
    /// broadcast to both halves and multiplied into that row's two accumulators (pB: weight rows 0 and 1, qB: 2 and
    /// 3). Each lane thus accumulates the products of <see cref="DotKernel.Panel4{TWeights}"/>'s lane in the same k
    /// order, whatever the row count: the one-row bits. The <c>if (R &gt; i)</c> tests are constants per
    /// <typeparamref name="TRows"/>, so each instantiation holds only its own rows' registers and FMAs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Panel4xR<TWeights, TRows>(byte* panel, float* x, long xStride, int n, float* y, long yStride,
        float* carry, float* keep, long prefetch)
        where TWeights : struct, IWeightFormat where TRows : struct, IRowCount
    {
        int R = TRows.Count;
        int pair = 2 * DotKernel.PanelColumns * TWeights.Bytes; // weight rows 0-1 of a block, then rows 2-3
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        float* x4 = x + 4 * xStride, x5 = x + 5 * xStride, x6 = x + 6 * xStride, x7 = x + 7 * xStride;
        float* x8 = x + 8 * xStride, x9 = x + 9 * xStride, x10 = x + 10 * xStride;
        Vector512<float> p0 = Carried(carry, 0), q0 = Carried(carry, 1);
        Vector512<float> p1 = default, q1 = default, p2 = default, q2 = default, p3 = default, q3 = default;
        Vector512<float> p4 = default, q4 = default, p5 = default, q5 = default, p6 = default, q6 = default, p7 = default, q7 = default;
        Vector512<float> p8 = default, q8 = default, p9 = default, q9 = default, p10 = default, q10 = default;
        if (R > 1) { p1 = Carried(carry, 2); q1 = Carried(carry, 3); }
        if (R > 2) { p2 = Carried(carry, 4); q2 = Carried(carry, 5); }
        if (R > 3) { p3 = Carried(carry, 6); q3 = Carried(carry, 7); }
        if (R > 4) { p4 = Carried(carry, 8); q4 = Carried(carry, 9); }
        if (R > 5) { p5 = Carried(carry, 10); q5 = Carried(carry, 11); }
        if (R > 6) { p6 = Carried(carry, 12); q6 = Carried(carry, 13); }
        if (R > 7) { p7 = Carried(carry, 14); q7 = Carried(carry, 15); }
        if (R > 8) { p8 = Carried(carry, 16); q8 = Carried(carry, 17); }
        if (R > 9) { p9 = Carried(carry, 18); q9 = Carried(carry, 19); }
        if (R > 10) { p10 = Carried(carry, 20); q10 = Carried(carry, 21); }
        for (int k = 0; k < n; k += DotKernel.PanelColumns)
        {
            PrefetchAhead<TWeights>(panel, prefetch);
            var w01 = TWeights.Load16(panel);
            var w23 = TWeights.Load16(panel + pair);
            // Row B's 8 floats broadcast to both halves, times each weight register (written out per row: a helper
            // returning the pair made the JIT add a register move per FMA).
            var v = Broadcast(x0 + k); p0 = Avx512F.FusedMultiplyAdd(w01, v, p0); q0 = Avx512F.FusedMultiplyAdd(w23, v, q0);
            if (R > 1) { v = Broadcast(x1 + k); p1 = Avx512F.FusedMultiplyAdd(w01, v, p1); q1 = Avx512F.FusedMultiplyAdd(w23, v, q1); }
            if (R > 2) { v = Broadcast(x2 + k); p2 = Avx512F.FusedMultiplyAdd(w01, v, p2); q2 = Avx512F.FusedMultiplyAdd(w23, v, q2); }
            if (R > 3) { v = Broadcast(x3 + k); p3 = Avx512F.FusedMultiplyAdd(w01, v, p3); q3 = Avx512F.FusedMultiplyAdd(w23, v, q3); }
            if (R > 4) { v = Broadcast(x4 + k); p4 = Avx512F.FusedMultiplyAdd(w01, v, p4); q4 = Avx512F.FusedMultiplyAdd(w23, v, q4); }
            if (R > 5) { v = Broadcast(x5 + k); p5 = Avx512F.FusedMultiplyAdd(w01, v, p5); q5 = Avx512F.FusedMultiplyAdd(w23, v, q5); }
            if (R > 6) { v = Broadcast(x6 + k); p6 = Avx512F.FusedMultiplyAdd(w01, v, p6); q6 = Avx512F.FusedMultiplyAdd(w23, v, q6); }
            if (R > 7) { v = Broadcast(x7 + k); p7 = Avx512F.FusedMultiplyAdd(w01, v, p7); q7 = Avx512F.FusedMultiplyAdd(w23, v, q7); }
            if (R > 8) { v = Broadcast(x8 + k); p8 = Avx512F.FusedMultiplyAdd(w01, v, p8); q8 = Avx512F.FusedMultiplyAdd(w23, v, q8); }
            if (R > 9) { v = Broadcast(x9 + k); p9 = Avx512F.FusedMultiplyAdd(w01, v, p9); q9 = Avx512F.FusedMultiplyAdd(w23, v, q9); }
            if (R > 10) { v = Broadcast(x10 + k); p10 = Avx512F.FusedMultiplyAdd(w01, v, p10); q10 = Avx512F.FusedMultiplyAdd(w23, v, q10); }
            panel += 2 * pair;
        }
        Finish(y, p0, q0, keep, 0);
        if (R > 1) Finish(y + 1 * yStride, p1, q1, keep, 1);
        if (R > 2) Finish(y + 2 * yStride, p2, q2, keep, 2);
        if (R > 3) Finish(y + 3 * yStride, p3, q3, keep, 3);
        if (R > 4) Finish(y + 4 * yStride, p4, q4, keep, 4);
        if (R > 5) Finish(y + 5 * yStride, p5, q5, keep, 5);
        if (R > 6) Finish(y + 6 * yStride, p6, q6, keep, 6);
        if (R > 7) Finish(y + 7 * yStride, p7, q7, keep, 7);
        if (R > 8) Finish(y + 8 * yStride, p8, q8, keep, 8);
        if (R > 9) Finish(y + 9 * yStride, p9, q9, keep, 9);
        if (R > 10) Finish(y + 10 * yStride, p10, q10, keep, 10);
    }
}

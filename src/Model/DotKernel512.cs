using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model;

/// <summary>
/// The panel kernel of <see cref="DotKernel"/> in 512-bit registers: a panel's 16 outputs are one register, so one
/// pass takes up to 16 activation rows with one accumulator each, every FMA fed by an embedded broadcast of the
/// row's activation value at that k. The same bits as the 256-bit and portable kernels (each lane one output's
/// chain of FMAs over k ascending).
/// </summary>
internal static class DotKernel512
{
    /// <summary>AVX-512 F (the FMAs, the bf16 widening) and DQ (the quantized kernels' broadcasts).</summary>
    public static bool IsSupported => Avx512F.IsSupported && Avx512DQ.IsSupported;

    /// <summary>
    /// How far ahead of the loads the weights are prefetched. With several activation rows the loop issues many
    /// FMAs per 64-byte line, so the out-of-order window holds too few loads to keep memory busy on its own; 8 KB
    /// was best for the earlier float panels (4-16 KB tried on llama-160m shapes) and is what the Q8_0/Q4_0 panel
    /// kernels use (on an Intel Xeon their B = 1 decode went from 32 to 47-59 tok/s at Q8_0). A prefetch changes no
    /// result.
    /// </summary>
    internal const int PrefetchBytes = 8 * 1024;

    /// <summary>One panel against a transposed group of <paramref name="rows"/> (1-16) activation rows, whose k values are <paramref name="rows"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Panel16<TWeights>(byte* panel, float* group, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        switch (rows)
        {
            case 1: Panel16xR<TWeights, R1>(panel, group, n, y, yStride); break;
            case 2: Panel16xR<TWeights, R2>(panel, group, n, y, yStride); break;
            case 3: Panel16xR<TWeights, R3>(panel, group, n, y, yStride); break;
            case 4: Panel16xR<TWeights, R4>(panel, group, n, y, yStride); break;
            case 5: Panel16xR<TWeights, R5>(panel, group, n, y, yStride); break;
            case 6: Panel16xR<TWeights, R6>(panel, group, n, y, yStride); break;
            case 7: Panel16xR<TWeights, R7>(panel, group, n, y, yStride); break;
            case 8: Panel16xR<TWeights, R8>(panel, group, n, y, yStride); break;
            case 9: Panel16xR<TWeights, R9>(panel, group, n, y, yStride); break;
            case 10: Panel16xR<TWeights, R10>(panel, group, n, y, yStride); break;
            case 11: Panel16xR<TWeights, R11>(panel, group, n, y, yStride); break;
            case 12: Panel16xR<TWeights, R12>(panel, group, n, y, yStride); break;
            case 13: Panel16xR<TWeights, R13>(panel, group, n, y, yStride); break;
            case 14: Panel16xR<TWeights, R14>(panel, group, n, y, yStride); break;
            case 15: Panel16xR<TWeights, R15>(panel, group, n, y, yStride); break;
            default: Panel16xR<TWeights, R16>(panel, group, n, y, yStride); break;
        }
    }

    /// <summary>
    /// <typeparamref name="TRows"/> rows against one panel. The <c>if (R &gt; i)</c> tests are constants per
    /// instantiation, so each row count compiles to its own registers and FMAs only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Panel16xR<TWeights, TRows>(byte* panel, float* x, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat where TRows : struct, IRowCount
    {
        int R = TRows.Count, step = DotKernel.Panel16Rows * TWeights.Bytes;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero, a4 = Vector512<float>.Zero, a5 = Vector512<float>.Zero, a6 = Vector512<float>.Zero, a7 = Vector512<float>.Zero, a8 = Vector512<float>.Zero, a9 = Vector512<float>.Zero, a10 = Vector512<float>.Zero, a11 = Vector512<float>.Zero, a12 = Vector512<float>.Zero, a13 = Vector512<float>.Zero, a14 = Vector512<float>.Zero, a15 = Vector512<float>.Zero;
        for (int k = 0; k < n; k++, panel += step, x += R)
        {
            Sse.Prefetch0(panel + PrefetchBytes);
            var w = TWeights.Load16(panel);
            a0 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[0]), a0);
            if (R > 1) a1 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[1]), a1);
            if (R > 2) a2 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[2]), a2);
            if (R > 3) a3 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[3]), a3);
            if (R > 4) a4 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[4]), a4);
            if (R > 5) a5 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[5]), a5);
            if (R > 6) a6 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[6]), a6);
            if (R > 7) a7 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[7]), a7);
            if (R > 8) a8 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[8]), a8);
            if (R > 9) a9 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[9]), a9);
            if (R > 10) a10 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[10]), a10);
            if (R > 11) a11 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[11]), a11);
            if (R > 12) a12 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[12]), a12);
            if (R > 13) a13 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[13]), a13);
            if (R > 14) a14 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[14]), a14);
            if (R > 15) a15 = Avx512F.FusedMultiplyAdd(w, Vector512.Create(x[15]), a15);
        }
        a0.Store(y + 0 * yStride);
        if (R > 1) a1.Store(y + 1 * yStride);
        if (R > 2) a2.Store(y + 2 * yStride);
        if (R > 3) a3.Store(y + 3 * yStride);
        if (R > 4) a4.Store(y + 4 * yStride);
        if (R > 5) a5.Store(y + 5 * yStride);
        if (R > 6) a6.Store(y + 6 * yStride);
        if (R > 7) a7.Store(y + 7 * yStride);
        if (R > 8) a8.Store(y + 8 * yStride);
        if (R > 9) a9.Store(y + 9 * yStride);
        if (R > 10) a10.Store(y + 10 * yStride);
        if (R > 11) a11.Store(y + 11 * yStride);
        if (R > 12) a12.Store(y + 12 * yStride);
        if (R > 13) a13.Store(y + 13 * yStride);
        if (R > 14) a14.Store(y + 14 * yStride);
        if (R > 15) a15.Store(y + 15 * yStride);
    }

    /// <summary>
    /// Two panels (the next at <paramref name="next"/>, its outputs 16 after the first's) against up to 8 rows. One
    /// panel gives a row one accumulator, one chain of dependent FMAs (4 cycles each): with few rows that bound a
    /// call (one row streamed 24-37 GB/s in the scratch comparison against 33-42 for the earlier 4-row panels), and
    /// two panels at once double the chains. Each output's chain is the same, so are its bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Panel16Pair<TWeights>(byte* panel, byte* next, float* group, int rows, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat
    {
        switch (rows)
        {
            case 1: Panel16PairR<TWeights, R1>(panel, next, group, n, y, yStride); break;
            case 2: Panel16PairR<TWeights, R2>(panel, next, group, n, y, yStride); break;
            case 3: Panel16PairR<TWeights, R3>(panel, next, group, n, y, yStride); break;
            case 4: Panel16PairR<TWeights, R4>(panel, next, group, n, y, yStride); break;
            case 5: Panel16PairR<TWeights, R5>(panel, next, group, n, y, yStride); break;
            case 6: Panel16PairR<TWeights, R6>(panel, next, group, n, y, yStride); break;
            case 7: Panel16PairR<TWeights, R7>(panel, next, group, n, y, yStride); break;
            default: Panel16PairR<TWeights, R8>(panel, next, group, n, y, yStride); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Panel16PairR<TWeights, TRows>(byte* panel, byte* next, float* x, int n, float* y, long yStride)
        where TWeights : struct, IWeightFormat where TRows : struct, IRowCount
    {
        int R = TRows.Count, step = DotKernel.Panel16Rows * TWeights.Bytes;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero, a4 = Vector512<float>.Zero, a5 = Vector512<float>.Zero, a6 = Vector512<float>.Zero, a7 = Vector512<float>.Zero, b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero, b2 = Vector512<float>.Zero, b3 = Vector512<float>.Zero, b4 = Vector512<float>.Zero, b5 = Vector512<float>.Zero, b6 = Vector512<float>.Zero, b7 = Vector512<float>.Zero;
        for (int k = 0; k < n; k++, panel += step, next += step, x += R)
        {
            Sse.Prefetch0(panel + PrefetchBytes);
            Sse.Prefetch0(next + PrefetchBytes);
            var w0 = TWeights.Load16(panel);
            var w1 = TWeights.Load16(next);
            { var v = Vector512.Create(x[0]); a0 = Avx512F.FusedMultiplyAdd(w0, v, a0); b0 = Avx512F.FusedMultiplyAdd(w1, v, b0); }
            if (R > 1) { var v = Vector512.Create(x[1]); a1 = Avx512F.FusedMultiplyAdd(w0, v, a1); b1 = Avx512F.FusedMultiplyAdd(w1, v, b1); }
            if (R > 2) { var v = Vector512.Create(x[2]); a2 = Avx512F.FusedMultiplyAdd(w0, v, a2); b2 = Avx512F.FusedMultiplyAdd(w1, v, b2); }
            if (R > 3) { var v = Vector512.Create(x[3]); a3 = Avx512F.FusedMultiplyAdd(w0, v, a3); b3 = Avx512F.FusedMultiplyAdd(w1, v, b3); }
            if (R > 4) { var v = Vector512.Create(x[4]); a4 = Avx512F.FusedMultiplyAdd(w0, v, a4); b4 = Avx512F.FusedMultiplyAdd(w1, v, b4); }
            if (R > 5) { var v = Vector512.Create(x[5]); a5 = Avx512F.FusedMultiplyAdd(w0, v, a5); b5 = Avx512F.FusedMultiplyAdd(w1, v, b5); }
            if (R > 6) { var v = Vector512.Create(x[6]); a6 = Avx512F.FusedMultiplyAdd(w0, v, a6); b6 = Avx512F.FusedMultiplyAdd(w1, v, b6); }
            if (R > 7) { var v = Vector512.Create(x[7]); a7 = Avx512F.FusedMultiplyAdd(w0, v, a7); b7 = Avx512F.FusedMultiplyAdd(w1, v, b7); }
        }
        { a0.Store(y + 0 * yStride); b0.Store(y + 0 * yStride + DotKernel.Panel16Rows); }
        if (R > 1) { a1.Store(y + 1 * yStride); b1.Store(y + 1 * yStride + DotKernel.Panel16Rows); }
        if (R > 2) { a2.Store(y + 2 * yStride); b2.Store(y + 2 * yStride + DotKernel.Panel16Rows); }
        if (R > 3) { a3.Store(y + 3 * yStride); b3.Store(y + 3 * yStride + DotKernel.Panel16Rows); }
        if (R > 4) { a4.Store(y + 4 * yStride); b4.Store(y + 4 * yStride + DotKernel.Panel16Rows); }
        if (R > 5) { a5.Store(y + 5 * yStride); b5.Store(y + 5 * yStride + DotKernel.Panel16Rows); }
        if (R > 6) { a6.Store(y + 6 * yStride); b6.Store(y + 6 * yStride + DotKernel.Panel16Rows); }
        if (R > 7) { a7.Store(y + 7 * yStride); b7.Store(y + 7 * yStride + DotKernel.Panel16Rows); }
    }
}

/// <summary>A row count as a type, so a kernel is compiled for each count with the unused rows' code removed.</summary>
internal interface IRowCount
{
    static abstract int Count { get; }
}

internal readonly struct R1 : IRowCount { public static int Count => 1; }
internal readonly struct R2 : IRowCount { public static int Count => 2; }
internal readonly struct R3 : IRowCount { public static int Count => 3; }
internal readonly struct R4 : IRowCount { public static int Count => 4; }
internal readonly struct R5 : IRowCount { public static int Count => 5; }
internal readonly struct R6 : IRowCount { public static int Count => 6; }
internal readonly struct R7 : IRowCount { public static int Count => 7; }
internal readonly struct R8 : IRowCount { public static int Count => 8; }
internal readonly struct R9 : IRowCount { public static int Count => 9; }
internal readonly struct R10 : IRowCount { public static int Count => 10; }
internal readonly struct R11 : IRowCount { public static int Count => 11; }
internal readonly struct R12 : IRowCount { public static int Count => 12; }
internal readonly struct R13 : IRowCount { public static int Count => 13; }
internal readonly struct R14 : IRowCount { public static int Count => 14; }
internal readonly struct R15 : IRowCount { public static int Count => 15; }
internal readonly struct R16 : IRowCount { public static int Count => 16; }

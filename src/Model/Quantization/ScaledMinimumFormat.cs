using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// The unsigned quants of a format with a scale and a minimum (value q·d + m): how many bytes a block's quants
/// take after its two fp16 values, and how to read its 32 values in weight order, 32 bytes at once or one at a time.
/// </summary>
internal unsafe interface IUnsignedQuants
{
    static abstract int Bytes { get; }
    static abstract BlockFormat Format { get; }
    static abstract Vector256<byte> Load(byte* quants);
    static abstract int Value(byte* quants, int k);
}

/// <summary>
/// ggml's formats with a scale d and a minimum m per 32-weight block (Q4_1, Q5_1): value q·d + m with q unsigned.
/// A panel's scale area holds each block's (d, m) pair, so one block column's four pairs widen with one load. The
/// dot product splits Σ(q·d + m)·x as ggml's <c>vec_dot_q4_1_q8_1</c> does: the exact integer lanes of Σq·x times
/// d·dx, as Q4_0's, and m·dx times the activation block's exact sum Σx, kept apart per row.
/// </summary>
internal abstract unsafe class ScaledMinimumFormat<TQuants> : BlockFormat where TQuants : struct, IUnsignedQuants
{
    public override int BytesPerBlock => 2 * sizeof(ushort) + TQuants.Bytes;
    public override int ScaleBytes => 2 * sizeof(ushort);

    /// <summary>ggml's <c>dequantize_row_q4_1</c>/<c>_q5_1</c>: q·d + m, the product rounded before the sum.</summary>
    public override void DequantizeBlock(byte* scales, byte* quants, float* values)
    {
        float d = Fp16.ToSingle(((ushort*)scales)[0]), m = Fp16.ToSingle(((ushort*)scales)[1]);
        for (int k = 0; k < BlockSize; k++) values[k] = TQuants.Value(quants, k) * d + m;
    }

    /// <summary>
    /// ggml's <c>quantize_row_q4_1_ref</c>/<c>_q5_1_ref</c> up to the quants' packing: d = (max-min)/levels from
    /// the float32 extremes, d and the minimum written to the block's first four bytes as fp16, and each value's
    /// quant, (x-min)/d + 0.5 truncated and capped at <paramref name="levels"/>, to <paramref name="quants"/> (the
    /// caller packs them).
    /// </summary>
    protected static void ScaleAndMinimum(ReadOnlySpan<float> values, Span<byte> block, int levels, Span<int> quants)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        for (int j = 0; j < BlockSize; j++)
        {
            float v = values[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float d = (max - min) / levels;
        float id = d != 0 ? 1.0f / d : 0.0f;
        BitConverter.TryWriteBytes(block, Fp16.FromSingle(d));
        BitConverter.TryWriteBytes(block[2..], Fp16.FromSingle(min));
        for (int j = 0; j < BlockSize; j++) quants[j] = Math.Min(levels, (int)(byte)((values[j] - min) * id + 0.5f));
    }

    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride) =>
        DotPanels<Kernels>(packed, row0, row1, blocksPerRow, panelRows, x, y, yStride);

    private readonly struct Kernels : IPanelKernels
    {
        public static int Batched(byte* panel, int blocks, QuantizedActivations x, int b, int groupEnd, float* y, long yStride)
        {
            // No 512-bit kernels for these formats: CPUs with AVX-512 run the 256-bit ones, which give the same bits.
            if (!Avx2.IsSupported) return b;
            for (; b + 2 <= groupEnd; b += 2)
            {
                sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                float* xs = x.Scales + (long)b * blocks, sums = x.Sums + (long)b * blocks;
                if (AvxVnni.IsSupported) Panel4Rows2<VnniDot>(panel, blocks, xq, xs, sums, y + b * yStride, yStride);
                else Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, sums, y + b * yStride, yStride);
            }
            return b;
        }

        public static void Single(byte* packed, byte* panel, long r, long blocksPerRow, int panelRows, QuantizedActivations x, int b, float* y)
        {
            int blocks = (int)blocksPerRow;
            sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
            float* xs = x.Scales + (long)b * blocks, sums = x.Sums + (long)b * blocks;
            if (panelRows == PanelRows && Avx2.IsSupported)
            {
                if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, sums, y);
                else Panel4<Avx2Dot>(panel, blocks, xq, xs, sums, y);
            }
            else if (panelRows == 1 && Avx2.IsSupported) *y = Row<Avx2Dot>(panel, blocks, xq, xs, sums);
            else
            {
                for (int i = 0; i < panelRows; i++) y[i] = RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs, sums);
            }
        }
    }


    /// <summary>
    /// Four rows of a panel. ggml's Σ(q·d + m)·x is split as its <c>vec_dot_q4_1_q8_1</c> splits it: per block, the
    /// exact integer lanes of Σq·x (unsigned nibbles against x) times d·dx into the row's eight float lanes, as Q4_0;
    /// and m·dx times the activation block's exact sum Σx into a separate float for each row, one fused multiply-add
    /// for all four rows' minimums. A row's result is its lanes' sum (<see cref="LaneSum"/>) plus that float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* sums, float* y) where TDot : struct, IInt8Dot
    {
        var acc0 = Vector256<float>.Zero;
        Vector256<float> acc1 = acc0, acc2 = acc0, acc3 = acc0;
        var minimums = Vector128<float>.Zero; // rows 0..3
        var odd = Vector256.Create(1, 3, 5, 7, 1, 3, 5, 7);
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * 2 * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += 2 * PanelRows, quants += PanelRows * TQuants.Bytes)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                var x = Vector256.Load(xq + (c + j) * BlockSize);
                var dm = Fp16.Widen8(scales) * Vector256.Create(xs[c + j]); // d0 m0 d1 m1 d2 m2 d3 m3, times dx
                minimums = Vector128.FusedMultiplyAdd(Avx2.PermuteVar8x32(dm, odd).GetLower(), Vector128.Create(sums[c + j]), minimums);
                acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, TQuants.Load(quants), x)), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, TQuants.Load(quants + TQuants.Bytes), x)), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, TQuants.Load(quants + 2 * TQuants.Bytes), x)), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 6), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, TQuants.Load(quants + 3 * TQuants.Bytes), x)), acc3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(acc0) + minimums.GetElement(0);
        y[1] = LaneSum.Of(acc1) + minimums.GetElement(1);
        y[2] = LaneSum.Of(acc2) + minimums.GetElement(2);
        y[3] = LaneSum.Of(acc3) + minimums.GetElement(3);
    }

    /// <summary>
    /// <see cref="Panel4{TDot}"/> for two activation rows (outputs <paramref name="yStride"/> apart): each weight row's
    /// nibbles are unpacked, and the column's scales widened, once for both. Every output's operations and their
    /// order are <see cref="Panel4{TDot}"/>'s, so its bits are too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4Rows2<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* sums, float* y, long yStride) where TDot : struct, IInt8Dot
    {
        long qRow = (long)blocks * BlockSize, sRow = blocks;
        var a0 = Vector256<float>.Zero; // activation row 0 against weight rows 0..3, then row 1's
        Vector256<float> a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        var minimums = Vector256<float>.Zero; // activation row 0's four weight rows, then row 1's
        var odd = Vector256.Create(1, 3, 5, 7, 1, 3, 5, 7);
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * 2 * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += 2 * PanelRows, quants += PanelRows * TQuants.Bytes)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                var x0 = Vector256.Load(xq + (c + j) * BlockSize);
                var x1 = Vector256.Load(xq + qRow + (c + j) * BlockSize);
                var wide = Fp16.Widen8(scales);
                var dm0 = wide * Vector256.Create(xs[c + j]);
                var dm1 = wide * Vector256.Create(xs[sRow + c + j]);
                // Both activation rows' m·dx in one register (row 0's in the low half) against their Σx: one fused
                // multiply-add for the eight minimums.
                var m01 = Avx2.PermuteVar8x32(wide, odd) * Vector256.Create(Vector128.Create(xs[c + j]), Vector128.Create(xs[sRow + c + j]));
                minimums = Vector256.FusedMultiplyAdd(m01, Vector256.Create(Vector128.Create(sums[c + j]), Vector128.Create(sums[sRow + c + j])), minimums);
                var n = TQuants.Load(quants);
                a0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a0);
                b0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b0);
                n = TQuants.Load(quants + TQuants.Bytes);
                a1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a1);
                b1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b1);
                n = TQuants.Load(quants + 2 * TQuants.Bytes);
                a2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a2);
                b2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b2);
                n = TQuants.Load(quants + 3 * TQuants.Bytes);
                a3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 6), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a3);
                b3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 6), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(a0) + minimums.GetElement(0);
        y[1] = LaneSum.Of(a1) + minimums.GetElement(1);
        y[2] = LaneSum.Of(a2) + minimums.GetElement(2);
        y[3] = LaneSum.Of(a3) + minimums.GetElement(3);
        y[yStride] = LaneSum.Of(b0) + minimums.GetElement(4);
        y[yStride + 1] = LaneSum.Of(b1) + minimums.GetElement(5);
        y[yStride + 2] = LaneSum.Of(b2) + minimums.GetElement(6);
        y[yStride + 3] = LaneSum.Of(b3) + minimums.GetElement(7);
    }

    /// <summary>One row in ggml's row layout (blocks one after another), as <see cref="Panel4{TDot}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs, float* sums) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        float minimum = 0;
        for (int c = 0; c < blocks; c++, row += 4 + TQuants.Bytes)
        {
            var lanes = TDot.Dot(Vector256<int>.Zero, TQuants.Load(row + 4), Vector256.Load(xq + c * BlockSize));
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)row) * xs[c]), Vector256.ConvertToSingle(lanes), acc);
            minimum = MathF.FusedMultiplyAdd(Fp16.ToSingle(*(ushort*)(row + 2)) * xs[c], sums[c], minimum);
        }
        return LaneSum.Of(acc) + minimum;
    }

    /// <summary>The same lanes and float operations in scalar code, for CPUs without AVX2: row <paramref name="row"/> of a packed matrix.</summary>
    internal static float RowPortable(byte* packed, long row, long blocksPerRow, int panelRows, sbyte* xq, float* xs, float* sums)
    {
        Span<float> acc = stackalloc float[8];
        float minimum = 0;
        for (int c = 0; c < blocksPerRow; c++)
        {
            byte* quants = packed + TQuants.Format.QuantOffset(row, c, blocksPerRow, panelRows);
            ushort* scales = (ushort*)(packed + TQuants.Format.ScaleOffset(row, c, blocksPerRow, panelRows));
            float d = Fp16.ToSingle(scales[0]) * xs[c];
            sbyte* x = xq + c * BlockSize;
            for (int lane = 0; lane < 8; lane++)
            {
                int sum = 0;
                for (int k = 4 * lane; k < 4 * lane + 4; k++)
                {
                    sum += TQuants.Value(quants, k) * x[k];
                }
                acc[lane] = MathF.FusedMultiplyAdd(d, sum, acc[lane]);
            }
            minimum = MathF.FusedMultiplyAdd(Fp16.ToSingle(scales[1]) * xs[c], sums[c], minimum);
        }
        return LaneSum.Of(acc) + minimum;
    }

}

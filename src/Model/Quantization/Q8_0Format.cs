using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's Q8_0: blocks of 32 weights, an fp16 scale d = amax/127 and 32 int8 quants round(x/d) (34 bytes,
/// 8.5 bits per weight).
/// </summary>
internal sealed unsafe class Q8_0Format : BlockFormat
{
    public override string Name => "q8_0";
    public override GgmlType Type => GgmlType.Q8_0;
    public override int BytesPerBlock => 34;

    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block) =>
        BitConverter.TryWriteBytes(block, QuantizeBlockReference(values, block[sizeof(ushort)..]));

    /// <summary>
    /// <c>quantize_row_q8_0_ref</c>, formula for formula: the reciprocal of the float32 scale (not of its fp16
    /// rounding) multiplies, and <c>roundf</c> rounds halves away from zero.
    /// </summary>
    internal static ushort QuantizeBlockReference(ReadOnlySpan<float> values, Span<byte> quants)
    {
        float amax = 0.0f;
        for (int j = 0; j < BlockSize; j++)
        {
            float v = MathF.Abs(values[j]);
            amax = amax > v ? amax : v;
        }
        float d = amax / ((1 << 7) - 1);
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < BlockSize; j++)
        {
            float x0 = values[j] * id;
            quants[j] = (byte)(sbyte)MathF.Round(x0, MidpointRounding.AwayFromZero);
        }
        return Fp16.FromSingle(d);
    }

    public override void DequantizeBlock(byte* scales, byte* quants, float* values)
    {
        float scale = Fp16.ToSingle(*(ushort*)scales);
        for (int j = 0; j < BlockSize; j++) values[j] = ((sbyte*)quants)[j] * scale;
    }

    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride) =>
        DotPanels<Kernels>(packed, row0, row1, blocksPerRow, panelRows, x, y, yStride);

    private readonly struct Kernels : IPanelKernels
    {
        public static int Batched(byte* panel, int blocks, QuantizedActivations x, int b, int groupEnd, float* y, long yStride)
        {
            if (Avx512BW.IsSupported)
            {
                // Four activation rows share each column's weight loads, magnitudes and signs, and its scale widening.
                for (; b + 4 <= groupEnd; b += 4)
                    Panel4x512Rows4(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks, y + b * yStride, yStride);
            }
            else if (Avx2.IsSupported)
            {
                // Two activation rows share each weight load, its magnitude and the column's scale widening.
                for (; b + 2 <= groupEnd; b += 2)
                {
                    if (AvxVnni.IsSupported) Panel4Rows2<VnniDot>(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks, y + b * yStride, yStride);
                    else Panel4Rows2<Avx2Dot>(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks, y + b * yStride, yStride);
                }
            }
            return b;
        }

        public static void Single(byte* packed, byte* panel, long r, long blocksPerRow, int panelRows, QuantizedActivations x, int b, float* y)
        {
            int blocks = (int)blocksPerRow;
            sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
            float* xs = x.Scales + (long)b * blocks;
            if (panelRows == PanelRows && Avx512BW.IsSupported) Panel4x512(panel, blocks, xq, xs, y);
            else if (panelRows == PanelRows && Avx2.IsSupported)
            {
                if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, y);
                else Panel4<Avx2Dot>(panel, blocks, xq, xs, y);
            }
            else if (panelRows == 1 && Avx2.IsSupported) *y = Row<Avx2Dot>(panel, blocks, xq, xs);
            else
            {
                for (int i = 0; i < panelRows; i++) y[i] = RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs);
            }
        }
    }


    /// <summary>Four rows of a panel in 256-bit registers (<see cref="SignedQuantKernels{TQuants}.Panel4{TDot}"/>).</summary>
    internal static void Panel4<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* y) where TDot : struct, IInt8Dot =>
        SignedQuantKernels<Quants>.Panel4<TDot>(panel, blocks, xq, xs, y);

    /// <summary>Two activation rows against four rows of a panel (<see cref="SignedQuantKernels{TQuants}.Panel4Rows2{TDot}"/>).</summary>
    internal static void Panel4Rows2<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* y, long yStride) where TDot : struct, IInt8Dot =>
        SignedQuantKernels<Quants>.Panel4Rows2<TDot>(panel, blocks, xq, xs, y, yStride);

    internal static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs) where TDot : struct, IInt8Dot =>
        SignedQuantKernels<Quants>.Row<TDot>(row, blocks, xq, xs);

    internal static float RowPortable(byte* packed, long row, long blocksPerRow, int panelRows, sbyte* xq, float* xs) =>
        SignedQuantKernels<Quants>.RowPortable(packed, row, blocksPerRow, panelRows, xq, xs);

    /// <summary>Q8_0's quants: 32 int8 weights as they are stored.</summary>
    internal readonly struct Quants : ISignedQuants
    {
        public static int Bytes => BlockSize;
        public static BlockFormat Format => Q8_0;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Load(byte* quants) => Vector256.Load((sbyte*)quants);

        public static int Value(byte* quants, int k) => ((sbyte*)quants)[k];
    }

    /// <summary>
    /// Four rows of a panel in 512-bit registers, two rows per register, with the same integer lanes and float
    /// operations as <see cref="Panel4{TDot}"/> (so the same bits). AVX-512 has no <c>vpsignb</c>, so x takes
    /// w's sign by a masked blend of x and -x (where w is 0, |w| is 0 and either will do). The scales of a
    /// group of four block columns are widened together (<see cref="Fp16.ScaleColumns"/>), a last group of
    /// fewer columns one column at a time; one flat loop with no calls, as in <see cref="Q4_0Format.Panel4x512"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4x512(byte* panel, int blocks, sbyte* xq, float* xs, float* y)
    {
        var rows01 = Vector512<float>.Zero; // row 0's eight float lanes, then row 1's
        var rows23 = rows01;
        var ones = Vector512.Create((short)1);
        var scale01 = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        var scale23 = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        var columnScales = Vector512<float>.Zero;
        ushort* scales = null;
        int columns = 0;
        for (int c = 0; c < blocks; c++, panel += PanelRows * BlockSize)
        {
            int j = c & (ColumnGroup - 1);
            if (j == 0)
            {
                columns = Math.Min(ColumnGroup, blocks - c);
                scales = (ushort*)panel;
                panel += columns * PanelRows * sizeof(ushort);
            }
            if (columns == ColumnGroup && (j & 3) == 0) columnScales = Fp16.ScaleColumns(scales + j * PanelRows, xs + c);
            var d = columns == ColumnGroup ? columnScales : Fp16.ToSingle4(scales + j * PanelRows, xs[c]).ToVector256Unsafe().ToVector512Unsafe();
            var column = Vector512.Create(columns == ColumnGroup ? (j & 3) * 4 : 0);
            // The column's two 64-byte lines, 8 KB ahead: the stream prefetcher alone left this loop waiting on memory.
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes);
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes + 64);
            var x = Avx512F.BroadcastVector256ToVector512((long*)(xq + c * BlockSize)).AsSByte();
            var negated = Vector512<sbyte>.Zero - x;
            var w01 = Vector512.Load((sbyte*)panel);
            var w23 = Vector512.Load((sbyte*)panel + 64);
            var lanes01 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(w01), Vector512.ConditionalSelect(Vector512.IsNegative(w01), negated, x)), ones);
            var lanes23 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(w23), Vector512.ConditionalSelect(Vector512.IsNegative(w23), negated, x)), ones);
            rows01 = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, scale01 + column), Vector512.ConvertToSingle(lanes01), rows01);
            rows23 = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, scale23 + column), Vector512.ConvertToSingle(lanes23), rows23);
        }
        // Into the four-rows layout LaneSum.Of4Rows takes: 128-bit lane r holding row r's lanes 0..3, or 4..7.
        const byte Firsts = 0b10_00_10_00, Seconds = 0b11_01_11_01;
        LaneSum.Of4Rows(Avx512F.Shuffle4x128(rows01, rows23, Firsts), Avx512F.Shuffle4x128(rows01, rows23, Seconds), y);
    }

    /// <summary>
    /// <see cref="Panel4x512"/> for four activation rows at once (their quants and scales one row of blocks
    /// apart; outputs <paramref name="yStride"/> apart): each column's two weight loads, their magnitudes and
    /// sign masks, and its weight-scale widening are done once for the four. Every row's integer lanes, scale
    /// products and float accumulation are exactly <see cref="Panel4x512"/>'s (so each output has its bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4x512Rows4(byte* panel, int blocks, sbyte* xq, float* xs, float* y, long yStride)
    {
        long qRow = (long)blocks * BlockSize, sRow = blocks;
        var a01 = Vector512<float>.Zero; // activation row 0: weight rows 0 and 1, then 2 and 3
        Vector512<float> a23 = a01, b01 = a01, b23 = a01, c01 = a01, c23 = a01, d01 = a01, d23 = a01;
        Vector512<float> scales0 = a01, scales1 = a01, scales2 = a01, scales3 = a01;
        var scale01 = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        var scale23 = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        // The scale set-up below is written out in both formats' four-row kernels on purpose: passing the four
        // scale registers to a shared helper by ref made the JIT keep them in memory (Q4_0 B = 8 steps 36-39 ms
        // became 48-53 ms in alternating runs).
        ushort* scales = null;
        int columns = 0;
        for (int c = 0; c < blocks; c++, panel += PanelRows * BlockSize)
        {
            int j = c & (ColumnGroup - 1);
            if (j == 0)
            {
                columns = Math.Min(ColumnGroup, blocks - c);
                scales = (ushort*)panel;
                panel += columns * PanelRows * sizeof(ushort);
            }
            Vector512<int> column;
            if (columns == ColumnGroup)
            {
                if ((j & 3) == 0)
                {
                    var widened = Fp16.Widen16(scales + j * PanelRows);
                    scales0 = widened * Fp16.ColumnFactors(xs + c);
                    scales1 = widened * Fp16.ColumnFactors(xs + sRow + c);
                    scales2 = widened * Fp16.ColumnFactors(xs + 2 * sRow + c);
                    scales3 = widened * Fp16.ColumnFactors(xs + 3 * sRow + c);
                }
                column = Vector512.Create((j & 3) * 4);
            }
            else
            {
                scales0 = Fp16.ToSingle4(scales + j * PanelRows, xs[c]).ToVector256Unsafe().ToVector512Unsafe();
                scales1 = Fp16.ToSingle4(scales + j * PanelRows, xs[sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                scales2 = Fp16.ToSingle4(scales + j * PanelRows, xs[2 * sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                scales3 = Fp16.ToSingle4(scales + j * PanelRows, xs[3 * sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                column = Vector512<int>.Zero;
            }
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes);
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes + 64);
            var w01 = Vector512.Load((sbyte*)panel);
            var w23 = Vector512.Load((sbyte*)panel + 64);
            var magnitude01 = Avx512BW.Abs(w01);
            var magnitude23 = Avx512BW.Abs(w23);
            var negative01 = Vector512.IsNegative(w01);
            var negative23 = Vector512.IsNegative(w23);
            var pick01 = scale01 + column;
            var pick23 = scale23 + column;
            sbyte* x = xq + c * BlockSize;
            (a01, a23) = Accumulate(a01, a23, scales0, pick01, pick23, magnitude01, magnitude23, negative01, negative23, x);
            (b01, b23) = Accumulate(b01, b23, scales1, pick01, pick23, magnitude01, magnitude23, negative01, negative23, x + qRow);
            (c01, c23) = Accumulate(c01, c23, scales2, pick01, pick23, magnitude01, magnitude23, negative01, negative23, x + 2 * qRow);
            (d01, d23) = Accumulate(d01, d23, scales3, pick01, pick23, magnitude01, magnitude23, negative01, negative23, x + 3 * qRow);
        }
        const byte Firsts = 0b10_00_10_00, Seconds = 0b11_01_11_01;
        LaneSum.Of4Rows(Avx512F.Shuffle4x128(a01, a23, Firsts), Avx512F.Shuffle4x128(a01, a23, Seconds), y);
        LaneSum.Of4Rows(Avx512F.Shuffle4x128(b01, b23, Firsts), Avx512F.Shuffle4x128(b01, b23, Seconds), y + yStride);
        LaneSum.Of4Rows(Avx512F.Shuffle4x128(c01, c23, Firsts), Avx512F.Shuffle4x128(c01, c23, Seconds), y + 2 * yStride);
        LaneSum.Of4Rows(Avx512F.Shuffle4x128(d01, d23, Firsts), Avx512F.Shuffle4x128(d01, d23, Seconds), y + 3 * yStride);
    }

    /// <summary>One activation row's step of <see cref="Panel4x512"/> over a loaded column (the same operations in the same order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Rows01, Vector512<float> Rows23) Accumulate(Vector512<float> rows01, Vector512<float> rows23,
        Vector512<float> d, Vector512<int> pick01, Vector512<int> pick23, Vector512<byte> magnitude01, Vector512<byte> magnitude23,
        Vector512<sbyte> negative01, Vector512<sbyte> negative23, sbyte* xq)
    {
        var ones = Vector512.Create((short)1);
        var x = Avx512F.BroadcastVector256ToVector512((long*)xq).AsSByte();
        var negated = Vector512<sbyte>.Zero - x;
        var lanes01 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude01, Vector512.ConditionalSelect(negative01, negated, x)), ones);
        var lanes23 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude23, Vector512.ConditionalSelect(negative23, negated, x)), ones);
        return (Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, pick01), Vector512.ConvertToSingle(lanes01), rows01),
            Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, pick23), Vector512.ConvertToSingle(lanes23), rows23));
    }

}

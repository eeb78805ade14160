using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's Q4_0: blocks of 32 weights, an fp16 scale d = max/-8 (max the value of largest magnitude, sign
/// kept) and 16 bytes of 4-bit quants q with value (q-8)·d. Byte j holds weight j in its low nibble and weight
/// j+16 in its high nibble (18 bytes, 4.5 bits per weight).
/// </summary>
internal sealed unsafe class Q4_0Format : BlockFormat
{
    public override string Name => "q4_0";
    public override GgmlType Type => GgmlType.Q4_0;
    public override int BytesPerBlock => 18;

    /// <summary>
    /// <c>quantize_row_q4_0_ref</c>, formula for formula: the first value of largest magnitude sets the scale,
    /// and (int8)(x/d + 8.5) truncates, capped at 15.
    /// </summary>
    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block)
    {
        var quants = block[sizeof(ushort)..];
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < BlockSize; j++)
        {
            float v = values[j];
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = values[j] * id;
            float x1 = values[BlockSize / 2 + j] * id;
            byte xi0 = (byte)Math.Min(15, (int)(sbyte)(x0 + 8.5f));
            byte xi1 = (byte)Math.Min(15, (int)(sbyte)(x1 + 8.5f));
            quants[j] = (byte)(xi0 | (xi1 << 4));
        }
        BitConverter.TryWriteBytes(block, Fp16.FromSingle(d));
    }

    public override void DequantizeBlock(byte* scales, byte* quants, float* values)
    {
        float scale = Fp16.ToSingle(*(ushort*)scales);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            values[j] = ((quants[j] & 0x0F) - 8) * scale;
            values[j + BlockSize / 2] = ((quants[j] >> 4) - 8) * scale;
        }
    }

    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride) =>
        DotPanels<Kernels>(packed, row0, row1, blocksPerRow, panelRows, x, y, yStride);

    private readonly struct Kernels : IPanelKernels
    {
        public static int Batched(byte* panel, int blocks, QuantizedActivations x, int b, int groupEnd, float* y, long yStride)
        {
            if (Avx512BW.IsSupported)
            {
                // Four activation rows share each column's nibble unpacking and weight-scale widening.
                for (; b + 4 <= groupEnd; b += 4)
                    Panel4x512Rows4(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks,
                        x.LaneBias + (long)b * blocks * 8, y + b * yStride, yStride);
            }
            else if (Avx2.IsSupported)
            {
                // Two activation rows share each weight row's nibble unpacking and the column's scale widening.
                for (; b + 2 <= groupEnd; b += 2)
                {
                    sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                    float* xs = x.Scales + (long)b * blocks;
                    int* bias = x.LaneBias + (long)b * blocks * 8;
                    if (AvxVnni.IsSupported) Panel4Rows2<VnniDot>(panel, blocks, xq, xs, bias, y + b * yStride, yStride);
                    else Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, bias, y + b * yStride, yStride);
                }
            }
            return b;
        }

        public static void Single(byte* packed, byte* panel, long r, long blocksPerRow, int panelRows, QuantizedActivations x, int b, float* y)
        {
            int blocks = (int)blocksPerRow;
            sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
            float* xs = x.Scales + (long)b * blocks;
            int* bias = x.LaneBias + (long)b * blocks * 8;
            if (panelRows == PanelRows && Avx512BW.IsSupported) Panel4x512(panel, blocks, xq, xs, bias, y);
            else if (panelRows == PanelRows && Avx2.IsSupported)
            {
                if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, bias, y);
                else Panel4<Avx2Dot>(panel, blocks, xq, xs, bias, y);
            }
            else if (panelRows == 1 && Avx2.IsSupported) *y = Row<Avx2Dot>(panel, blocks, xq, xs, bias);
            else
            {
                for (int i = 0; i < panelRows; i++) y[i] = RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs);
            }
        }
    }


    /// <summary>
    /// Four rows of a panel: each row's 16 bytes unpacked to 32 nibbles in weight order, multiplied as
    /// unsigned bytes against x, with the activation block's -8·Σx lane sums as the addend, which gives the
    /// exact Σ(q-8)·x lanes of ggml's <c>vec_dot_q4_0_q8_0</c>; then float accumulation as for Q8_0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, int* bias, float* y) where TDot : struct, IInt8Dot
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = acc0;
        var acc2 = acc0;
        var acc3 = acc0;
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += PanelRows, quants += PanelRows * 16)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                var x = Vector256.Load(xq + (c + j) * BlockSize);
                var addend = Vector256.Load(bias + (c + j) * 8);
                var d = Fp16.ToSingle4(scales, xs[c + j]).ToVector256Unsafe();
                acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 0), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(quants), x)), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 1), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(quants + 16), x)), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 2), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(quants + 32), x)), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 3), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(quants + 48), x)), acc3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(acc0);
        y[1] = LaneSum.Of(acc1);
        y[2] = LaneSum.Of(acc2);
        y[3] = LaneSum.Of(acc3);
    }

    /// <summary>
    /// <see cref="Panel4{TDot}"/> for two activation rows (quants, scales and lane biases one row of blocks apart,
    /// outputs <paramref name="yStride"/> apart): each weight row's nibbles are unpacked once, and the column's
    /// scales widened once, for both. Every output's operations and their order are <see cref="Panel4{TDot}"/>'s,
    /// so its bits are too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4Rows2<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, int* bias, float* y, long yStride) where TDot : struct, IInt8Dot
    {
        long qRow = (long)blocks * BlockSize, sRow = blocks, biasRow = (long)blocks * 8;
        var a0 = Vector256<float>.Zero; // activation row 0 against weight rows 0..3, then row 1's
        Vector256<float> a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += PanelRows, quants += PanelRows * 16)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                var x0 = Vector256.Load(xq + (c + j) * BlockSize);
                var x1 = Vector256.Load(xq + qRow + (c + j) * BlockSize);
                var addend0 = Vector256.Load(bias + (c + j) * 8);
                var addend1 = Vector256.Load(bias + biasRow + (c + j) * 8);
                var wide = Fp16.Widen4(scales);
                var d0 = (wide * Vector128.Create(xs[c + j])).ToVector256Unsafe();
                var d1 = (wide * Vector128.Create(xs[sRow + c + j])).ToVector256Unsafe();
                var n = Nibbles(quants);
                a0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d0, 0), Vector256.ConvertToSingle(TDot.Dot(addend0, n, x0)), a0);
                b0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d1, 0), Vector256.ConvertToSingle(TDot.Dot(addend1, n, x1)), b0);
                n = Nibbles(quants + 16);
                a1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d0, 1), Vector256.ConvertToSingle(TDot.Dot(addend0, n, x0)), a1);
                b1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d1, 1), Vector256.ConvertToSingle(TDot.Dot(addend1, n, x1)), b1);
                n = Nibbles(quants + 32);
                a2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d0, 2), Vector256.ConvertToSingle(TDot.Dot(addend0, n, x0)), a2);
                b2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d1, 2), Vector256.ConvertToSingle(TDot.Dot(addend1, n, x1)), b2);
                n = Nibbles(quants + 48);
                a3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d0, 3), Vector256.ConvertToSingle(TDot.Dot(addend0, n, x0)), a3);
                b3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d1, 3), Vector256.ConvertToSingle(TDot.Dot(addend1, n, x1)), b3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(a0);
        y[1] = LaneSum.Of(a1);
        y[2] = LaneSum.Of(a2);
        y[3] = LaneSum.Of(a3);
        y[yStride] = LaneSum.Of(b0);
        y[yStride + 1] = LaneSum.Of(b1);
        y[yStride + 2] = LaneSum.Of(b2);
        y[yStride + 3] = LaneSum.Of(b3);
    }

    /// <summary>
    /// Four rows of a panel in 512-bit registers, with the same integer lanes and float operations as
    /// <see cref="Panel4{TDot}"/> (so the same bits). A block column's four rows of 16 quant bytes are one
    /// 64-byte load; masking and shifting it gives, in 128-bit lane r, row r's weights 0..15 (low nibbles) and
    /// 16..31 (high nibbles), against activations 0..15 and 16..31 broadcast to every lane. Each product is then
    /// row r's integer lanes 0..3 and 4..7 in 128-bit lane r: no shuffles to unpack, and one multiply chain
    /// per 16 weights of four rows where the 256-bit kernel needs one per 32 of one row. The scales of a
    /// group of four block columns are widened together (<see cref="Fp16.ScaleColumns"/>); a last group of
    /// fewer columns widens them one column at a time. One flat loop with no calls: the JIT keeps the
    /// accumulators in registers (a nested loop after a call made it spill them every column).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4x512(byte* panel, int blocks, sbyte* xq, float* xs, int* bias, float* y)
    {
        var low = Vector512<float>.Zero; // row r's float lanes 0..3 in 128-bit lane r
        var high = low;                  // and its lanes 4..7
        var mask = Vector512.Create((byte)0x0F);
        var ones = Vector512.Create((short)1);
        var rowScale = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        var columnScales = Vector512<float>.Zero;
        ushort* scales = null;
        int columns = 0;
        for (int c = 0; c < blocks; c++, panel += PanelRows * 16)
        {
            int j = c & (ColumnGroup - 1);
            if (j == 0)
            {
                columns = Math.Min(ColumnGroup, blocks - c);
                scales = (ushort*)panel;
                panel += columns * PanelRows * sizeof(ushort);
            }
            if (columns == ColumnGroup && (j & 3) == 0) columnScales = Fp16.ScaleColumns(scales + j * PanelRows, xs + c);
            var d = columns == ColumnGroup
                ? Avx512F.PermuteVar16x32(columnScales, rowScale + Vector512.Create((j & 3) * 4))
                : Avx512F.PermuteVar16x32(Fp16.ToSingle4(scales + j * PanelRows, xs[c]).ToVector256Unsafe().ToVector512Unsafe(), rowScale);
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes); // the column's one 64-byte line, 8 KB ahead (see there)
            var raw = Vector512.Load(panel);
            var lowNibbles = raw & mask;
            var highNibbles = Vector512.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
            int* x = (int*)(xq + c * BlockSize);
            int* addend = bias + c * 8;
            var first = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lowNibbles, Avx512F.BroadcastVector128ToVector512(x).AsSByte()), ones)
                + Avx512F.BroadcastVector128ToVector512(addend);
            var second = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(highNibbles, Avx512F.BroadcastVector128ToVector512(x + 4).AsSByte()), ones)
                + Avx512F.BroadcastVector128ToVector512(addend + 4);
            low = Vector512.FusedMultiplyAdd(d, Vector512.ConvertToSingle(first), low);
            high = Vector512.FusedMultiplyAdd(d, Vector512.ConvertToSingle(second), high);
        }
        LaneSum.Of4Rows(low, high, y);
    }

    /// <summary>
    /// <see cref="Panel4x512"/> for four activation rows at once (their quants, scales and lane biases one row of
    /// blocks apart; outputs <paramref name="yStride"/> apart): each column's nibbles are unpacked and its weight
    /// scales widened once for the four, which is most of what a batched step repeats per row. Every row's
    /// integer lanes, scale products and float accumulation are exactly <see cref="Panel4x512"/>'s, so each
    /// output has the same bits as the one-row kernel gives it (batch invariance).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4x512Rows4(byte* panel, int blocks, sbyte* xq, float* xs, int* bias, float* y, long yStride)
    {
        long qRow = (long)blocks * BlockSize, sRow = blocks, bRow = (long)blocks * 8;
        var low0 = Vector512<float>.Zero;
        Vector512<float> high0 = low0, low1 = low0, high1 = low0, low2 = low0, high2 = low0, low3 = low0, high3 = low0;
        Vector512<float> scales0 = low0, scales1 = low0, scales2 = low0, scales3 = low0;
        var mask = Vector512.Create((byte)0x0F);
        var rowScale = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        // The scale set-up below is written out in both formats' four-row kernels on purpose: passing the four
        // scale registers to a shared helper by ref made the JIT keep them in memory (Q4_0 B = 8 steps 36-39 ms
        // became 48-53 ms in alternating runs).
        ushort* scales = null;
        int columns = 0;
        for (int c = 0; c < blocks; c++, panel += PanelRows * 16)
        {
            int j = c & (ColumnGroup - 1);
            if (j == 0)
            {
                columns = Math.Min(ColumnGroup, blocks - c);
                scales = (ushort*)panel;
                panel += columns * PanelRows * sizeof(ushort);
            }
            Vector512<int> pick;
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
                pick = rowScale + Vector512.Create((j & 3) * 4);
            }
            else
            {
                scales0 = Fp16.ToSingle4(scales + j * PanelRows, xs[c]).ToVector256Unsafe().ToVector512Unsafe();
                scales1 = Fp16.ToSingle4(scales + j * PanelRows, xs[sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                scales2 = Fp16.ToSingle4(scales + j * PanelRows, xs[2 * sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                scales3 = Fp16.ToSingle4(scales + j * PanelRows, xs[3 * sRow + c]).ToVector256Unsafe().ToVector512Unsafe();
                pick = rowScale;
            }
            Sse.Prefetch0(panel + DotKernel512.PrefetchBytes);
            var raw = Vector512.Load(panel);
            var lowNibbles = raw & mask;
            var highNibbles = Vector512.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
            int* x = (int*)(xq + c * BlockSize);
            int* addend = bias + c * 8;
            (low0, high0) = Accumulate(low0, high0, Avx512F.PermuteVar16x32(scales0, pick), lowNibbles, highNibbles, x, addend);
            (low1, high1) = Accumulate(low1, high1, Avx512F.PermuteVar16x32(scales1, pick), lowNibbles, highNibbles, (int*)((sbyte*)x + qRow), addend + bRow);
            (low2, high2) = Accumulate(low2, high2, Avx512F.PermuteVar16x32(scales2, pick), lowNibbles, highNibbles, (int*)((sbyte*)x + 2 * qRow), addend + 2 * bRow);
            (low3, high3) = Accumulate(low3, high3, Avx512F.PermuteVar16x32(scales3, pick), lowNibbles, highNibbles, (int*)((sbyte*)x + 3 * qRow), addend + 3 * bRow);
        }
        LaneSum.Of4Rows(low0, high0, y);
        LaneSum.Of4Rows(low1, high1, y + yStride);
        LaneSum.Of4Rows(low2, high2, y + 2 * yStride);
        LaneSum.Of4Rows(low3, high3, y + 3 * yStride);
    }

    /// <summary>One activation row's step of <see cref="Panel4x512"/> over an unpacked column (the same operations in the same order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Low, Vector512<float> High) Accumulate(Vector512<float> low, Vector512<float> high, Vector512<float> d,
        Vector512<byte> lowNibbles, Vector512<byte> highNibbles, int* x, int* addend)
    {
        var ones = Vector512.Create((short)1);
        var first = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lowNibbles, Avx512F.BroadcastVector128ToVector512(x).AsSByte()), ones)
            + Avx512F.BroadcastVector128ToVector512(addend);
        var second = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(highNibbles, Avx512F.BroadcastVector128ToVector512(x + 4).AsSByte()), ones)
            + Avx512F.BroadcastVector128ToVector512(addend + 4);
        return (Vector512.FusedMultiplyAdd(d, Vector512.ConvertToSingle(first), low), Vector512.FusedMultiplyAdd(d, Vector512.ConvertToSingle(second), high));
    }

    /// <summary>One row in ggml's row layout (18-byte blocks one after another).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs, int* bias) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        for (int c = 0; c < blocks; c++, row += 18)
        {
            var lanes = TDot.Dot(Vector256.Load(bias + c * 8), Nibbles(row + sizeof(ushort)), Vector256.Load(xq + c * BlockSize));
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)row) * xs[c]), Vector256.ConvertToSingle(lanes), acc);
        }
        return LaneSum.Of(acc);
    }

    /// <summary>The same lanes and float operations in scalar code, for CPUs without AVX2: row <paramref name="row"/> of a packed matrix.</summary>
    internal static float RowPortable(byte* packed, long row, long blocksPerRow, int panelRows, sbyte* xq, float* xs)
    {
        Span<float> acc = stackalloc float[8];
        for (int c = 0; c < blocksPerRow; c++)
        {
            byte* quants = packed + Q4_0.QuantOffset(row, c, blocksPerRow, panelRows);
            float d = Fp16.ToSingle(*(ushort*)(packed + Q4_0.ScaleOffset(row, c, blocksPerRow, panelRows))) * xs[c];
            sbyte* x = xq + c * BlockSize;
            for (int lane = 0; lane < 8; lane++)
            {
                int sum = 0;
                for (int k = 4 * lane; k < 4 * lane + 4; k++)
                {
                    int q = k < 16 ? quants[k] & 0x0F : quants[k - 16] >> 4;
                    sum += (q - 8) * x[k];
                }
                acc[lane] = MathF.FusedMultiplyAdd(d, sum, acc[lane]);
            }
        }
        return LaneSum.Of(acc);
    }

    /// <summary>16 bytes to 32 nibbles in weight order: the low nibbles (weights 0..15), then the high ones (16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Nibbles(byte* quants)
    {
        var raw = Vector128.Load(quants);
        var mask = Vector128.Create((byte)0x0F);
        var high = Vector128.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
        return Vector256.Create(raw & mask, high);
    }
}

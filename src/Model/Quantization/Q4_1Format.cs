using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's Q4_1: blocks of 32 weights, an fp16 scale d = (max-min)/15, an fp16 minimum m, and 16 bytes of 4-bit
/// quants q with value q·d + m (20 bytes, 5 bits per weight). Byte j holds weight j in its low nibble and weight
/// j+16 in its high nibble, as Q4_0. It is also what a Q4_K tensor runs as (<see cref="KQuantConversion"/>): each
/// of Q4_K's 32-weight sub-blocks is a Q4_1 block whose scale and minimum are rounded to fp16, so a Q4_K_M file keeps
/// 5 bits per weight in memory instead of Q8_0's 8.5.
/// A panel's scale area holds each block's (d, m) pair, so one column's four pairs widen with one load.
/// </summary>
internal sealed unsafe class Q4_1Format : BlockFormat
{
    public override string Name => "q4_1";
    public override GgmlType Type => GgmlType.Q4_1;
    public override int BytesPerBlock => 20;
    public override int ScaleBytes => 2 * sizeof(ushort);

    /// <summary>
    /// <c>quantize_row_q4_1_ref</c>, formula for formula: d = (max-min)/15 from the float32 extremes, and
    /// (int8)((x-min)/d + 0.5) truncates, capped at 15.
    /// </summary>
    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        for (int j = 0; j < BlockSize; j++)
        {
            float v = values[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float d = (max - min) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        BitConverter.TryWriteBytes(block, Fp16.FromSingle(d));
        BitConverter.TryWriteBytes(block[2..], Fp16.FromSingle(min));
        for (int j = 0; j < BlockSize / 2; j++)
        {
            float x0 = (values[j] - min) * id;
            float x1 = (values[BlockSize / 2 + j] - min) * id;
            byte xi0 = (byte)Math.Min(15, (int)(sbyte)(x0 + 0.5f));
            byte xi1 = (byte)Math.Min(15, (int)(sbyte)(x1 + 0.5f));
            block[4 + j] = (byte)(xi0 | (xi1 << 4));
        }
    }

    /// <summary><c>dequantize_row_q4_1</c>: q·d + m, the product rounded before the sum.</summary>
    public override void DequantizeBlock(byte* scales, byte* quants, float* values)
    {
        float d = Fp16.ToSingle(((ushort*)scales)[0]), m = Fp16.ToSingle(((ushort*)scales)[1]);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            values[j] = (quants[j] & 0x0F) * d + m;
            values[j + BlockSize / 2] = (quants[j] >> 4) * d + m;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride)
    {
        int blocks = (int)blocksPerRow;
        // Row groups over chunks of panels, as Q4_0 (see there). There is no 512-bit kernel for Q4_1: CPUs with
        // AVX-512 run the 256-bit ones, which give the same bits.
        for (long chunk = row0; chunk < row1; chunk += PanelChunk * panelRows)
        for (int group = 0; group < x.Batch; group += RowGroup)
        for (long r = chunk, chunkEnd = Math.Min(row1, chunk + PanelChunk * panelRows); r < chunkEnd; r += panelRows)
        {
            int groupEnd = Math.Min(x.Batch, group + RowGroup);
            byte* panel = packed + ScaleOffset(r, 0, blocksPerRow, panelRows);
            int b = group;
            if (panelRows == PanelRows && Avx2.IsSupported)
            {
                for (; b + 2 <= groupEnd; b += 2)
                {
                    sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                    float* xs = x.Scales + (long)b * blocks, sums = x.Sums + (long)b * blocks;
                    if (AvxVnni.IsSupported) Panel4Rows2<VnniDot>(panel, blocks, xq, xs, sums, y + b * yStride + r, yStride);
                    else Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, sums, y + b * yStride + r, yStride);
                }
            }
            for (; b < groupEnd; b++)
            {
                sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                float* xs = x.Scales + (long)b * blocks, sums = x.Sums + (long)b * blocks;
                float* yb = y + b * yStride + r;
                if (panelRows == PanelRows && Avx2.IsSupported)
                {
                    if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, sums, yb);
                    else Panel4<Avx2Dot>(panel, blocks, xq, xs, sums, yb);
                }
                else if (panelRows == 1 && Avx2.IsSupported) *yb = Row<Avx2Dot>(panel, blocks, xq, xs, sums);
                else
                {
                    for (int i = 0; i < panelRows; i++) yb[i] = RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs, sums);
                }
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
            for (int j = 0; j < columns; j++, scales += 2 * PanelRows, quants += PanelRows * 16)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                var x = Vector256.Load(xq + (c + j) * BlockSize);
                var dm = Fp16.Widen8(scales) * Vector256.Create(xs[c + j]); // d0 m0 d1 m1 d2 m2 d3 m3, times dx
                minimums = Vector128.FusedMultiplyAdd(Avx2.PermuteVar8x32(dm, odd).GetLower(), Vector128.Create(sums[c + j]), minimums);
                acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, Nibbles(quants), x)), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, Nibbles(quants + 16), x)), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, Nibbles(quants + 32), x)), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm, 6), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, Nibbles(quants + 48), x)), acc3);
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
            for (int j = 0; j < columns; j++, scales += 2 * PanelRows, quants += PanelRows * 16)
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
                var n = Nibbles(quants);
                a0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a0);
                b0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 0), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b0);
                n = Nibbles(quants + 16);
                a1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a1);
                b1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 2), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b1);
                n = Nibbles(quants + 32);
                a2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm0, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x0)), a2);
                b2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(dm1, 4), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, n, x1)), b2);
                n = Nibbles(quants + 48);
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

    /// <summary>One row in ggml's row layout (20-byte blocks one after another), as <see cref="Panel4{TDot}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs, float* sums) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        float minimum = 0;
        for (int c = 0; c < blocks; c++, row += 20)
        {
            var lanes = TDot.Dot(Vector256<int>.Zero, Nibbles(row + 4), Vector256.Load(xq + c * BlockSize));
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
            byte* quants = packed + Q4_1.QuantOffset(row, c, blocksPerRow, panelRows);
            ushort* scales = (ushort*)(packed + Q4_1.ScaleOffset(row, c, blocksPerRow, panelRows));
            float d = Fp16.ToSingle(scales[0]) * xs[c];
            sbyte* x = xq + c * BlockSize;
            for (int lane = 0; lane < 8; lane++)
            {
                int sum = 0;
                for (int k = 4 * lane; k < 4 * lane + 4; k++)
                {
                    int q = k < 16 ? quants[k] & 0x0F : quants[k - 16] >> 4;
                    sum += q * x[k];
                }
                acc[lane] = MathF.FusedMultiplyAdd(d, sum, acc[lane]);
            }
            minimum = MathF.FusedMultiplyAdd(Fp16.ToSingle(scales[1]) * xs[c], sums[c], minimum);
        }
        return LaneSum.Of(acc) + minimum;
    }

    private static Vector256<byte> Nibbles(byte* quants) => Q4_0Format.Nibbles(quants);
}

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

    protected override ushort QuantizeBlock(ReadOnlySpan<float> values, Span<byte> quants) => QuantizeBlockReference(values, quants);

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

    public override void DequantizeBlock(float scale, byte* quants, float* values)
    {
        for (int j = 0; j < BlockSize; j++) values[j] = ((sbyte*)quants)[j] * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride)
    {
        int blocks = (int)blocksPerRow;
        for (long r = row0; r < row1; r += panelRows)
        {
            byte* panel = packed + ScaleOffset(r, 0, blocksPerRow, panelRows);
            for (int b = 0; b < x.Batch; b++) // the panel stays in L1 while every activation row passes over it
            {
                sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                float* xs = x.Scales + (long)b * blocks;
                float* yb = y + b * yStride + r;
                if (panelRows == PanelRows && Avx512BW.IsSupported) Panel4x512(panel, blocks, xq, xs, yb);
                else if (panelRows == PanelRows && Avx2.IsSupported)
                {
                    if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, yb);
                    else Panel4<Avx2Dot>(panel, blocks, xq, xs, yb);
                }
                else if (panelRows == 1 && Avx2.IsSupported) *yb = Row<Avx2Dot>(panel, blocks, xq, xs);
                else
                {
                    for (int i = 0; i < panelRows; i++) yb[i] = RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs);
                }
            }
        }
    }

    /// <summary>
    /// Four rows of a panel: per block column, each row's 32 int8 products summed exactly in eight int32 lanes
    /// (|w| against x with w's sign, the operand order the instructions need), widened to float and
    /// accumulated lane by lane with the block's two scales, as ggml's AVX2 <c>vec_dot_q8_0_q8_0</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Panel4<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* y) where TDot : struct, IInt8Dot
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = acc0;
        var acc2 = acc0;
        var acc3 = acc0;
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            sbyte* quants = (sbyte*)(panel + columns * PanelRows * sizeof(ushort));
            for (int j = 0; j < columns; j++, scales += PanelRows, quants += PanelRows * BlockSize)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes + 64);
                var x = Vector256.Load(xq + (c + j) * BlockSize);
                var d = Fp16.ToSingle4(scales, xs[c + j]).ToVector256Unsafe();
                acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 0), Vector256.ConvertToSingle(Product<TDot>(quants, x)), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 1), Vector256.ConvertToSingle(Product<TDot>(quants + 32, x)), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 2), Vector256.ConvertToSingle(Product<TDot>(quants + 64, x)), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 3), Vector256.ConvertToSingle(Product<TDot>(quants + 96, x)), acc3);
            }
            panel = (byte*)quants;
        }
        y[0] = LaneSum.Of(acc0);
        y[1] = LaneSum.Of(acc1);
        y[2] = LaneSum.Of(acc2);
        y[3] = LaneSum.Of(acc3);
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

    /// <summary>One row in ggml's row layout (34-byte blocks one after another).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        for (int c = 0; c < blocks; c++, row += 34)
        {
            var x = Vector256.Load(xq + c * BlockSize);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)row) * xs[c]), Vector256.ConvertToSingle(Product<TDot>((sbyte*)(row + sizeof(ushort)), x)), acc);
        }
        return LaneSum.Of(acc);
    }

    /// <summary>The same lanes and the same float operations in scalar code, for CPUs without AVX2: row <paramref name="row"/> of a packed matrix.</summary>
    internal static float RowPortable(byte* packed, long row, long blocksPerRow, int panelRows, sbyte* xq, float* xs)
    {
        Span<float> acc = stackalloc float[8];
        for (int c = 0; c < blocksPerRow; c++)
        {
            float d = Fp16.ToSingle(*(ushort*)(packed + Q8_0.ScaleOffset(row, c, blocksPerRow, panelRows))) * xs[c];
            sbyte* w = (sbyte*)(packed + Q8_0.QuantOffset(row, c, blocksPerRow, panelRows)), x = xq + c * BlockSize;
            for (int lane = 0; lane < 8; lane++)
            {
                int sum = 0;
                for (int k = 4 * lane; k < 4 * lane + 4; k++) sum += w[k] * x[k];
                acc[lane] = MathF.FusedMultiplyAdd(d, sum, acc[lane]);
            }
        }
        return LaneSum.Of(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Product<TDot>(sbyte* quants, Vector256<sbyte> x) where TDot : struct, IInt8Dot
    {
        var w = Vector256.Load(quants);
        return TDot.Dot(Vector256<int>.Zero, Avx2.Abs(w), Avx2.Sign(x, w));
    }
}

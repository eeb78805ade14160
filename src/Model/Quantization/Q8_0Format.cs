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
        long columnBytes = panelRows * BytesPerBlock;
        int blocks = (int)blocksPerRow;
        for (long r = row0; r < row1; r += panelRows)
        {
            byte* panel = packed + ScaleOffset(r, 0, blocksPerRow, panelRows);
            for (int b = 0; b < x.Batch; b++)
            {
                sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
                float* xs = x.Scales + (long)b * blocks;
                float* yb = y + b * yStride + r;
                if (panelRows == PanelRows && Avx2.IsSupported)
                {
                    if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, yb);
                    else Panel4<Avx2Dot>(panel, blocks, xq, xs, yb);
                }
                else
                {
                    for (int i = 0; i < panelRows; i++)
                        yb[i] = Avx2.IsSupported
                            ? Row<Avx2Dot>(panel + i * sizeof(ushort), panel + panelRows * sizeof(ushort) + i * QuantBytes, columnBytes, blocks, xq, xs)
                            : RowPortable(panel + i * sizeof(ushort), panel + panelRows * sizeof(ushort) + i * QuantBytes, columnBytes, blocks, xq, xs);
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
        const int Column = PanelRows * 34, Quants = PanelRows * sizeof(ushort);
        var acc0 = Vector256<float>.Zero;
        var acc1 = acc0;
        var acc2 = acc0;
        var acc3 = acc0;
        for (int c = 0; c < blocks; c++, panel += Column)
        {
            var x = Vector256.Load(xq + c * BlockSize);
            var d = Fp16.ToSingle4((ushort*)panel, xs[c]).ToVector256Unsafe();
            sbyte* q = (sbyte*)(panel + Quants);
            acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 0), Vector256.ConvertToSingle(Product<TDot>(q, x)), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 1), Vector256.ConvertToSingle(Product<TDot>(q + 32, x)), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 2), Vector256.ConvertToSingle(Product<TDot>(q + 64, x)), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 3), Vector256.ConvertToSingle(Product<TDot>(q + 96, x)), acc3);
        }
        y[0] = LaneSum.Of(acc0);
        y[1] = LaneSum.Of(acc1);
        y[2] = LaneSum.Of(acc2);
        y[3] = LaneSum.Of(acc3);
    }

    /// <summary>One row whose block columns are <paramref name="columnBytes"/> apart (ggml's row layout when 34).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* scale, byte* quants, long columnBytes, int blocks, sbyte* xq, float* xs) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        for (int c = 0; c < blocks; c++, scale += columnBytes, quants += columnBytes)
        {
            var x = Vector256.Load(xq + c * BlockSize);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)scale) * xs[c]), Vector256.ConvertToSingle(Product<TDot>((sbyte*)quants, x)), acc);
        }
        return LaneSum.Of(acc);
    }

    /// <summary>The same lanes and the same float operations in scalar code, for CPUs without AVX2.</summary>
    internal static float RowPortable(byte* scale, byte* quants, long columnBytes, int blocks, sbyte* xq, float* xs)
    {
        Span<float> acc = stackalloc float[8];
        for (int c = 0; c < blocks; c++, scale += columnBytes, quants += columnBytes)
        {
            float d = Fp16.ToSingle(*(ushort*)scale) * xs[c];
            sbyte* w = (sbyte*)quants, x = xq + c * BlockSize;
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

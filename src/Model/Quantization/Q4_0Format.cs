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
    protected override ushort QuantizeBlock(ReadOnlySpan<float> values, Span<byte> quants)
    {
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
        return Fp16.FromSingle(d);
    }

    public override void DequantizeBlock(float scale, byte* quants, float* values)
    {
        for (int j = 0; j < BlockSize / 2; j++)
        {
            values[j] = ((quants[j] & 0x0F) - 8) * scale;
            values[j + BlockSize / 2] = ((quants[j] >> 4) - 8) * scale;
        }
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
                int* bias = x.LaneBias + (long)b * blocks * 8;
                float* yb = y + b * yStride + r;
                if (panelRows == PanelRows && Avx2.IsSupported)
                {
                    if (AvxVnni.IsSupported) Panel4<VnniDot>(panel, blocks, xq, xs, bias, yb);
                    else Panel4<Avx2Dot>(panel, blocks, xq, xs, bias, yb);
                }
                else
                {
                    for (int i = 0; i < panelRows; i++)
                        yb[i] = Avx2.IsSupported
                            ? Row<Avx2Dot>(panel + i * sizeof(ushort), panel + panelRows * sizeof(ushort) + i * QuantBytes, columnBytes, blocks, xq, xs, bias)
                            : RowPortable(panel + i * sizeof(ushort), panel + panelRows * sizeof(ushort) + i * QuantBytes, columnBytes, blocks, xq, xs);
                }
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
        const int Column = PanelRows * 18, Quants = PanelRows * sizeof(ushort);
        var acc0 = Vector256<float>.Zero;
        var acc1 = acc0;
        var acc2 = acc0;
        var acc3 = acc0;
        for (int c = 0; c < blocks; c++, panel += Column)
        {
            var x = Vector256.Load(xq + c * BlockSize);
            var addend = Vector256.Load(bias + c * 8);
            var d = Fp16.ToSingle4((ushort*)panel, xs[c]).ToVector256Unsafe();
            byte* q = panel + Quants;
            acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 0), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(q), x)), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 1), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(q + 16), x)), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 2), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(q + 32), x)), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 3), Vector256.ConvertToSingle(TDot.Dot(addend, Nibbles(q + 48), x)), acc3);
        }
        y[0] = LaneSum.Of(acc0);
        y[1] = LaneSum.Of(acc1);
        y[2] = LaneSum.Of(acc2);
        y[3] = LaneSum.Of(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row<TDot>(byte* scale, byte* quants, long columnBytes, int blocks, sbyte* xq, float* xs, int* bias) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        for (int c = 0; c < blocks; c++, scale += columnBytes, quants += columnBytes)
        {
            var lanes = TDot.Dot(Vector256.Load(bias + c * 8), Nibbles(quants), Vector256.Load(xq + c * BlockSize));
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)scale) * xs[c]), Vector256.ConvertToSingle(lanes), acc);
        }
        return LaneSum.Of(acc);
    }

    /// <summary>The same lanes and float operations in scalar code, for CPUs without AVX2.</summary>
    internal static float RowPortable(byte* scale, byte* quants, long columnBytes, int blocks, sbyte* xq, float* xs)
    {
        Span<float> acc = stackalloc float[8];
        for (int c = 0; c < blocks; c++, scale += columnBytes, quants += columnBytes)
        {
            float d = Fp16.ToSingle(*(ushort*)scale) * xs[c];
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
    private static Vector256<byte> Nibbles(byte* quants)
    {
        var raw = Vector128.Load(quants);
        var mask = Vector128.Create((byte)0x0F);
        var high = Vector128.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
        return Vector256.Create(raw & mask, high);
    }
}

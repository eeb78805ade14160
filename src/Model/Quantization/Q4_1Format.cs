using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's Q4_1: blocks of 32 weights, an fp16 scale d = (max-min)/15, an fp16 minimum m, and 16 bytes of 4-bit
/// quants q with value q·d + m (20 bytes, 5 bits per weight). Byte j holds weight j in its low nibble and weight
/// j+16 in its high nibble, as Q4_0. It is also what a Q4_K tensor runs as (<see cref="KQuantConversion"/>): each
/// of Q4_K's 32-weight sub-blocks is a Q4_1 block whose scale and minimum are rounded to fp16, so a Q4_K_M file keeps
/// 5 bits per weight in memory instead of Q8_0's 8.5.
/// </summary>
internal sealed unsafe class Q4_1Format : ScaledMinimumFormat<Q4_1Format.Quants>
{
    public override string Name => "q4_1";
    public override GgmlType Type => GgmlType.Q4_1;

    /// <summary><c>quantize_row_q4_1_ref</c>, formula for formula: the quants capped at 15.</summary>
    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block)
    {
        Span<int> q = stackalloc int[BlockSize];
        ScaleAndMinimum(values, block, 15, q);
        for (int j = 0; j < BlockSize / 2; j++) block[4 + j] = (byte)(q[j] | (q[j + BlockSize / 2] << 4));
    }

    internal readonly struct Quants : IUnsignedQuants
    {
        public static int Bytes => 16;
        public static BlockFormat Format => Q4_1;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(byte* quants) => Q4_0Format.Nibbles(quants);

        public static int Value(byte* quants, int k) => k < 16 ? quants[k] & 0x0F : quants[k - 16] >> 4;
    }
}

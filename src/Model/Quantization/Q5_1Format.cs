using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's Q5_1: blocks of 32 weights, an fp16 scale d = (max-min)/31, an fp16 minimum m, 4 bytes holding each
/// weight's fifth bit (bit j for weight j) and 16 bytes of low nibbles as Q4_1's; value q·d + m (24 bytes, 6 bits
/// per weight). It is also what a Q5_K tensor runs as (<see cref="KQuantConversion"/>), as Q4_K runs as Q4_1.
/// </summary>
internal sealed unsafe class Q5_1Format : ScaledMinimumFormat<Q5_1Format.Quants>
{
    public override string Name => "q5_1";
    public override GgmlType Type => GgmlType.Q5_1;

    /// <summary><c>quantize_row_q5_1_ref</c>, formula for formula: the fifth bits gathered into qh.</summary>
    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block)
    {
        Span<int> q = stackalloc int[BlockSize];
        ScaleAndMinimum(values, block, 31, q);
        uint qh = 0;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            block[8 + j] = (byte)((q[j] & 0x0F) | ((q[j + BlockSize / 2] & 0x0F) << 4));
            qh |= (uint)(q[j] >> 4) << j;
            qh |= (uint)(q[j + BlockSize / 2] >> 4) << (j + BlockSize / 2);
        }
        BitConverter.TryWriteBytes(block[4..], qh);
    }

    internal readonly struct Quants : IUnsignedQuants
    {
        public static int Bytes => 20;
        public static BlockFormat Format => Q5_1;

        /// <summary>The low nibbles as Q4_1's, each byte then given its fifth bit: the four bytes of qh spread
        /// eight bits to eight bytes (byte k tests bit k % 8 of qh's byte k / 8), as ggml's bytes_from_bits_32.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(byte* quants)
        {
            var spread = Avx2.Shuffle(Vector256.Create(*(uint*)quants).AsByte(),
                Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
            var bit = Vector256.Create(0x8040201008040201ul).AsByte();
            var fifth = Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
            return Q4_0Format.Nibbles(quants + 4) | fifth;
        }

        public static int Value(byte* quants, int k)
        {
            uint qh = *(uint*)quants;
            int low = k < 16 ? quants[4 + k] & 0x0F : quants[4 + k - 16] >> 4;
            return low | (int)(((qh >> k) & 1) << 4);
        }
    }
}

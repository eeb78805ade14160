using System.Runtime.Intrinsics;

namespace ActorRing.Model.Quantization;

/// <summary>
/// Q4_K and Q5_K super-blocks as Q4_1 and Q5_1 blocks (and IQ4_XS as IQ4_NL, below), so those tensors (most of a Q4_K_M or Q5_K_M file) run on
/// the scale-and-minimum kernels at 5 and 6 bits per weight instead of being requantized to Q8_0 at 8.5. A K-quant
/// super-block is eight 32-weight sub-blocks, each with the value d·sc·q - dmin·m (d, dmin fp16; sc, m 6-bit):
/// exactly Q4_1's/Q5_1's q·d' + m' with d' = d·sc and m' = -dmin·m. The quants are kept as they are; only d' and
/// m' are rounded to fp16 (a relative error of at most 2^-11 in each, against 4-bit steps of 1/15 of a
/// sub-block's range, or 5-bit ones of 1/31).
/// </summary>
internal static unsafe class KQuantConversion
{
    /// <summary>The formats a K-quant type runs as, with the bytes of one stored super-block, or null for a type
    /// that is requantized instead (Q6_K: one scale per 16 weights and no minimum).</summary>
    public static (BlockFormat Format, int SuperBlockBytes)? Target(GgmlType type) => type switch
    {
        GgmlType.Q4_K => (BlockFormat.Q4_1, 144),
        GgmlType.Q5_K => (BlockFormat.Q5_1, 176),
        GgmlType.IQ4_XS => (BlockFormat.Iq4Nl, 136),
        _ => null,
    };

    /// <summary><paramref name="superBlocks"/> super-blocks of <paramref name="type"/> (Q4_K or Q5_K) at
    /// <paramref name="source"/> into Q4_1 or Q5_1 blocks in ggml's row layout at <paramref name="destination"/>.</summary>
    public static void Convert(GgmlType type, byte* source, long superBlocks, byte* destination)
    {
        if (type == GgmlType.IQ4_XS)
        {
            Iq4XsToIq4Nl(source, superBlocks, destination);
            return;
        }
        bool q5 = type == GgmlType.Q5_K;
        int superBlockBytes = Target(type)!.Value.SuperBlockBytes, blockBytes = Target(type)!.Value.Format.BytesPerBlock;
        var lowNibbles = Vector128.Create((byte)0x0F);
        for (long s = 0; s < superBlocks; s++, source += superBlockBytes)
        {
            float d = Fp16.ToSingle(*(ushort*)source), dmin = Fp16.ToSingle(*(ushort*)(source + 2));
            byte* scales = source + 4, low = source + (q5 ? 48 : 16);
            // Q5_K's fifth bits: bit j of byte l is value l's of sub-block j. Shifting each 16-bit lane left by 7 - j
            // puts bit j of both its bytes at their top, which ExtractMostSignificantBits gathers: Q5_1's qh, bit l
            // for value l.
            var high = q5 ? Vector256.Load(source + 16).AsUInt16() : default;
            for (int j = 0; j < 8; j++, destination += blockBytes)
            {
                var (sc, m) = GgmlTypeTraits.ScaleMin(j, scales);
                *(ushort*)destination = Fp16.FromSingle(d * sc);
                *(ushort*)(destination + 2) = Fp16.FromSingle(-(dmin * m));
                // Sub-block j is the low (even j) or high (odd j) nibbles of the 32 bytes of pair j/2, value l in
                // byte l; Q4_1/Q5_1 keep value l in byte l's low nibble and value l+16 in its high one.
                var first = Vector128.Load(low + 32 * (j / 2));       // values 0..15
                var second = Vector128.Load(low + 32 * (j / 2) + 16); // values 16..31
                if ((j & 1) == 1)
                {
                    first = Vector128.ShiftRightLogical(first.AsUInt16(), 4).AsByte();
                    second = Vector128.ShiftRightLogical(second.AsUInt16(), 4).AsByte();
                }
                var nibbles = (first & lowNibbles) | Vector128.ShiftLeft((second & lowNibbles).AsUInt16(), 4).AsByte();
                if (q5)
                {
                    *(uint*)(destination + 4) = Vector256.ExtractMostSignificantBits(Vector256.ShiftLeft(high, 7 - j).AsByte());
                    nibbles.Store(destination + 8);
                }
                else
                {
                    nibbles.Store(destination + 4);
                }
            }
        }
    }

    /// <summary>
    /// IQ4_XS super-blocks as IQ4_NL blocks: sub-block j's value d·(ls_j - 32)·table[q] is IQ4_NL's d'·table[q] with
    /// d' = d·(ls_j - 32) rounded to fp16; the indices are the same bytes in the same order.
    /// </summary>
    private static void Iq4XsToIq4Nl(byte* source, long superBlocks, byte* destination)
    {
        for (long s = 0; s < superBlocks; s++, source += 136)
        {
            float d = Fp16.ToSingle(*(ushort*)source);
            for (int j = 0; j < 8; j++, destination += 18)
            {
                *(ushort*)destination = Fp16.FromSingle(d * (GgmlTypeTraits.Iq4XsScale(source, j) - 32));
                Buffer.MemoryCopy(source + 8 + 16 * j, destination + 2, 16, 16);
            }
        }
    }
}

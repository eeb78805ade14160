namespace ActorRing.Model.Quantization;

/// <summary>
/// Q4_K super-blocks as Q4_1 blocks, so a Q4_K tensor (most of a Q4_K_M file) runs on the Q4_1 kernels at 5 bits
/// per weight instead of being requantized to Q8_0 at 8.5. A Q4_K super-block is eight 32-weight sub-blocks, each
/// with the value d·sc·q - dmin·m (d, dmin fp16; sc, m 6-bit): exactly Q4_1's q·d' + m' with d' = d·sc and
/// m' = -dmin·m. The quants are kept as they are; only d' and m' are rounded to fp16 (a relative error of at most
/// 2^-11 in each, against Q4_K's 4-bit steps of 1/15 of a sub-block's range).
/// </summary>
internal static unsafe class KQuantConversion
{
    /// <summary>Q4_K bytes per 256-value super-block, and the Q4_1 bytes its eight sub-blocks become.</summary>
    public const int Q4KBytes = 144, Q4_1BytesPerSuperBlock = 8 * 20;

    /// <summary><paramref name="superBlocks"/> Q4_K super-blocks at <paramref name="q4k"/> into Q4_1 blocks in
    /// ggml's row layout at <paramref name="q41"/>.</summary>
    public static void Q4KToQ4_1(byte* q4k, long superBlocks, byte* q41)
    {
        for (long s = 0; s < superBlocks; s++, q4k += Q4KBytes)
        {
            float d = Fp16.ToSingle(*(ushort*)q4k), dmin = Fp16.ToSingle(*(ushort*)(q4k + 2));
            byte* scales = q4k + 4, quants = q4k + 16;
            for (int j = 0; j < 8; j++, q41 += 20)
            {
                var (sc, m) = GgmlTypeTraits.ScaleMin(j, scales);
                *(ushort*)q41 = Fp16.FromSingle(d * sc);
                *(ushort*)(q41 + 2) = Fp16.FromSingle(-(dmin * m));
                // Sub-block j is the low (even j) or high (odd j) nibbles of the 32 bytes of pair j/2, value l in
                // byte l; Q4_1 keeps value l in byte l's low nibble and value l+16 in its high one.
                byte* pair = quants + 32 * (j / 2);
                int shift = (j & 1) * 4;
                for (int l = 0; l < 16; l++)
                    q41[4 + l] = (byte)(((pair[l] >> shift) & 0x0F) | (((pair[l + 16] >> shift) & 0x0F) << 4));
            }
        }
    }
}

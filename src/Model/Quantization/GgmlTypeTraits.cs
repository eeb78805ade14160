namespace ActorRing.Model.Quantization;

/// <summary>
/// The tensor types a GGUF file may hold that this loader reads, with their block geometry (ggml's
/// <c>type_traits</c> blck_size and type_size), and dequantization to float32 for every one of them. F32, F16,
/// BF16, Q8_0, Q4_0, Q4_1, Q5_1 and IQ4_NL run natively; Q4_K, Q5_K and IQ4_XS are converted to Q4_1, Q5_1 and
/// IQ4_NL blocks as they are read (<see cref="KQuantConversion"/>); Q6_K, and any of them under --quant, are
/// dequantized here and requantized by the loader.
/// </summary>
internal static unsafe class GgmlTypeTraits
{
    public const int KBlock = 256;

    /// <summary>(values per block, bytes per block), or null for a type this loader does not read.</summary>
    public static (int BlockSize, int BlockBytes)? Geometry(GgmlType type) => type switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q4_0 => (32, 18),
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.IQ4_NL => (32, 18),
        GgmlType.IQ4_XS => (KBlock, 136),
        GgmlType.Q4_K => (KBlock, 144),
        GgmlType.Q5_K => (KBlock, 176),
        GgmlType.Q6_K => (KBlock, 210),
        _ => null,
    };

    /// <summary><paramref name="count"/> values (whole blocks) of <paramref name="type"/> at <paramref name="source"/> into float32.</summary>
    public static void Dequantize(GgmlType type, byte* source, long count, float* destination)
    {
        switch (type)
        {
            case GgmlType.F32:
                Buffer.MemoryCopy(source, destination, count * 4, count * 4);
                return;
            case GgmlType.F16:
                for (long i = 0; i < count; i++) destination[i] = Fp16.ToSingle(((ushort*)source)[i]);
                return;
            case GgmlType.BF16:
                for (long i = 0; i < count; i++) destination[i] = BitConverter.UInt32BitsToSingle((uint)((ushort*)source)[i] << 16);
                return;
            case GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.IQ4_NL:
                var format = BlockFormat.OfType(type)!;
                for (long b = 0; b < count / BlockFormat.BlockSize; b++, source += format.BytesPerBlock)
                    format.DequantizeBlock(source, source + format.ScaleBytes, destination + b * BlockFormat.BlockSize);
                return;
            case GgmlType.Q4_K:
                for (long b = 0; b < count / KBlock; b++, source += 144) DequantizeQ4K(source, destination + b * KBlock);
                return;
            case GgmlType.Q5_K:
                for (long b = 0; b < count / KBlock; b++, source += 176) DequantizeQ5K(source, destination + b * KBlock);
                return;
            case GgmlType.Q6_K:
                for (long b = 0; b < count / KBlock; b++, source += 210) DequantizeQ6K(source, destination + b * KBlock);
                return;
            case GgmlType.IQ4_XS:
                for (long b = 0; b < count / KBlock; b++, source += 136) DequantizeIq4Xs(source, destination + b * KBlock);
                return;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "not a type this loader reads");
        }
    }

    /// <summary>The 6-bit scale and min of sub-block j, packed in 12 bytes (ggml's get_scale_min_k4).</summary>
    internal static (int Scale, int Min) ScaleMin(int j, byte* q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    /// <summary>Q4_K: d, dmin (fp16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of nibbles.</summary>
    private static void DequantizeQ4K(byte* block, float* y)
    {
        float d = Fp16.ToSingle(*(ushort*)block), min = Fp16.ToSingle(*(ushort*)(block + 2));
        byte* scales = block + 4, q = block + 16;
        for (int j = 0, s = 0; j < KBlock; j += 64, s += 2, q += 32)
        {
            var (sc1, m1) = ScaleMin(s, scales);
            var (sc2, m2) = ScaleMin(s + 1, scales);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - min1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - min2;
        }
    }

    /// <summary>Q5_K: as Q4_K, plus 32 bytes holding each value's fifth bit.</summary>
    private static void DequantizeQ5K(byte* block, float* y)
    {
        float d = Fp16.ToSingle(*(ushort*)block), min = Fp16.ToSingle(*(ushort*)(block + 2));
        byte* scales = block + 4, qh = block + 16, ql = block + 48;
        int u1 = 1, u2 = 2;
        for (int j = 0, s = 0; j < KBlock; j += 64, s += 2, ql += 32, u1 <<= 2, u2 <<= 2)
        {
            var (sc1, m1) = ScaleMin(s, scales);
            var (sc2, m2) = ScaleMin(s + 1, scales);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
        }
    }

    /// <summary>IQ4_XS's 6-bit scale of sub-block <paramref name="ib"/>, stored minus 32: four bits in scales_l, two in scales_h.</summary>
    internal static int Iq4XsScale(byte* block, int ib) =>
        ((block[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((*(ushort*)(block + 2) >> (2 * ib)) & 3) << 4);

    /// <summary>IQ4_XS: d (fp16), scales_h (16 bits), scales_l (4 bytes), 128 bytes of IQ4_NL table indices.</summary>
    private static void DequantizeIq4Xs(byte* block, float* y)
    {
        float d = Fp16.ToSingle(*(ushort*)block);
        byte* qs = block + 8;
        for (int ib = 0; ib < 8; ib++, y += 32, qs += 16)
        {
            float dl = d * (Iq4XsScale(block, ib) - 32);
            for (int j = 0; j < 16; j++)
            {
                y[j] = dl * Iq4NlFormat.Table[qs[j] & 0xF];
                y[j + 16] = dl * Iq4NlFormat.Table[qs[j] >> 4];
            }
        }
    }

    /// <summary>Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, then d (fp16).</summary>
    private static void DequantizeQ6K(byte* block, float* y)
    {
        byte* ql = block, qh = block + 128;
        sbyte* sc = (sbyte*)(block + 192);
        float d = Fp16.ToSingle(*(ushort*)(block + 208));
        for (int n = 0; n < KBlock; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        {
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = (sbyte)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (sbyte)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (sbyte)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (sbyte)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[s] * q1;
                y[l + 32] = d * sc[s + 2] * q2;
                y[l + 64] = d * sc[s + 4] * q3;
                y[l + 96] = d * sc[s + 6] * q4;
            }
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>The fp16 block scales of ggml's formats, to and from float32.</summary>
internal static class Fp16
{
    /// <summary>
    /// Round to nearest even, as ggml's <c>GGML_FP32_TO_FP16</c> (F16C's <c>vcvtps2ph</c>, or its portable
    /// fallback) does; .NET's conversion rounds the same way.
    /// </summary>
    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>
    /// Exact for every finite half, zeros and subnormals included: the 15 magnitude bits shifted into a float's
    /// exponent and mantissa are the half's value times 2^-112, which one multiplication by 2^112 undoes. A
    /// handful of integer instructions where <c>(float)Half</c> is a software routine with branches; the dot
    /// products convert one scale per 32 weights. Infinities and NaNs never reach it (the quantizer refuses
    /// them, and GGUF scales are finite).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort h)
    {
        float magnitude = BitConverter.UInt32BitsToSingle((uint)(h & 0x7fff) << 13) * 5.192296858534828e33f; // 2^112
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | ((uint)(h & 0x8000) << 16));
    }

    /// <summary>
    /// The four fp16 scales at <paramref name="h"/> (a panel's block column), widened as <see cref="ToSingle"/>
    /// does and multiplied by <paramref name="by"/>, in one go: per block column of four rows this replaces
    /// about forty scalar instructions, which made the Q8_0/Q4_0 kernels compute-bound.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<float> ToSingle4(ushort* h, float by) => Widen4(h) * Vector128.Create(by);

    /// <summary>Four fp16 values widened exactly to float (the first half of <see cref="ToSingle4"/>, for kernels
    /// that scale one column's weight scales by several activation rows' scales).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<float> Widen4(ushort* h)
    {
        var wide = Sse41.ConvertToVector128Int32(h).AsUInt32(); // vpmovzxwd
        var magnitude = Vector128.ShiftLeft(wide & Vector128.Create(0x7fffu), 13).AsSingle() * Vector128.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | Vector128.ShiftLeft(wide & Vector128.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>Eight fp16 values widened exactly to float, as <see cref="Widen4"/> does (one Q4_1 block column: four
    /// rows' scale and minimum pairs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Widen8(ushort* h)
    {
        var wide = Avx2.ConvertToVector256Int32(h).AsUInt32(); // vpmovzxwd
        var magnitude = Vector256.ShiftLeft(wide & Vector256.Create(0x7fffu), 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | Vector256.ShiftLeft(wide & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>
    /// The scales of four block columns of a panel (16 fp16 values at <paramref name="h"/>, column after column,
    /// four rows each), widened as <see cref="ToSingle"/> does and each multiplied by its column's activation
    /// scale in <paramref name="by"/>: lane 4j+i is row i's scale of column j, the product
    /// <see cref="ToSingle4"/> gives. No calls and no branches, so the kernels' registers survive it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> ScaleColumns(ushort* h, float* by) => Widen16(h) * ColumnFactors(by);

    /// <summary>Sixteen fp16 values widened exactly to float (the first half of <see cref="ScaleColumns"/>,
    /// for kernels that scale one set of weight scales by several activation rows' scales).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Widen16(ushort* h)
    {
        var wide = Avx512F.ConvertToVector512UInt32(Vector256.Load(h)); // vpmovzxwd
        var magnitude = Vector512.ShiftLeft(wide & Vector512.Create(0x7fffu), 13).AsSingle() * Vector512.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | Vector512.ShiftLeft(wide & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>by[0..3], each repeated four times (column c's factor for its four rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> ColumnFactors(float* by) =>
        Avx512F.PermuteVar16x32(Vector128.Load(by).ToVector256Unsafe().ToVector512Unsafe(), Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));

    /// <summary>Lane <paramref name="lane"/> of <paramref name="scales"/> in all eight lanes (one vpermps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(Vector256<float> scales, int lane) => Avx2.PermuteVar8x32(scales, Vector256.Create(lane));
}

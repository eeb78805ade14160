using System.Runtime.CompilerServices;

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
}

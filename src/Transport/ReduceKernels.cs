using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace ActorRing.Transport;

/// <summary>
/// Vectorized conversions for the reduction. Half uses TensorPrimitives; bf16 has no library kernel, so it is
/// done with <see cref="Vector{T}"/>: widening is a 16-bit shift, narrowing rounds to nearest even once.
/// </summary>
internal static class ReduceKernels
{
    public static void Widen(ReadOnlySpan<Half> src, Span<float> dst) => TensorPrimitives.ConvertToSingle(src, dst);

    public static void Narrow(ReadOnlySpan<float> src, Span<Half> dst) => TensorPrimitives.ConvertToHalf(src, dst);

    public static void Widen(ReadOnlySpan<BFloat16> src, Span<float> dst)
    {
        var s = MemoryMarshal.Cast<BFloat16, ushort>(src);
        var d = MemoryMarshal.Cast<float, uint>(dst)[..s.Length];
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int step = Vector<ushort>.Count;
            for (; i <= s.Length - step; i += step)
            {
                Vector.Widen(new Vector<ushort>(s[i..]), out Vector<uint> lo, out Vector<uint> hi);
                (lo << 16).CopyTo(d[i..]);
                (hi << 16).CopyTo(d[(i + Vector<uint>.Count)..]);
            }
        }
        for (; i < s.Length; i++) d[i] = (uint)s[i] << 16;
    }

    public static void Narrow(ReadOnlySpan<float> src, Span<BFloat16> dst)
    {
        var s = MemoryMarshal.Cast<float, uint>(src);
        var d = MemoryMarshal.Cast<BFloat16, ushort>(dst)[..s.Length];
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int step = Vector<ushort>.Count;
            var one = new Vector<uint>(1);
            var bias = new Vector<uint>(0x7FFF);
            var absMask = new Vector<uint>(0x7FFFFFFF);
            var inf = new Vector<uint>(0x7F800000);
            var quiet = new Vector<uint>(0x00400000);
            for (; i <= s.Length - step; i += step)
            {
                var a = Round(new Vector<uint>(s[i..]));
                var b = Round(new Vector<uint>(s[(i + Vector<uint>.Count)..]));
                Vector.Narrow(a, b).CopyTo(d[i..]);
            }

            Vector<uint> Round(Vector<uint> bits)
            {
                // Same rule as BFloat16.FromSingle: NaN stays a (quiet) NaN, everything else rounds to nearest even.
                var rounded = (bits + bias + ((bits >> 16) & one)) >> 16;
                var nan = Vector.GreaterThan(bits & absMask, inf);
                return Vector.ConditionalSelect(nan, (bits | quiet) >> 16, rounded);
            }
        }
        for (; i < s.Length; i++) d[i] = BFloat16.FromSingle(BitConverter.UInt32BitsToSingle(s[i])).Bits;
    }
}

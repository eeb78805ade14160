using ActorRing.Transport;

namespace ActorRing.Transport.Tests;

public class ReduceKernelTests
{
    [Fact]
    public void VectorizedBFloat16NarrowingMatchesScalarRoundingIncludingTiesNaNAndInfinity()
    {
        var rng = new Random(7);
        var bits = new uint[4099];
        for (int i = 0; i < bits.Length; i++) bits[i] = (uint)rng.NextInt64(0, 1L << 32);
        // Ties (low half exactly 0x8000) with even and odd upper halves, overflow to infinity, NaNs, zeros.
        uint[] special = [0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0, 0x80000000];
        special.CopyTo(bits, 0);
        var src = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        var dst = new BFloat16[src.Length];
        ReduceKernels.Narrow(src, dst);
        for (int i = 0; i < src.Length; i++)
            Assert.True(BFloat16.FromSingle(src[i]) == dst[i], $"element {i}: 0x{bits[i]:X8} -> 0x{dst[i].Bits:X4}, scalar 0x{BFloat16.FromSingle(src[i]).Bits:X4}");
        Assert.Equal(0x3F80, dst[0].Bits); // tie rounds to even (down)
        Assert.Equal(0x3F82, dst[1].Bits); // tie rounds to even (up)
        Assert.Equal(0x7F80, dst[2].Bits); // rounds up to +inf
    }

    [Fact]
    public void BFloat16WideningIsExact()
    {
        var src = Enumerable.Range(0, 70000).Select(i => new BFloat16((ushort)(i * 7))).ToArray();
        var dst = new float[src.Length];
        ReduceKernels.Widen(src, dst);
        for (int i = 0; i < src.Length; i++) Assert.Equal((uint)src[i].Bits << 16, BitConverter.SingleToUInt32Bits(dst[i]));
    }

    [Fact]
    public void HalfRoundTripMatchesScalarConversion()
    {
        var rng = new Random(3);
        var f = Enumerable.Range(0, 1001).Select(_ => (float)(rng.NextDouble() * 200 - 100)).ToArray();
        var h = new Half[f.Length];
        ReduceKernels.Narrow(f, h);
        var back = new float[f.Length];
        ReduceKernels.Widen(h, back);
        for (int i = 0; i < f.Length; i++)
        {
            Assert.Equal((Half)f[i], h[i]);
            Assert.Equal((float)h[i], back[i]);
        }
    }
}

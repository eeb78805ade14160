using System.Runtime.InteropServices;

namespace ActorRing.Transport;

/// <summary>
/// Brain float: the top 16 bits of an IEEE float32. .NET has no built-in type for it, so buffers of bf16
/// are spans of this struct (same size and layout as the raw bits in a tensor or a checkpoint).
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 2)]
public readonly record struct BFloat16(ushort Bits)
{
    public static BFloat16 FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return new BFloat16((ushort)((bits >> 16) | 0x40));
        // Round to nearest, ties to even: the one rounding step after a float32 accumulation.
        uint rounded = bits + 0x7FFF + ((bits >> 16) & 1);
        return new BFloat16((ushort)(rounded >> 16));
    }

    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    public static explicit operator float(BFloat16 value) => value.ToSingle();
    public static explicit operator BFloat16(float value) => FromSingle(value);
}

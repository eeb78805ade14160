using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// The integer core of the block dot products: 32 unsigned bytes times 32 signed bytes, summed in groups of
/// four into eight int32 lanes, plus an addend. Every implementation gives the same exact integers, so the
/// float arithmetic around them (and the result) does not depend on which one the CPU has. Struct type
/// arguments compile one kernel per instruction set, as <see cref="IWeightFormat"/> does per format.
/// </summary>
internal interface IInt8Dot
{
    static abstract Vector256<int> Dot(Vector256<int> addend, Vector256<byte> left, Vector256<sbyte> right);
}

/// <summary>AVX-VNNI's <c>vpdpbusd</c>: the whole multiply-and-sum in one instruction.</summary>
internal readonly struct VnniDot : IInt8Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> left, Vector256<sbyte> right) =>
        AvxVnni.MultiplyWideningAndAdd(addend, left, right);
}

/// <summary>
/// AVX2: <c>vpmaddubsw</c> to pairs in int16, <c>vpmaddwd</c> against ones to groups of four in int32. The
/// int16 step cannot saturate here: a pair is at most 2·128·127 = 32512 for Q8_0 weights and 2·15·127 for
/// Q4_0's nibbles.
/// </summary>
internal readonly struct Avx2Dot : IInt8Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> left, Vector256<sbyte> right) =>
        Avx2.Add(addend, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(left, right), Vector256.Create((short)1)));
}
